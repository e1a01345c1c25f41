"""The document files of dedup: input scan (driver), keep columns and deduplicated output (Ray
tasks, stages 4-5). Every read and write goes through :class:`~webmill.storage.Storage`, so
``OUT`` may be a local directory or any fsspec URL.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from webmill.curate.examples import ExampleSampler, example_key
from webmill.errors import UserError
from webmill.storage import Storage


def scan_inputs(storage: Storage, in_sub: str) -> tuple[list[str], np.ndarray, bool]:
    """The inputs of a dedup run.

    Args:
        storage: the run's ``OUT``.
        in_sub: the subdirectory of ``OUT`` holding the document files.

    Returns:
        ``(names, offsets, has_quality)``: name-sorted ``*.parquet`` file names in ``in_sub``,
        their global row offsets (int64, length ``len(names) + 1``, the last = total rows), and
        whether any file has a ``quality_score`` column.

    Raises:
        UserError: the directory is missing or holds no ``*.parquet``, a file is not readable
            as Parquet or lacks the ``id``/``text`` columns (each message names the file).
    """
    where = storage.uri(in_sub)
    if not storage.isdir(in_sub):
        raise UserError(f"dedup: input directory {where} does not exist; run the per-document stage first (curate run)")
    names = storage.list(in_sub, suffix=".parquet")
    if not names:
        raise UserError(f"dedup: no *.parquet files in {where}; run the per-document stage first (curate run)")
    counts, has_quality = [], False
    for name in names:
        rel = f"{in_sub}/{name}"
        try:
            meta = storage.parquet_file(rel).metadata
            schema, num_rows = meta.schema.to_arrow_schema(), meta.num_rows
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise UserError(f"dedup: cannot read {storage.uri(rel)} as Parquet ({exc}); delete it and rerun "
                            "the stage that wrote it") from exc
        missing = {"id", "text"} - set(schema.names)
        if missing:
            raise UserError(f"dedup: {storage.uri(rel)} lacks column(s) {sorted(missing)}; it is not a "
                            "document table (see DESIGN.md)")
        has_quality |= "quality_score" in schema.names
        counts.append(num_rows)
    return names, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), has_quality


def read_keep_columns(storage: Storage, rel: str, local_rows: np.ndarray) -> pa.Table:
    """The keep-rule columns of some rows of document file ``rel``.

    Args:
        local_rows: int64 row numbers in the file.

    Returns:
        a table of ``len(local_rows)`` rows: ``id`` (string) and ``q`` (float64
        ``quality_score``; null when the file has no such column).
    """
    names = storage.parquet_file(rel).schema_arrow.names
    cols = ["id"] + (["quality_score"] if "quality_score" in names else [])
    table = storage.read_parquet(rel, columns=cols).take(pa.array(local_rows))
    quality = table.column("quality_score").cast(pa.float64()) if "quality_score" in cols else pa.nulls(len(table), pa.float64())
    return pa.table({"id": table.column("id").cast(pa.string()), "q": quality})


def write_deduped_file(
    storage: Storage, src: str, dst: str, local_rows: np.ndarray, cluster: np.ndarray, remove: np.ndarray,
    batch_docs: int, removed_dst: str | None = None, kept_id: np.ndarray | None = None,
    reason: np.ndarray | None = None, examples: ExampleSampler | None = None,
) -> dict[str, int]:
    """Stream document file ``src`` to ``dst`` (both relative to ``storage``) without removed rows
    and with ``dedup_cluster``; optionally the removed rows to ``removed_dst``.

    Args:
        local_rows: int64 sorted row numbers (in ``src``) of the documents in a component.
        cluster: int64 component id of each of those rows (others get -1).
        remove: bool, whether each of those rows is dropped.
        batch_docs: rows read per step (bounds memory).
        removed_dst: if given, the removed rows go there with every input column,
            ``dedup_cluster``, ``kept_id`` (string: id of the document kept in the component)
            and ``reason`` (string, ``"dedup_exact"`` | ``"dedup_near"``).
        kept_id, reason: object arrays aligned with ``local_rows`` (read where ``remove``);
            required with ``removed_dst`` or ``examples``.
        examples: if given, the removed rows are offered to it (stage ``"dedup"``, detail
            ``"duplicate of <kept_id>"``) from the batches read here: the file is not read again.

    Output: same columns in the same order (an existing ``dedup_cluster`` is replaced) plus
    ``dedup_cluster`` int64; rows in input order; zstd with statistics, one row group per batch
    of ``batch_docs`` input rows; published atomically (:meth:`Storage.atomic_write`), so readers never
    see a partial file (``removed_dst`` likewise). Returns ``{"in", "out"}`` row counts.
    """
    import contextlib

    import pyarrow.parquet as pq

    pf = storage.parquet_file(src)
    in_schema = pf.schema_arrow
    base_fields = [f for f in in_schema if f.name not in ("dedup_cluster", "kept_id", "reason")]
    out_fields = [f for f in in_schema if f.name != "dedup_cluster"]
    out_schema = pa.schema(out_fields + [pa.field("dedup_cluster", pa.int64())], metadata=in_schema.metadata)
    rm_schema = pa.schema(base_fields + [pa.field("dedup_cluster", pa.int64()), pa.field("kept_id", pa.string()),
                                         pa.field("reason", pa.string())], metadata=in_schema.metadata)
    n_in = n_out = 0
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(storage.atomic_write(dst))
        writer = stack.enter_context(pq.ParquetWriter(sink, out_schema, compression="zstd", write_statistics=True))
        rm_writer = None
        if removed_dst is not None:
            rm_sink = stack.enter_context(storage.atomic_write(removed_dst))
            rm_writer = stack.enter_context(pq.ParquetWriter(rm_sink, rm_schema, compression="zstd",
                                                             write_statistics=True))
        row = 0
        for rb in pf.iter_batches(batch_size=batch_docs):
            n = rb.num_rows
            lo, hi = np.searchsorted(local_rows, [row, row + n])
            cl = np.full(n, -1, dtype=np.int64)
            keep = np.ones(n, dtype=bool)
            cl[local_rows[lo:hi] - row] = cluster[lo:hi]
            keep[local_rows[lo:hi] - row] = ~remove[lo:hi]
            table = pa.Table.from_batches([rb])
            kept_table = table.select([f.name for f in out_fields]).append_column("dedup_cluster", pa.array(cl))
            kept_table = kept_table.filter(pa.array(keep))
            writer.write_table(kept_table.cast(out_schema))
            gone = remove[lo:hi]
            if examples is not None and gone.any():
                _offer_removed(examples, table.filter(pa.array(~keep)), reason[lo:hi][gone], kept_id[lo:hi][gone])
            if rm_writer is not None:
                rm = table.select([f.name for f in base_fields]).filter(pa.array(~keep))
                rm = rm.append_column("dedup_cluster", pa.array(cl[~keep]))
                rm = rm.append_column("kept_id", pa.array(list(kept_id[lo:hi][gone]), pa.string()))
                rm = rm.append_column("reason", pa.array(list(reason[lo:hi][gone]), pa.string()))
                rm_writer.write_table(rm.cast(rm_schema))
            row += n
            n_in += n
            n_out += kept_table.num_rows
    return {"in": n_in, "out": n_out}


def _offer_removed(sampler: ExampleSampler, rm: pa.Table, reasons: np.ndarray, kept_ids: np.ndarray) -> None:
    """Offer the removed rows ``rm`` of one batch (``reasons``/``kept_ids`` aligned) to
    ``sampler``. Per reason only the batch's ``per_reason`` smallest ``(example_key(id), id)`` can
    enter a bottom-k sample, so only their text is converted to Python."""
    ids = rm.column("id").cast(pa.string()).to_pylist()
    keys = [example_key(i or "") for i in ids]
    pick: list[int] = []
    for r in sorted(set(reasons.tolist())):
        rows = [j for j in range(len(ids)) if reasons[j] == r]
        pick += sorted(rows, key=lambda j: (keys[j], ids[j] or ""))[:sampler.per_reason]
    sub = rm.take(pa.array(sorted(pick), pa.int64()))
    get = {c: (sub.column(c).to_pylist() if c in sub.column_names else [None] * len(pick))
           for c in ("url", "text", "language", "language_score")}
    for j, row in enumerate(sorted(pick)):
        sampler.offer(str(reasons[row]), "dedup", id=ids[row], url=get["url"][j], text=get["text"][j],
                      language=get["language"][j], language_score=get["language_score"][j],
                      detail=f"duplicate of {kept_ids[row]}")
