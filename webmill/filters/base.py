"""The per-document filter protocol shared by every rule in :mod:`webmill.filters`.

Imitates datatrove's small filter classes: a filter holds its thresholds as constructor
arguments and exposes one method, ``filter(doc)``, returning ``(keep, reason)``. ``reason`` is
``None`` when the document is kept and a short stable string such as ``"gopher_short_doc"``
when it is dropped. Modifiers (C4 line removal, PII replacement) instead return the new text
and counts from ``modify(doc)``.

Nothing here imports Ray or performs I/O. :mod:`webmill.curate.documents` runs the filters
over whole input files inside per-file Ray actors (:mod:`webmill.curate.workers`), in the order
of the stage registry (:mod:`webmill.curate.stages`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """One extracted document.

    Attributes:
        text: the extracted plain text (str, may be empty).
        url: the record's target URI (str, may be empty for WET without a URI).
        id: stable identifier (see :func:`webmill.curate.readers.document_id`).
        metadata: everything else (``language``, ``language_score``, ``domain``, ...).
    """

    text: str
    url: str = ""
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


FilterResult = tuple[bool, "str | None"]

#: ``Document.metadata`` keys a filter sets when it drops a document (see :func:`dropped`):
#: the statistic that failed, the threshold it failed against, and a human-readable line.
DROP_VALUE, DROP_THRESHOLD, DROP_DETAIL = "drop_value", "drop_threshold", "drop_detail"


def dropped(doc: Document, reason: str, value: float | None = None, threshold: float | None = None,
            detail: str | None = None) -> FilterResult:
    """Record what decided a drop in ``doc.metadata`` and return ``(False, reason)``.

    Args:
        doc: the document being dropped.
        reason: the stable drop reason (one of the filter's ``REASONS`` or its prefix).
        value: the statistic that failed (float; ``None`` when the rule has none, e.g. a
            blocklist hit).
        threshold: the threshold ``value`` failed against (float or ``None``).
        detail: one human-readable line, e.g. ``"line_punct_ratio 0.050 <= 0.12"`` or
            ``"domain example.com on the UT1 adult list"``.

    The keys are :data:`DROP_VALUE`, :data:`DROP_THRESHOLD` and :data:`DROP_DETAIL`; the
    per-document driver writes them into ``removed/`` rows and the examples per reason.
    """
    doc.metadata[DROP_VALUE] = value
    doc.metadata[DROP_THRESHOLD] = threshold
    doc.metadata[DROP_DETAIL] = detail
    return False, reason


def failed(doc: Document, reason: str, stat: str, value: float, op: str,
           threshold: float) -> FilterResult:
    """:func:`dropped` for a statistic that failed a threshold, with the detail written out.

    Args:
        doc, reason: as for :func:`dropped`.
        stat: the statistic's name, e.g. ``"line_punct_ratio"``.
        value: its value (int or float; a ratio, a count, characters ...).
        op: the rule's drop comparison, ``"<"``, ``"<="``, ``">"`` or ``">="``: ``value op
            threshold`` holds (the caller tested exactly that).
        threshold: the configured threshold.

    The detail is ``"<stat> <value> <op> <threshold>"``, e.g. ``"dup_line_frac 0.41 > 0.3"``;
    see :func:`compare_detail`.
    """
    return dropped(doc, reason, value, threshold, compare_detail(stat, value, op, threshold))


def compare_detail(stat: str, value: float, op: str, threshold: float) -> str:
    """``"<stat> <value> <op> <threshold>"`` with both numbers short but distinguishable.

    Numbers get 3 significant digits; where that would print a strict comparison as a false
    one (``0.3000004 > 0.3`` shown as ``0.3 > 0.3``) the value gets more digits (up to 17,
    exact for a float64).
    """
    t = _fmt(threshold, 6)
    for digits in (3, 6, 17):
        v = _fmt(value, digits)
        if op in ("<=", ">=") or v != t:
            break
    return f"{stat} {v} {op} {t}"


def _fmt(x: float, digits: int) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return str(int(x))
    return f"{x:.{digits}g}"


class BaseFilter(ABC):
    """Base class of a keep/drop rule.

    Subclasses set ``name`` (used as prefix of reason strings and as the config table name)
    and implement :meth:`filter`.
    """

    name: str = "filter"

    @abstractmethod
    def filter(self, doc: Document) -> FilterResult:
        """Return ``(True, None)`` to keep ``doc`` or ``(False, reason)`` to drop it."""

    def __call__(self, doc: Document) -> FilterResult:
        return self.filter(doc)
