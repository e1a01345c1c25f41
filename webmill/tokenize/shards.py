"""Token shard format v1: writer, reader and validator (see ``docs/shard-format.md``).

A shard directory holds ``shard-00000.parquet``, ``shard-00001.parquet``, ... (one row per
document: ``id``, ``tokens``, ``num_tokens``, ``source``, ``quality_bucket``) and
``manifest.json``. Every document ends with the tokenizer's EOT token (``boundary = "eot"``).
Each file holds one split. The manifest header (``format``, ``version``, ``tokenizer``,
``dtype``, ``config_hash``) is repeated in each file's Parquet key-value metadata under the key
``webmill``, together with that file's ``split``, ``num_tokens`` and ``num_documents``.

Integrity checks follow llm.c's shard header check (magic, version, token count of every shard,
``dev/data/data_common.py`` / ``train_gpt2.c``) and go further: every file's sha256 and size are
recorded in the manifest, Parquet page checksums are written and verified, and the EOT placement
of every document is checked.

Writes are atomic: each file is written to ``<name>.tmp`` and renamed with :func:`os.replace`
when complete; ``manifest.json`` is written last, so a directory with a manifest is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from webmill.errors import UserError

FORMAT = "webmill-token-shards"
VERSION = 1
MANIFEST_NAME = "manifest.json"
KV_KEY = "webmill"
SPLITS = ("train", "val")
UINT16_MAX_VOCAB = 65_536
DEFAULT_ROW_GROUP_ROWS = 1_000
HEADER_KEYS = ("format", "version", "tokenizer", "dtype", "config_hash")
TOKENIZER_KEYS = ("name", "ranks_sha256", "vocab_size", "eot_id", "bos_id", "boundary")


class ShardError(UserError):
    """A token shard directory or file is missing, corrupt or does not match its manifest.

    The message names the file and says what to do (usually: re-run ``curate tokenize``).
    """


def token_dtype(vocab_size: int) -> str:
    """Return the token dtype name for a vocabulary: ``"uint16"`` if ``vocab_size <= 65,536``.

    Args:
        vocab_size: number of token ids (ids are ``0 .. vocab_size - 1``), int > 0.

    Returns:
        ``"uint16"`` or ``"uint32"`` (shard format v1, ``docs/shard-format.md``; the uint16
        choice for GPT-2-sized vocabularies follows nanoGPT's ``prepare.py`` / llm.c).

    Raises:
        ValueError: ``vocab_size`` is not a positive int or exceeds 2**32.
    """
    if not isinstance(vocab_size, (int, np.integer)) or vocab_size <= 0 or vocab_size > 2**32:
        raise ValueError(f"vocab_size must be a positive int <= 2**32, got {vocab_size!r}")
    return "uint16" if vocab_size <= UINT16_MAX_VOCAB else "uint32"


def schema(dtype: str) -> pa.Schema:
    """Return the Arrow schema of a v1 token shard for token dtype ``"uint16"``/``"uint32"``."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("tokens", pa.list_(_arrow_type(dtype)), nullable=False),
            pa.field("num_tokens", pa.int32(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("quality_bucket", pa.int32(), nullable=True),
        ]
    )


def _arrow_type(dtype: str) -> pa.DataType:
    if dtype == "uint16":
        return pa.uint16()
    if dtype == "uint32":
        return pa.uint32()
    raise ValueError(f"token dtype must be 'uint16' or 'uint32', got {dtype!r}")


def _check_tokenizer_dict(tokenizer: dict, where: str) -> None:
    if not isinstance(tokenizer, dict):
        raise ShardError(f"{where}: 'tokenizer' must be an object, got {type(tokenizer).__name__}")
    missing = [k for k in TOKENIZER_KEYS if k not in tokenizer]
    if missing:
        raise ShardError(
            f"{where}: tokenizer info lacks {missing}; build it with "
            "webmill.tokenize.encoding.tokenizer_info(enc)"
        )
    if tokenizer["boundary"] != "eot":
        raise ShardError(f"{where}: tokenizer boundary must be 'eot' in format v1, got {tokenizer['boundary']!r}")
    vs, eot = tokenizer["vocab_size"], tokenizer["eot_id"]
    if not isinstance(vs, int) or vs <= 0:
        raise ShardError(f"{where}: tokenizer vocab_size must be a positive int, got {vs!r}")
    if not isinstance(eot, int) or not 0 <= eot < vs:
        raise ShardError(f"{where}: tokenizer eot_id {eot!r} is not a token id below vocab_size {vs}")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _OpenFile:
    """State of one shard file being written (one split)."""

    def __init__(self, path: Path, split: str, writer: pq.ParquetWriter):
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.split = split
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
        out_dir: output directory; created if missing. Existing ``shard-*.parquet``,
            ``*.tmp`` and ``manifest.json`` there are deleted first when ``overwrite`` is
            True, else a :class:`ShardError` is raised.
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
        out_dir: str | os.PathLike,
        tokenizer: dict,
        *,
        shard_tokens: int = 100_000_000,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        config_hash: str = "",
        overwrite: bool = True,
        extra: dict | None = None,
        compression: str = "zstd",
    ):
        _check_tokenizer_dict(tokenizer, "ShardWriter")
        if shard_tokens <= 0 or row_group_rows <= 0:
            raise ValueError(f"shard_tokens and row_group_rows must be > 0, got {shard_tokens}, {row_group_rows}")
        self.out_dir = Path(out_dir)
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
        self.out_dir.mkdir(parents=True, exist_ok=True)
        old = sorted(
            p for p in self.out_dir.iterdir()
            if p.name == MANIFEST_NAME or p.name.endswith(".tmp")
            or (p.name.startswith("shard-") and p.name.endswith(".parquet"))
        )
        if old and not overwrite:
            raise ShardError(
                f"{self.out_dir}: already holds token shards ({old[0].name}, ...); "
                "choose another output directory or allow overwriting"
            )
        # Delete the manifest first: an interrupted run then leaves no manifest behind.
        for p in sorted(old, key=lambda p: p.name != MANIFEST_NAME):
            p.unlink()

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
        lengths = np.diff(offsets)
        if (lengths <= 0).any():
            bad = int(np.flatnonzero(lengths <= 0)[0])
            raise ShardError(f"document {ids[bad]!r} has no tokens; every document must end with EOT")
        eot = self.tokenizer["eot_id"]
        last = flat[offsets[1:] - 1]
        if (last != eot).any():
            bad = int(np.flatnonzero(last != eot)[0])
            raise ShardError(
                f"document {ids[bad]!r} ends with token {int(last[bad])}, not eot_id {eot}; "
                "append the EOT token to every document"
            )
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= self.tokenizer["vocab_size"]):
            raise ShardError(
                f"token ids must lie in [0, {self.tokenizer['vocab_size']}), got "
                f"[{int(flat.min())}, {int(flat.max())}]"
            )
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
            path = self.out_dir / f"shard-{self._next_index:05d}.parquet"
            self._next_index += 1
            tmp = path.with_name(path.name + ".tmp")
            writer = pq.ParquetWriter(
                tmp,
                self.schema,
                compression=self.compression,
                write_page_checksum=True,
                write_statistics=False,
            )
            f = self._open[split] = _OpenFile(path, split, writer)
        return f

    def _append(self, f, ids, flat, offsets, sources, qbs, start, stop) -> None:
        base = offsets[start]
        offs = (offsets[start : stop + 1] - base).astype(np.int32)
        values = pa.array(flat[base : offsets[stop]], type=_arrow_type(self.dtype))
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
        stats = self._sources[f.split]
        # per-source counts without a Python loop per document
        uniq, inv = np.unique(np.asarray(src, dtype=object), return_inverse=True)
        tok_sum = np.bincount(inv, weights=lengths, minlength=len(uniq))
        doc_sum = np.bincount(inv, minlength=len(uniq))
        for u, t, d in zip(uniq, tok_sum, doc_sum):
            s = stats.setdefault(str(u), {"num_tokens": 0, "num_documents": 0})
            s["num_tokens"] += int(t)
            s["num_documents"] += int(d)
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
        self._flush(f, final=True)
        meta = {**self._header(), "split": f.split, "num_tokens": f.num_tokens, "num_documents": f.num_documents}
        f.writer.add_key_value_metadata({KV_KEY: json.dumps(meta, sort_keys=True)})
        f.writer.close()
        with open(f.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(f.tmp, f.path)
        self._files.append(
            {
                "path": f.path.name,
                "split": f.split,
                "num_tokens": f.num_tokens,
                "num_documents": f.num_documents,
                "num_bytes": f.path.stat().st_size,
                "sha256": _sha256_file(f.path),
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
        _atomic_write_text(self.out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Close and delete unfinished temp files without writing a manifest."""
        for f in self._open.values():
            try:
                f.writer.close()
            finally:
                f.tmp.unlink(missing_ok=True)
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
    out_dir: str | os.PathLike,
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


# -- reading and validation ------------------------------------------------------------------
def read_manifest(shard_dir: str | os.PathLike) -> dict:
    """Read and structurally check ``shard_dir/manifest.json``.

    Args:
        shard_dir: a directory written by ``curate tokenize`` / :class:`ShardWriter`.

    Returns:
        The manifest dict (layout in ``docs/shard-format.md``).

    Raises:
        ShardError: the directory or manifest is missing, not JSON, of another format or
            version, or lacks required keys; the message names the path.
    """
    d = Path(shard_dir)
    path = d / MANIFEST_NAME
    if not d.is_dir():
        raise ShardError(f"{d}: shard directory not found; run `curate tokenize` to create it")
    if not path.is_file():
        raise ShardError(
            f"{path}: missing; the shard directory is incomplete (interrupted run?) — re-run `curate tokenize`"
        )
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(f"{path}: not valid JSON ({e}); re-run `curate tokenize`") from e
    if not isinstance(m, dict):
        raise ShardError(f"{path}: expected a JSON object")
    if m.get("format") != FORMAT:
        raise ShardError(f"{path}: format is {m.get('format')!r}, expected {FORMAT!r}")
    if m.get("version") != VERSION:
        raise ShardError(
            f"{path}: shard format version {m.get('version')!r} is not supported (this webmill reads "
            f"version {VERSION}); re-run `curate tokenize` with this webmill"
        )
    missing = [k for k in (*HEADER_KEYS, "files", "splits") if k not in m]
    if missing:
        raise ShardError(f"{path}: lacks keys {missing}")
    _check_tokenizer_dict(m["tokenizer"], str(path))
    if m["dtype"] != token_dtype(m["tokenizer"]["vocab_size"]):
        raise ShardError(
            f"{path}: dtype {m['dtype']!r} does not fit vocab_size {m['tokenizer']['vocab_size']} "
            f"(expected {token_dtype(m['tokenizer']['vocab_size'])!r})"
        )
    if not isinstance(m["files"], list) or not m["files"]:
        raise ShardError(f"{path}: lists no files; the tokenize step wrote no documents")
    for e in m["files"]:
        if not isinstance(e, dict) or not {"path", "split", "num_tokens", "num_documents"} <= set(e):
            raise ShardError(f"{path}: bad file entry {e!r}")
        if e["split"] not in SPLITS:
            raise ShardError(f"{path}: file {e['path']} has unknown split {e['split']!r}")
        if Path(e["path"]).name != e["path"]:
            raise ShardError(f"{path}: file path {e['path']!r} must be a plain file name in the directory")
    return m


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException, ValueError) as e:
        raise ShardError(f"{path}: not a readable Parquet file ({e}); the file is truncated or corrupt — re-run `curate tokenize`") from e


def check_shards(
    shard_dir: str | os.PathLike,
    *,
    tokenizer: dict | None = None,
    verify_tokens: bool = True,
) -> dict:
    """Validate every shard file against the manifest and return the manifest.

    Checks (each failure raises :class:`ShardError` naming the file):
      * manifest: format ``webmill-token-shards``, version 1, required keys, dtype fits
        vocab_size (:func:`read_manifest`); optionally equal to ``tokenizer``
        (name, ranks_sha256, vocab_size, eot_id, bos_id, boundary, and pattern_sha256 when both
        have it) — the trainer passes its own;
      * no ``shard-*.parquet`` in the directory that the manifest does not list;
      * each file: exists, size and sha256 as recorded (when ``verify_tokens``), readable
        Parquet footer, schema (id string, tokens list<dtype>, num_tokens int32, source string,
        quality_bucket int32), key-value header equal to the manifest's, split and counts equal
        to the manifest entry, row count;
      * when ``verify_tokens``: page checksums, every ``num_tokens == len(tokens)``, the last
        token of every document is ``eot_id``, all ids < vocab_size, sums per file, split and
        source match the manifest.

    Args:
        shard_dir: directory with ``manifest.json`` and ``shard-*.parquet``.
        tokenizer: expected tokenizer info (from ``tokenizer_info(enc)``), or None to skip.
        verify_tokens: read all token data (O(total bytes), row group by row group, bounded
            memory); False checks only the manifest and Parquet footers (fast).

    Returns:
        The manifest dict.

    Raises:
        ShardError: on the first problem found.
    """
    d = Path(shard_dir)
    m = read_manifest(d)
    mpath = d / MANIFEST_NAME
    tok = m["tokenizer"]
    if tokenizer is not None:
        keys = TOKENIZER_KEYS + tuple(k for k in ("pattern_sha256",) if k in tokenizer and k in tok)
        for k in keys:
            if tokenizer.get(k) != tok.get(k):
                raise ShardError(
                    f"{mpath}: tokenizer {k} is {tok.get(k)!r} but the expected tokenizer has "
                    f"{tokenizer.get(k)!r}; re-tokenize with the same tokenizer or change the config"
                )
    listed = {e["path"] for e in m["files"]}
    if len(listed) != len(m["files"]):
        raise ShardError(f"{mpath}: lists a file twice")
    extra = sorted(p.name for p in d.glob("shard-*.parquet") if p.name not in listed)
    if extra:
        raise ShardError(f"{d / extra[0]}: not listed in {mpath} (stale file from another run?); delete it or re-run `curate tokenize`")

    header = {k: m[k] for k in HEADER_KEYS}
    want_schema = schema(m["dtype"])
    eot, vocab = tok["eot_id"], tok["vocab_size"]
    split_sums = {s: [0, 0] for s in SPLITS}
    source_sums: dict[str, dict[str, list[int]]] = {s: {} for s in SPLITS}
    for e in m["files"]:
        path = d / e["path"]
        if not path.is_file():
            raise ShardError(f"{path}: listed in {mpath} but missing; re-run `curate tokenize`")
        if "num_bytes" in e and path.stat().st_size != e["num_bytes"]:
            raise ShardError(
                f"{path}: {path.stat().st_size} bytes but the manifest records {e['num_bytes']} "
                "(truncated or replaced); re-run `curate tokenize`"
            )
        if verify_tokens and "sha256" in e and _sha256_file(path) != e["sha256"]:
            raise ShardError(f"{path}: sha256 differs from the manifest (corrupt file); re-run `curate tokenize`")
        pf = _open_parquet(path)
        if not _schema_matches(pf.schema_arrow, want_schema):
            got = ", ".join(f"{f.name}: {f.type}" for f in pf.schema_arrow)
            raise ShardError(
                f"{path}: schema ({got}) does not match format v1 with dtype {m['dtype']} "
                f"({', '.join(f'{f.name}: {f.type}' for f in want_schema)}); re-run `curate tokenize`"
            )
        kv = pf.metadata.metadata or {}
        raw = kv.get(KV_KEY.encode())
        if raw is None:
            raise ShardError(f"{path}: no '{KV_KEY}' key-value metadata; not written by webmill's ShardWriter")
        try:
            fmeta = json.loads(raw)
        except json.JSONDecodeError as ex:
            raise ShardError(f"{path}: '{KV_KEY}' metadata is not JSON ({ex})") from ex
        for k in HEADER_KEYS:
            if fmeta.get(k) != header[k]:
                raise ShardError(
                    f"{path}: metadata {k} = {fmeta.get(k)!r} differs from {mpath} ({header[k]!r}); "
                    "the file belongs to another run — re-run `curate tokenize`"
                )
        for k in ("split", "num_tokens", "num_documents"):
            if fmeta.get(k) != e[k]:
                raise ShardError(f"{path}: metadata {k} = {fmeta.get(k)!r} but {mpath} records {e[k]!r}")
        if pf.metadata.num_rows != e["num_documents"]:
            raise ShardError(f"{path}: {pf.metadata.num_rows} rows but {mpath} records {e['num_documents']} documents")
        if verify_tokens:
            ntok = 0
            srcs = source_sums[e["split"]]
            try:
                for i in range(pf.num_row_groups):
                    t = pf.read_row_group(i, columns=["id", "tokens", "num_tokens", "source"])
                    ntok += _check_row_group(path, i, t, eot, vocab)
                    lens = t.column("num_tokens").to_numpy()
                    src = np.asarray(t.column("source").to_pylist(), dtype=object)
                    uniq, inv = np.unique(src, return_inverse=True)
                    tsum = np.bincount(inv, weights=lens, minlength=len(uniq))
                    dsum = np.bincount(inv, minlength=len(uniq))
                    for u, a, b in zip(uniq, tsum, dsum):
                        c = srcs.setdefault(str(u), [0, 0])
                        c[0] += int(a)
                        c[1] += int(b)
            except (OSError, pa.ArrowException) as ex:
                raise ShardError(f"{path}: cannot read data ({ex}); the file is corrupt — re-run `curate tokenize`") from ex
            if ntok != e["num_tokens"]:
                raise ShardError(f"{path}: holds {ntok} tokens but {mpath} records {e['num_tokens']}")
        split_sums[e["split"]][0] += e["num_tokens"]
        split_sums[e["split"]][1] += e["num_documents"]

    for s in SPLITS:
        rec = m["splits"].get(s, {"num_tokens": 0, "num_documents": 0})
        if [rec.get("num_tokens"), rec.get("num_documents")] != split_sums[s]:
            raise ShardError(
                f"{mpath}: split {s} records {rec.get('num_tokens')} tokens / {rec.get('num_documents')} "
                f"documents but its files sum to {split_sums[s][0]} / {split_sums[s][1]}"
            )
        if verify_tokens and "sources" in rec:
            got = {k: v for k, v in source_sums[s].items()}
            want = {k: [v["num_tokens"], v["num_documents"]] for k, v in rec["sources"].items()}
            if got != want:
                raise ShardError(f"{mpath}: split {s} per-source counts {want} do not match the files ({got})")
    return m


def _schema_matches(got: pa.Schema, want: pa.Schema) -> bool:
    """Same column names, order and types (nullability and list item names are not compared)."""
    if got.names != want.names:
        return False
    for g, w in zip(got.types, want.types):
        if pa.types.is_list(w):
            if not (pa.types.is_list(g) and g.value_type == w.value_type):
                return False
        elif g != w:
            return False
    return True


def _check_row_group(path: Path, i: int, t: pa.Table, eot: int, vocab: int) -> int:
    """Check one row group's documents; return its token count."""
    col = t.column("tokens").combine_chunks()
    offs = col.offsets.to_numpy()
    flat = col.values.to_numpy()
    flat = flat[offs[0] : offs[-1]]
    offs = offs - offs[0]
    lens = np.diff(offs)
    nt = t.column("num_tokens").to_numpy()
    if not np.array_equal(lens, nt):
        bad = int(np.flatnonzero(lens != nt)[0])
        raise ShardError(
            f"{path}: row group {i}, document {t.column('id')[bad].as_py()!r}: num_tokens {int(nt[bad])} "
            f"but {int(lens[bad])} tokens stored"
        )
    if (lens <= 0).any():
        bad = int(np.flatnonzero(lens <= 0)[0])
        raise ShardError(f"{path}: row group {i}, document {t.column('id')[bad].as_py()!r} has no tokens")
    last = flat[offs[1:] - 1]
    if (last != eot).any():
        bad = int(np.flatnonzero(last != eot)[0])
        raise ShardError(
            f"{path}: row group {i}, document {t.column('id')[bad].as_py()!r} ends with token "
            f"{int(last[bad])}, not eot_id {eot}; every document must end with EOT"
        )
    if flat.size and int(flat.max()) >= vocab:
        raise ShardError(f"{path}: row group {i} holds token id {int(flat.max())} >= vocab_size {vocab}")
    return int(flat.size)


def load_shard(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one shard file's tokens as a flat array plus document offsets (no validation).

    Args:
        path: a ``shard-NNNNN.parquet`` file.

    Returns:
        ``(tokens, offsets)``: ``tokens`` 1-D uint16/uint32 array of all documents
        concatenated (each ending with EOT); ``offsets`` 1-D int64 array of shape
        ``(num_documents + 1,)`` with document i at ``tokens[offsets[i]:offsets[i+1]]``.

    Raises:
        ShardError: the file is missing or not readable Parquet.
    """
    p = Path(path)
    if not p.is_file():
        raise ShardError(f"{p}: shard file not found")
    pf = _open_parquet(p)
    try:
        col = pf.read(columns=["tokens"]).column("tokens").combine_chunks()
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"{p}: cannot read tokens ({e}); re-run `curate tokenize`") from e
    offs = col.offsets.to_numpy().astype(np.int64)
    flat = col.values.to_numpy()[offs[0] : offs[-1]]
    return flat, offs - offs[0]


def check_shards_cmd(
    shard_dir: Path = typer.Argument(
        ..., help="Token shard directory written by `curate tokenize` (holds manifest.json and shard-*.parquet)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Check only manifest.json and the Parquet footers; skip reading token data "
        "(no sha256, page-checksum or EOT-placement checks)."
    ),
) -> None:
    """Validate a token shard directory against its manifest and print a summary.

    Checks format, version, tokenizer hash, dtype, per-file sha256 and counts, and that every
    document ends with EOT (see ``docs/shard-format.md``); prints files/documents/tokens per
    split, tokens per source and the tokenizer. Exits with code 2 (``ShardError``) naming the
    first bad file.
    """
    from rich.console import Console
    from rich.table import Table

    m = check_shards(shard_dir, verify_tokens=not quick)
    tok = m["tokenizer"]
    table = Table(title=f"{shard_dir}: valid webmill token shards v{m['version']}")
    for c in ("split", "files", "documents", "tokens"):
        table.add_column(c, justify="right" if c != "split" else "left")
    for s in SPLITS:
        rec = m["splits"].get(s, {})
        nf = sum(1 for e in m["files"] if e["split"] == s)
        table.add_row(s, str(nf), f"{rec.get('num_documents', 0):,}", f"{rec.get('num_tokens', 0):,}")
    console = Console()
    console.print(table)
    src = Table(title="sources (all splits)")
    for c in ("source", "documents", "tokens"):
        src.add_column(c, justify="right" if c != "source" else "left")
    for k, v in m.get("sources", {}).items():
        src.add_row(k, f"{v['num_documents']:,}", f"{v['num_tokens']:,}")
    console.print(src)
    console.print(
        f"tokenizer {tok['name']} vocab_size={tok['vocab_size']} eot_id={tok['eot_id']} "
        f"bos_id={tok['bos_id']} ranks_sha256={tok['ranks_sha256'][:16]}… dtype={m['dtype']}"
        + ("" if not quick else "  (quick: token data not read)")
    )
