"""Output layout, the document table schema, and atomic writes.

Layout of ``OUT`` (DESIGN.md):

* ``documents/<stem>.parquet`` — documents kept by the per-document stages;
* ``stats/<stem>.json`` — per-input statistics; ``stats/dedup.json``, ``stats/final.json``, ...
* ``markers/<stem>.done`` — written last, after the outputs above; a rerun skips marked inputs;
* ``failed.jsonl`` — inputs that failed, with the reason; ``removed/<stage>/`` (optional);
* ``deduped/``, ``final/``, ``shards/``, ``report/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1

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


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a temp file + ``os.replace`` (never a partial file).

    Settings are fixed (zstd, row groups of 1,000 rows, no timestamps in metadata) so the same
    table gives the same bytes on every run.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=1000, write_statistics=True)
    os.replace(tmp, path)


def write_json_atomic(obj, path: Path) -> None:
    """Write ``obj`` as indented, key-sorted JSON via temp file + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def marker_path(out: Path, stem: str) -> Path:
    """Completion marker of input ``stem``."""
    return out / "markers" / f"{stem}.done"
