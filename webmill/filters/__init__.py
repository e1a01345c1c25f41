"""Pure per-document logic: URL blocklist, language ID, heuristic rules, PII, quality scoring.

Modules: :mod:`~webmill.filters.base` (the filter protocol), :mod:`~webmill.filters.url`,
:mod:`~webmill.filters.language`, the heuristic rules :mod:`~webmill.filters.gopher`,
:mod:`~webmill.filters.c4`, :mod:`~webmill.filters.fineweb` and what they share
(:mod:`~webmill.filters.words` word splitting, :mod:`~webmill.filters.hashing` token and n-gram
hashes, :mod:`~webmill.filters.textstats` per-document statistics,
:mod:`~webmill.filters.repetition` n-gram statistics, :mod:`~webmill.filters.checks` config
validation), :mod:`~webmill.filters.pii` and :mod:`~webmill.filters.quality`. Which filters run,
in which order and with which config table is decided by the stage registry,
:mod:`webmill.curate.stages`.

No Ray imports and no I/O here (models are loaded from paths given by the caller).
"""

from webmill.filters.base import BaseFilter, Document, FilterResult

__all__ = ["BaseFilter", "Document", "FilterResult"]
