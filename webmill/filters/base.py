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
