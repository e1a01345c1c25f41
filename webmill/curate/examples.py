"""Example documents per drop reason: a small, deterministic sample kept during the run.

People tuning rules want to *see* what a rule removed, not only how many. Every stage that drops
documents offers them to an :class:`ExampleSampler`; it keeps, per drop reason, the
``per_reason`` documents with the smallest :func:`example_key` (xxh64 of the document id). That
is a bottom-k sample: deterministic, independent of file order and worker count, and mergeable —
the bottom-k of the union of several files' samples is the bottom-k of the whole run, so the
report and ``curate show`` read the run's sample from the per-file tables alone.

Layout (relative to ``OUT``, written through :mod:`webmill.storage`):

* ``examples/documents/<stem>.parquet`` — per-document stages, one table per input file;
* ``examples/dedup/<name>.parquet`` — dedup's removed documents, one table per document file;
* ``examples/final/<name>.parquet`` — PII and quality drops of ``curate finalize``.

Every table has :data:`EXAMPLE_SCHEMA`. :func:`read_examples` merges them. The number kept per
reason and file is ``[output] examples_per_reason`` (0 turns the sampling off).
"""

from __future__ import annotations

import os
from typing import Iterable

import pyarrow as pa
import xxhash

from webmill.curate.outputs import decision_float
from webmill.storage import Storage, as_storage

EXAMPLES_DIR = "examples"
#: characters of each example's text that are kept (the report shows the first ~300)
EXAMPLE_CHARS = 1000

EXAMPLE_SCHEMA = pa.schema([
    ("reason", pa.string()),          # the drop reason (a registry reason, "dedup_exact", ...)
    ("stage", pa.string()),           # the stage that dropped it (registry name, "dedup", "pii_quality")
    ("id", pa.string()),
    ("url", pa.string()),
    ("text", pa.large_string()),      # the first EXAMPLE_CHARS characters
    ("n_chars", pa.int64()),          # characters of the whole text
    ("language", pa.string()),        # null when not identified yet
    ("language_score", pa.float32()),
    ("drop_value", pa.float64()),     # the statistic that failed (null when the rule has none)
    ("drop_threshold", pa.float64()),  # the threshold it failed against (null when none)
    ("drop_detail", pa.string()),     # human-readable: "line_punct_ratio 0.050 <= 0.12", "duplicate of <id>"
    ("sample_key", pa.uint64()),      # example_key(id): the bottom-k key
])


def example_key(doc_id: str) -> int:
    """The sampling key of a document: xxh64 (seed 0) of its id's UTF-8 bytes (uint64 as int)."""
    return xxhash.xxh64_intdigest(doc_id.encode("utf-8", "surrogatepass"))


class ExampleSampler:
    """Per drop reason, the ``per_reason`` documents with the smallest ``(example_key(id), id)``.

    Args:
        per_reason: documents kept per reason (int >= 0; 0 keeps nothing).

    Memory: at most ``per_reason`` rows per reason, each with at most :data:`EXAMPLE_CHARS`
    characters of text.
    """

    def __init__(self, per_reason: int = 5):
        self.per_reason = max(int(per_reason), 0)
        self._rows: dict[str, list[dict]] = {}

    def offer(self, reason: str, stage: str, *, id: str, url: str = "", text: str = "",
              language: str | None = None, language_score: float | None = None,
              value: float | None = None, threshold: float | None = None,
              detail: str | None = None) -> None:
        """Offer one dropped document; kept when it is among the reason's smallest keys so far."""
        if not self.per_reason:
            return
        key = example_key(id or "")
        rows = self._rows.setdefault(reason, [])
        if len(rows) >= self.per_reason:
            worst = max(rows, key=_order)
            if (key, id or "") >= _order(worst):
                return
            rows.remove(worst)
        text = text or ""
        rows.append({"reason": reason, "stage": stage, "id": id or "", "url": url or "",
                     "text": text[:EXAMPLE_CHARS], "n_chars": len(text), "language": language,
                     "language_score": language_score, "drop_value": decision_float(value),
                     "drop_threshold": decision_float(threshold), "drop_detail": detail, "sample_key": key})

    def __len__(self) -> int:
        return sum(len(v) for v in self._rows.values())

    def table(self) -> pa.Table:
        """The kept rows as a table of :data:`EXAMPLE_SCHEMA`, ordered by reason, then key."""
        rows = [r for reason in sorted(self._rows) for r in sorted(self._rows[reason], key=_order)]
        return pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA)


def _order(row: dict) -> tuple[int, str]:
    return row["sample_key"], row["id"]


def example_files(out: str | os.PathLike | Storage) -> list[str]:
    """Paths (relative to ``OUT``) of every examples table of a run, sorted."""
    st = as_storage(out)
    if not st.isdir(EXAMPLES_DIR):
        return []
    return [f"{EXAMPLES_DIR}/{n}" for n in st.list(EXAMPLES_DIR, suffix=".parquet", recursive=True)]


def read_examples(out: str | os.PathLike | Storage, reasons: Iterable[str] | None = None,
                  n: int | None = None) -> pa.Table:
    """The run's examples: per reason the ``n`` rows with the smallest ``(sample_key, id)``.

    Args:
        out: the run's ``OUT`` (local path, fsspec URL or Storage).
        reasons: only these drop reasons (default: all).
        n: rows per reason (default: all rows found; at most ``examples_per_reason`` × files).

    Returns:
        A table of :data:`EXAMPLE_SCHEMA`, ordered by reason, then ``(sample_key, id)``; empty
        when the run kept no examples.
    """
    st = as_storage(out)
    want = set(reasons) if reasons is not None else None
    tables = []
    for rel in example_files(st):
        t = st.read_parquet(rel)
        if want is not None:
            import pyarrow.compute as pc

            t = t.filter(pc.is_in(t.column("reason"), value_set=pa.array(sorted(want), pa.string())))
        if t.num_rows:
            tables.append(t.select(EXAMPLE_SCHEMA.names).cast(EXAMPLE_SCHEMA))
    if not tables:
        return EXAMPLE_SCHEMA.empty_table()
    t = pa.concat_tables(tables).sort_by([("reason", "ascending"), ("sample_key", "ascending"), ("id", "ascending")])
    if n is None:
        return t
    keep, count, prev = [], 0, None
    for i, r in enumerate(t.column("reason").to_pylist()):
        count = count + 1 if r == prev else 1
        prev = r
        if count <= n:
            keep.append(i)
    return t.take(pa.array(keep, pa.int64()))
