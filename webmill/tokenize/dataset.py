"""The tokenize step: a directory of document Parquet files -> v1 token shards.

Four steps, each a function of its own:
  1. encode/spill (:func:`webmill.tokenize.encode.encode_to_spill`): read, encode with EOT,
     append tokens to a flat spill file;
  2. split assignment (:func:`webmill.tokenize.mix.assign_splits`): val chosen by a hash of
     ``id``;
  3. mixing (:func:`webmill.tokenize.mix.mix_weights`, :func:`~webmill.tokenize.mix.shuffled_order`):
     train documents repeated or subsampled per ``mix`` weight, each split shuffled with ``seed``
     (a global shuffle over the whole dataset);
  4. write (:func:`write_splits`): :class:`webmill.tokenize.writer.ShardWriter` writes the shards
     and ``manifest.json`` last.

Input and output directories are local paths or fsspec URLs (:mod:`webmill.storage`). The spill
is a temp file (one temp-name scheme, :func:`webmill.storage.temp_name`) in the output
directory when it is local, else in the local temp directory.

Everything is deterministic given the inputs, tokenizer, ``seed``, ``val_fraction`` and ``mix``:
two runs write byte-identical files.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import time
from pathlib import Path

import numpy as np

from webmill.errors import UserError
from webmill.storage import Storage, as_storage, temp_name
from webmill.tokenize.encode import DEFAULT_SOURCE, Encoded, encode_to_spill
from webmill.tokenize.encoding import CONFIG_FILE, RANKS_FILE, get_encoding, tokenizer_dir, tokenizer_info
from webmill.tokenize.format import DEFAULT_ROW_GROUP_ROWS, token_dtype
from webmill.tokenize.mix import (
    BUCKET_PREFIX,
    assign_splits,
    check_mix,
    mix_weights,
    parse_mix,
    shuffled_order,
    train_tokens_by_source,
)
from webmill.tokenize.writer import ShardWriter

__all__ = ["BUCKET_PREFIX", "DEFAULT_SOURCE", "parse_mix", "tokenize_dataset", "write_splits"]

TOKENIZER_SUBDIR = "tokenizer"
SHUFFLE = "global permutation per split (numpy PCG64, seed)"


def tokenize_dataset(
    input_dir: str | os.PathLike | Storage,
    out_dir: str | os.PathLike | Storage,
    tokenizer: str = "cl100k_base",
    shard_tokens: int = 100_000_000,
    val_fraction: float = 0.0005,
    seed: int = 0,
    mix: dict[str, float] | None = None,
    config_hash: str = "",
    text_column: str = "text",
    num_threads: int | None = None,
    batch_rows: int = 2048,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
) -> dict:
    """Tokenize every document in ``input_dir/*.parquet`` into v1 token shards in ``out_dir``.

    Args:
        input_dir: directory of document Parquet files (document table of ``docs/design.md``):
            ``text_column`` (required), ``id`` (string; if absent ``<file stem>:<row>``),
            ``source`` (optional, default ``"web"``), ``quality_bucket`` (optional int).
            Null/empty texts are skipped and counted (manifest ``skipped_empty_documents``).
            Local path, fsspec URL or :class:`Storage`.
        out_dir: shard directory (local path, fsspec URL or :class:`Storage`); existing shards
            and manifest there are replaced, stale temp files swept.
        tokenizer: tiktoken name or trained-tokenizer directory (local or URL;
            :func:`get_encoding`). A directory is copied to ``out_dir/tokenizer/`` and the
            manifest's ``tokenizer.path`` is ``"tokenizer"``.
        shard_tokens: target tokens per shard file (int > 0).
        val_fraction: fraction of documents in ``val`` (:func:`~webmill.tokenize.mix.assign_splits`);
            range [0, 1).
        seed: shuffle seed and the seed of the hash deciding fractional ``mix`` repeats.
        mix: per-source weights applied to the train split only
            (:func:`~webmill.tokenize.mix.mix_weights`, :func:`~webmill.tokenize.mix.shuffled_order`).
        config_hash: sha256 hex of the pipeline config, recorded in the manifest.
        text_column: name of the text column.
        num_threads: encoder threads (default: CPUs available to this process).
        batch_rows: documents per read/encode batch.
        row_group_rows: documents per Parquet row group in the shards.

    Returns:
        The manifest dict as written to ``out_dir/manifest.json`` (``docs/shard-format.md``,
        with the added keys ``mix`` (weights, train tokens per source before mixing), ``seed``,
        ``val_fraction``, ``shuffle``, ``input_dir``, ``input_files``, ``input_documents``,
        ``skipped_empty_documents``), plus ``_timing_s`` (seconds; not written to the file).

    Raises:
        UserError: input dir missing / without Parquet files / without any non-empty document,
            bad column, bad ``mix`` key or weight, bad ``val_fraction``.
    """
    t0 = time.perf_counter()
    inp, out = as_storage(input_dir), as_storage(out_dir)
    if not inp.isdir():
        raise UserError(f"{inp.uri()}: input directory not found; give the documents directory (e.g. OUT/final)")
    files = inp.list(suffix=".parquet")
    if not files:
        raise UserError(f"{inp.uri()}: holds no *.parquet files; run the previous curate steps first")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    check_mix(mix)
    enc = get_encoding(tokenizer)
    info = tokenizer_info(enc)
    dtype = np.dtype(token_dtype(info["vocab_size"]))
    num_threads = num_threads or len(os.sched_getaffinity(0))
    out.makedirs()
    out.sweep_temps()  # temps (spill, shard files) of a killed run
    _sweep_legacy_spill_dirs(out)
    tok_dir = tokenizer_dir(tokenizer)
    if tok_dir is not None:
        # A trained tokenizer travels with its shards: copied to OUT/shards/tokenizer/, and the
        # manifest's tokenizer.path (relative to the shard dir) points at it.
        for f in (RANKS_FILE, CONFIG_FILE):
            out.write_bytes(f"{TOKENIZER_SUBDIR}/{f}", tok_dir.read_bytes(f))
        info = {**info, "path": TOKENIZER_SUBDIR}

    local_out = out.local_path()
    if local_out is not None:
        spill_path, scratch = local_out / temp_name("tokenize-spill.bin"), None
    else:
        scratch = tempfile.mkdtemp(prefix="webmill-tokenize-")
        spill_path = Path(scratch) / "tokens.bin"
    try:
        data = encode_to_spill(inp, files, enc, info["eot_id"], dtype, spill_path, text_column=text_column,
                               batch_rows=batch_rows, num_threads=num_threads)
        t_encode = time.perf_counter() - t0
        if not data.ids:
            raise UserError(
                f"{inp.uri()}: no non-empty documents in {len(files)} Parquet file(s) "
                f"(column {text_column!r}); nothing to tokenize"
            )
        is_val = assign_splits(data.ids, val_fraction)
        weights = mix_weights(mix, data.codes, data.source_codes, data.quality_buckets, inp.uri())
        pre_mix = train_tokens_by_source(data.lengths, data.codes, data.names_by_code, np.flatnonzero(~is_val))
        train_order, val_order = shuffled_order(is_val, weights, data.ids, seed)
        if train_order.size == 0:
            raise UserError(f"mix weights {mix} leave no training documents; raise a weight above 0")
        extra = {
            "seed": seed,
            "val_fraction": val_fraction,
            "shuffle": SHUFFLE,
            "mix": {"weights": dict(mix or {}), "train_tokens_before_mix": pre_mix},
            "input_dir": _relative_input(inp, out),
            "input_files": len(files),
            "input_documents": data.input_documents,
            "skipped_empty_documents": data.skipped,
        }
        with ShardWriter(
            out, info, shard_tokens=shard_tokens, row_group_rows=row_group_rows,
            config_hash=config_hash, overwrite=True, extra=extra,
        ) as w:
            write_splits(w, data, {"train": train_order, "val": val_order}, row_group_rows)
        manifest = w.manifest
    finally:
        spill_path.unlink(missing_ok=True)
        if scratch is not None:
            os.rmdir(scratch)
    manifest["_timing_s"] = {"encode": round(t_encode, 3), "total": round(time.perf_counter() - t0, 3)}
    return manifest


def write_splits(w: ShardWriter, data: Encoded, orders: dict[str, np.ndarray], batch_docs: int) -> None:
    """Write step: each split's documents, in ``orders[split]`` order, into ``w``.

    Args:
        w: an open :class:`ShardWriter`.
        data: the encoded documents (:func:`encode_to_spill`).
        orders: ``{"train": indices, "val": indices}`` into ``data`` (int arrays; train first).
        batch_docs: documents per :meth:`ShardWriter.write_batch` call (the row-group size keeps
            memory at one row group of tokens).
    """
    tokens = data.tokens()
    ids_arr = np.array(data.ids, dtype=object)
    names = data.names_by_code
    offsets, qb = data.offsets, data.quality_buckets
    step = max(batch_docs, 1)
    for split, order in orders.items():
        for a in range(0, order.size, step):
            idx = order[a : a + step]
            starts, ends = offsets[idx], offsets[idx + 1]
            flat = np.concatenate([tokens[s:e] for s, e in zip(starts.tolist(), ends.tolist())])
            offs = np.zeros(idx.size + 1, dtype=np.int64)
            np.cumsum(ends - starts, out=offs[1:])
            w.write_batch(
                split,
                ids_arr[idx].tolist(),
                flat,
                offs,
                names[data.codes[idx]].tolist(),
                [None if np.isnan(x) else int(x) for x in qb[idx].tolist()],
            )
    del tokens


def _relative_input(inp: Storage, out: Storage) -> str:
    """The manifest's ``input_dir``: relative to the shard directory when both are on the same
    filesystem (two runs into different ``-o`` paths give the same manifest, and a moved OUT
    keeps pointing at its own documents), else the input's URL."""
    if inp.is_local and out.is_local:
        return os.path.relpath(Path(inp.path()).resolve(), Path(out.path()).resolve())
    if not inp.is_local and not out.is_local and type(inp.fs) is type(out.fs):
        return posixpath.relpath(inp.path(), out.path())
    return inp.uri()


def _sweep_legacy_spill_dirs(out: Storage) -> None:
    """Remove ``.tokenize-*`` spill directories that webmill versions before the storage layer
    left in a shard directory when killed (their files have no temp name to sweep)."""
    for p in out.fs.glob(out.path(".tokenize-*")):
        if out.fs.isdir(p):
            out.fs.rm(p, recursive=True)
