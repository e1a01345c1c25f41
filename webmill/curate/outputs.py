"""Output layout and the document table schema.

Layout of ``OUT`` (docs/design.md), as paths relative to ``OUT`` (a local directory or an
fsspec URL; every read and write goes through :class:`webmill.storage.Storage`):

* ``documents/<stem>.parquet`` — documents kept by the per-document stages;
* ``stats/<stem>.json`` — per-input statistics; ``stats/dedup.json``, ``stats/final.json``, ...
* ``markers/<stem>.done`` — written last, after the outputs above; a rerun skips marked inputs;
* ``failed.jsonl`` — inputs that failed, with the reason;
* ``removed/<stage>/<stem>.parquet`` (``[output] write_removed``) — the documents a per-document
  stage dropped, :data:`REMOVED_SCHEMA`; the language stage's under
  ``removed/language/<lang>/<stem>.parquet`` (:func:`removed_rel`); dedup and finalize write
  ``removed/dedup/``, ``removed/quality/`` ... with their own schemas;
* ``examples/documents/<stem>.parquet`` — examples per drop reason
  (:mod:`webmill.curate.examples`);
* ``deduped/``, ``final/``, ``shards/``, ``report/``; ``logs/`` (Ray's own logs of a local run).
"""

from __future__ import annotations

import re

import pyarrow as pa


SCHEMA_VERSION = 1

# per-file output directories of the documents stage (their stale temps are swept at start)
PER_FILE_DIRS = ("documents", "stats", "markers", "removed", "examples")

DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("domain", pa.string()),
        ("crawl_date", pa.timestamp("us", tz="UTC")),
        ("source_file", pa.string()),
        ("record_offset", pa.int64()),
        ("text", pa.large_string()),
        ("language", pa.string()),
        ("language_score", pa.float32()),
    ],
    metadata={b"webmill.schema_version": str(SCHEMA_VERSION).encode()},
)


#: ``removed/`` rows of the per-document stages: the document as far as the stage got (``text``
#: ``""`` before extraction; ``language`` ``""`` and ``language_score`` 0 before language ID, as
#: in ``documents/`` with the language stage off), then what dropped it: the stage (registry
#: name), the reason, and :func:`webmill.filters.base.dropped`'s value, threshold (null when the
#: rule has none) and one-line detail.
REMOVED_SCHEMA = pa.schema(
    [*DOCUMENT_SCHEMA,
     ("stage", pa.string()),
     ("reason", pa.string()),
     ("drop_value", pa.float64()),
     ("drop_threshold", pa.float64()),
     ("drop_detail", pa.string())],
    metadata=DOCUMENT_SCHEMA.metadata,
)

_LANG_DIR = re.compile(r"[A-Za-z0-9_-]{1,64}")


def removed_rel(stage: str, stem: str, language: str | None = None) -> str:
    """Where the per-document stage ``stage`` writes input ``stem``'s removed documents,
    relative to ``OUT``: ``removed/<stage>/<stem>.parquet``, or with ``language`` (the language
    stage: the predicted code, as FineWeb's per-language exclusion writers split them)
    ``removed/<stage>/<language>/<stem>.parquet``. A code that is not a plain name (letters,
    digits, ``_``, ``-``) goes to ``unknown``."""
    if language is None:
        return f"removed/{stage}/{stem}.parquet"
    lang = language if _LANG_DIR.fullmatch(language) else "unknown"
    return f"removed/{stage}/{lang}/{stem}.parquet"


def decision_float(x) -> float | None:
    """A drop value or threshold as a float64 column value (``None`` stays ``None``): the
    ``drop_value`` / ``drop_threshold`` of removed/ rows and of the examples."""
    return None if x is None else float(x)


def marker_rel(stem: str) -> str:
    """Completion marker of input ``stem``, relative to ``OUT``."""
    return f"markers/{stem}.done"
