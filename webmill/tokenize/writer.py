"""Write token shards (format v1, :mod:`webmill.tokenize.format`): :class:`ShardWriter` and the
convenience wrapper :func:`write_shards`.

Every file is published through :class:`webmill.storage.Storage`, so a shard directory can be a
local path or any fsspec URL: each shard's bytes go to the storage's atomic writer (local: a temp
file beside the final name, fsynced and renamed; object stores: staged locally and uploaded once)
while they are written, and ``manifest.json`` is published last, so a directory with a manifest
is complete. Size and sha256 of each file are computed from the bytes as they are written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webmill.storage import Storage, as_storage
from webmill.tokenize.format import (
    DEFAULT_ROW_GROUP_ROWS,
    FORMAT,
    HEADER_KEYS,
    KV_KEY,
    MANIFEST_NAME,
    SPLITS,
    VERSION,
    ShardError,
    add_source_counts,
    arrow_type,
    check_documents,
    check_tokenizer_dict,
    is_shard_name,
    schema,
    shard_name,
    token_dtype,
)


class _HashingSink:
    """Binary write-only file that forwards to ``f`` and keeps the size and sha256 of the bytes."""

    def __init__(self, f):
        self.f = f
        self.size = 0
        self.sha = hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.f.flush()

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self.f.closed

    def close(self) -> None:  # the storage's atomic writer owns the file
        pass


class _OpenFile:
    """State of one shard file being written (one split)."""

    def __init__(self, name: str, split: str, stack: contextlib.ExitStack, sink: _HashingSink,
                 writer: pq.ParquetWriter):
        self.name = name
        self.split = split
        self.stack = stack  # holds the storage's atomic_write: closing it publishes the file
        self.sink = sink
        self.writer = writer
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.num_tokens = 0
        self.num_documents = 0


class ShardWriter:
    """Write documents' tokens into v1 token shards; :meth:`close` writes ``manifest.json``.

    Usage (tokens already end with EOT)::

        with ShardWriter(out_dir, tokenizer_info(enc), shard_tokens=100_000_000) as w:
            w.add("train", "doc-1", [15339, 1917, 100257], source="web")
            w.write_batch("val", ids, flat_tokens, offsets, sources)
        manifest = w.manifest

    Files are named ``shard-NNNNN.parquet`` in the order they are opened (both splits share
    one counter); a file is closed once it holds ``>= shard_tokens`` tokens, so files are
    ≈ ``shard_tokens`` tokens (the last of each split is smaller). Row groups hold
    ``row_group_rows`` documents (≈ 1,000 as in the design notes).

    Args:
        out_dir: output directory (local path, fsspec URL or :class:`Storage`); created if
            missing. Existing ``shard-*.parquet`` and ``manifest.json`` there are deleted first
            when ``overwrite`` is True, else a :class:`ShardError` is raised. Temp files a
            killed writer left are hidden from readers; ``Storage.sweep_temps`` removes them
            (:func:`webmill.tokenize.dataset.tokenize_dataset` sweeps before it writes).
        tokenizer: dict from :func:`webmill.tokenize.encoding.tokenizer_info` (keys ``name``,
            ``ranks_sha256``, ``vocab_size``, ``eot_id``, ``bos_id``, ``boundary``).
        shard_tokens: target tokens per file (int > 0; default 100M as in the design notes).
        row_group_rows: documents per Parquet row group (int > 0).
        config_hash: sha256 hex of the pipeline config ("" if unknown).
        overwrite: replace an existing shard directory's files.
        extra: additional JSON-serialisable manifest keys (e.g. ``{"mix": {...}}``); may not
            override the format's own keys.
        compression: Parquet codec (default ``"zstd"``).

    Raises:
        ShardError: bad tokenizer info, a non-empty output dir without ``overwrite``, or a
            document that is empty, does not end with ``eot_id`` or holds ids ≥ vocab_size.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike | Storage,
        tokenizer: dict,
        *,
        shard_tokens: int = 100_000_000,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        config_hash: str = "",
        overwrite: bool = True,
        extra: dict | None = None,
        compression: str = "zstd",
    ):
        check_tokenizer_dict(tokenizer, "ShardWriter")
        if shard_tokens <= 0 or row_group_rows <= 0:
            raise ValueError(f"shard_tokens and row_group_rows must be > 0, got {shard_tokens}, {row_group_rows}")
        self.storage = as_storage(out_dir)
        self.out_dir = self.storage.uri()
        self.tokenizer = dict(tokenizer)
        self.dtype = token_dtype(tokenizer["vocab_size"])
        self.np_dtype = np.dtype(self.dtype)
        self.schema = schema(self.dtype)
        self.shard_tokens = int(shard_tokens)
        self.row_group_rows = int(row_group_rows)
        self.config_hash = config_hash or ""
        self.compression = compression
        self.extra = dict(extra or {})
        clash = set(self.extra) & {*HEADER_KEYS, "files", "splits", "sources"}
        if clash:
            raise ValueError(f"extra manifest keys may not override {sorted(clash)}")
        self._open: dict[str, _OpenFile] = {}
        self._files: list[dict] = []
        self._next_index = 0
        self._sources: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
        self.manifest: dict | None = None
        self._prepare_dir(overwrite)

    # -- directory -------------------------------------------------------------------------
    def _prepare_dir(self, overwrite: bool) -> None:
        st = self.storage
        st.makedirs()
        old = [n for n in st.list() if n == MANIFEST_NAME or is_shard_name(n)]
        if old and not overwrite:
            raise ShardError(
                f"{self.out_dir}: already holds token shards ({old[0]}, ...); "
                "choose another output directory or allow overwriting"
            )
        # Delete the manifest first: an interrupted run then leaves no manifest behind.
        for n in sorted(old, key=lambda n: n != MANIFEST_NAME):
            st.remove(n)

    def _header(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "tokenizer": self.tokenizer,
            "dtype": self.dtype,
            "config_hash": self.config_hash,
        }

    # -- writing ---------------------------------------------------------------------------
    def add(
        self,
        split: str,
        doc_id: str,
        tokens: Sequence[int] | np.ndarray,
        source: str = "web",
        quality_bucket: int | None = None,
    ) -> None:
        """Append one document (``tokens`` must already end with ``eot_id``); see :meth:`write_batch`."""
        arr = np.asarray(tokens)
        self.write_batch(
            split,
            [doc_id],
            arr,
            np.array([0, arr.size], dtype=np.int64),
            [source],
            None if quality_bucket is None else [quality_bucket],
        )

    def write_batch(
        self,
        split: str,
        ids: Sequence[str],
        flat_tokens: np.ndarray,
        offsets: np.ndarray,
        sources: Sequence[str] | str = "web",
        quality_buckets: Sequence[int | None] | np.ndarray | None = None,
    ) -> None:
        """Append a batch of documents given as one flat token array plus offsets.

        Args:
            split: ``"train"`` or ``"val"``.
            ids: n document ids (str).
            flat_tokens: 1-D integer array of all documents' tokens concatenated; shape
                ``(offsets[-1],)``; any integer dtype with values in ``[0, vocab_size)``.
            offsets: 1-D int array, shape ``(n + 1,)``, ``offsets[0] == 0``, non-decreasing;
                document i is ``flat_tokens[offsets[i]:offsets[i + 1]]``.
            sources: n source names, or one name for all.
            quality_buckets: n ints (None for missing), or None for all missing.

        Raises:
            ShardError: unknown split, shape mismatch, an empty document, a document whose
                last token is not ``eot_id``, or a token id ≥ vocab_size (names the doc id).
        """
        if self.manifest is not None:
            raise ShardError(f"{self.out_dir}: ShardWriter is already closed")
        if split not in SPLITS:
            raise ShardError(f"split must be one of {SPLITS}, got {split!r}")
        n = len(ids)
        offsets = np.asarray(offsets, dtype=np.int64)
        flat = np.asarray(flat_tokens)
        if offsets.shape != (n + 1,) or offsets[0] != 0 or flat.ndim != 1 or offsets[-1] != flat.size:
            raise ShardError(
                f"write_batch: offsets must have shape ({n + 1},), start at 0 and end at "
                f"len(flat_tokens)={flat.size}; got shape {offsets.shape}"
            )
        if n == 0:
            return
        check_documents(flat, offsets, self.tokenizer["eot_id"], self.tokenizer["vocab_size"], lambda i: ids[i])
        if isinstance(sources, str):
            sources = [sources] * n
        if len(sources) != n:
            raise ShardError(f"write_batch: {len(sources)} sources for {n} documents")
        if quality_buckets is not None and len(quality_buckets) != n:
            raise ShardError(f"write_batch: {len(quality_buckets)} quality_buckets for {n} documents")
        flat = flat.astype(self.np_dtype, copy=False)

        # Split the batch where the current file reaches shard_tokens.
        start = 0
        while start < n:
            f = self._file_for(split)
            room = self.shard_tokens - f.num_tokens
            cum = offsets[start + 1 :] - offsets[start]
            # first document whose end reaches the target closes the file
            stop = start + int(np.searchsorted(cum, room, side="left")) + 1
            stop = min(stop, n)
            self._append(f, ids, flat, offsets, sources, quality_buckets, start, stop)
            if f.num_tokens >= self.shard_tokens:
                self._close_file(split)
            start = stop

    def _file_for(self, split: str) -> _OpenFile:
        f = self._open.get(split)
        if f is None:
            name = shard_name(self._next_index)
            self._next_index += 1
            stack = contextlib.ExitStack()
            try:
                sink = _HashingSink(stack.enter_context(self.storage.atomic_write(name)))
                writer = pq.ParquetWriter(
                    sink,
                    self.schema,
                    compression=self.compression,
                    write_page_checksum=True,
                    write_statistics=False,
                )
            except BaseException as e:
                stack.__exit__(type(e), e, e.__traceback__)
                raise
            f = self._open[split] = _OpenFile(name, split, stack, sink, writer)
        return f

    def _append(self, f, ids, flat, offsets, sources, qbs, start, stop) -> None:
        base = offsets[start]
        offs = (offsets[start : stop + 1] - base).astype(np.int32)
        values = pa.array(flat[base : offsets[stop]], type=arrow_type(self.dtype))
        tokens = pa.ListArray.from_arrays(pa.array(offs, type=pa.int32()), values)
        lengths = np.diff(offs).astype(np.int32)
        src = list(sources[start:stop])
        qb = None if qbs is None else qbs[start:stop]
        table = pa.Table.from_arrays(
            [
                pa.array(list(ids[start:stop]), type=pa.string()),
                tokens,
                pa.array(lengths, type=pa.int32()),
                pa.array(src, type=pa.string()),
                pa.array([None] * (stop - start) if qb is None else _as_int_list(qb), type=pa.int32()),
            ],
            schema=self.schema,
        )
        f.pending.append(table)
        f.pending_rows += table.num_rows
        f.num_tokens += int(lengths.sum())
        f.num_documents += table.num_rows
        add_source_counts(self._sources[f.split], src, lengths)
        if f.pending_rows >= self.row_group_rows:
            self._flush(f, final=False)

    def _flush(self, f: _OpenFile, final: bool) -> None:
        if not f.pending:
            return
        table = pa.concat_tables(f.pending)
        rg = self.row_group_rows
        full = (table.num_rows // rg) * rg if not final else table.num_rows
        if full:
            f.writer.write_table(table.slice(0, full), row_group_size=rg)
        rest = table.slice(full)
        f.pending = [rest] if rest.num_rows else []
        f.pending_rows = rest.num_rows

    def _close_file(self, split: str) -> None:
        f = self._open.pop(split)
        try:
            self._flush(f, final=True)
            meta = {**self._header(), "split": f.split, "num_tokens": f.num_tokens, "num_documents": f.num_documents}
            f.writer.add_key_value_metadata({KV_KEY: json.dumps(meta, sort_keys=True)})
            f.writer.close()
        except BaseException as e:
            f.stack.__exit__(type(e), e, e.__traceback__)  # nothing is published
            raise
        f.stack.close()  # publish
        self._files.append(
            {
                "path": f.name,
                "split": f.split,
                "num_tokens": f.num_tokens,
                "num_documents": f.num_documents,
                "num_bytes": f.sink.size,
                "sha256": f.sink.sha.hexdigest(),
            }
        )

    def close(self) -> dict:
        """Close open files and write ``manifest.json`` last (atomically); return the manifest.

        Returns:
            The manifest dict (layout in ``docs/shard-format.md``); ``files`` are sorted by path.
        """
        if self.manifest is not None:
            return self.manifest
        for split in sorted(self._open):
            self._close_file(split)
        files = sorted(self._files, key=lambda e: e["path"])
        splits = {}
        for s in SPLITS:
            fs = [e for e in files if e["split"] == s]
            splits[s] = {
                "num_tokens": sum(e["num_tokens"] for e in fs),
                "num_documents": sum(e["num_documents"] for e in fs),
                "num_files": len(fs),
                "sources": {k: self._sources[s][k] for k in sorted(self._sources[s])},
            }
        sources: dict[str, dict[str, int]] = {}
        for s in SPLITS:
            for k, v in self._sources[s].items():
                t = sources.setdefault(k, {"num_tokens": 0, "num_documents": 0})
                t["num_tokens"] += v["num_tokens"]
                t["num_documents"] += v["num_documents"]
        manifest = {
            **self._header(),
            "files": files,
            "splits": splits,
            "sources": {k: sources[k] for k in sorted(sources)},
            **self.extra,
        }
        self.storage.write_text(MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Close and discard unfinished files without publishing them or a manifest."""
        err = ShardError(f"{self.out_dir}: ShardWriter aborted")
        for f in self._open.values():
            try:
                f.writer.close()
            except (OSError, pa.ArrowException):
                pass
            finally:
                f.stack.__exit__(ShardError, err, None)  # the atomic writer removes its temp
        self._open.clear()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _as_int_list(values: Iterable) -> list:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        else:
            out.append(int(v))
    return out


def write_shards(
    out_dir: str | os.PathLike | Storage,
    tokenizer: dict,
    docs: Iterable[dict],
    *,
    shard_tokens: int = 100_000_000,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    config_hash: str = "",
    overwrite: bool = True,
) -> dict:
    """Write documents to a v1 shard directory and return the manifest (convenience wrapper).

    Args:
        out_dir: output directory (see :class:`ShardWriter`).
        tokenizer: dict from :func:`webmill.tokenize.encoding.tokenizer_info`.
        docs: dicts with ``id`` (str), ``tokens`` (ints ending with ``eot_id``), optional
            ``split`` (default ``"train"``), ``source`` (default ``"web"``), ``quality_bucket``.
        shard_tokens, row_group_rows, config_hash, overwrite: as in :class:`ShardWriter`.

    Returns:
        The manifest dict that was written to ``out_dir/manifest.json``.

    Raises:
        ShardError: as :meth:`ShardWriter.write_batch`.
    """
    with ShardWriter(
        out_dir, tokenizer, shard_tokens=shard_tokens, row_group_rows=row_group_rows,
        config_hash=config_hash, overwrite=overwrite,
    ) as w:
        pending: dict[str, list[dict]] = {s: [] for s in SPLITS}

        def flush(split: str) -> None:
            batch = pending[split]
            if not batch:
                return
            arrays = [np.asarray(d["tokens"], dtype=np.int64) for d in batch]
            offsets = np.zeros(len(batch) + 1, dtype=np.int64)
            np.cumsum([a.size for a in arrays], out=offsets[1:])
            w.write_batch(
                split,
                [d["id"] for d in batch],
                np.concatenate(arrays),
                offsets,
                [d.get("source", "web") for d in batch],
                [d.get("quality_bucket") for d in batch],
            )
            pending[split] = []

        for d in docs:
            split = d.get("split", "train")
            if split not in pending:
                raise ShardError(f"document {d.get('id')!r}: split must be one of {SPLITS}, got {split!r}")
            pending[split].append(d)
            if len(pending[split]) >= row_group_rows:
                flush(split)
        for split in SPLITS:
            flush(split)
    return w.manifest
