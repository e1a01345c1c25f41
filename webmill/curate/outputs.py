"""Output layout and the document table schema.

Layout of ``OUT`` (docs/design.md), as paths relative to ``OUT`` (a local directory or an
fsspec URL; every read and write goes through :class:`webmill.storage.Storage`):

* ``documents/<stem>.parquet`` — documents kept by the per-document stages;
* ``stats/<stem>.json`` — per-input statistics; ``stats/dedup.json``, ``stats/final.json``, ...
* ``markers/<stem>.done`` — written last, after the outputs above; a rerun skips marked inputs;
* ``failed.jsonl`` — inputs that failed, with the reason; ``removed/<stage>/`` (optional);
* ``deduped/``, ``final/``, ``shards/``, ``report/``; ``logs/`` (Ray's own logs of a local run).
"""

from __future__ import annotations


import pyarrow as pa


SCHEMA_VERSION = 1

# per-file output directories of the documents stage (their stale temps are swept at start)
PER_FILE_DIRS = ("documents", "stats", "markers", "removed")

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


def marker_rel(stem: str) -> str:
    """Completion marker of input ``stem``, relative to ``OUT``."""
    return f"markers/{stem}.done"
