"""Pure per-document logic: URL blocklist, language ID, heuristic rules, PII, quality scoring.

No Ray imports and no I/O here (models are loaded from paths given by the caller).
"""

from webmill.filters.base import BaseFilter, Document, FilterResult

__all__ = ["BaseFilter", "Document", "FilterResult"]
