"""The tokenize step: a directory of document Parquet files -> v1 token shards.

Pipeline (one process, threads; tiktoken's Rust encoder releases the GIL):
  1. a reader thread streams record batches (``id``, ``text``, optional ``source`` and
     ``quality_bucket``) from every ``*.parquet`` in sorted order, so Parquet I/O overlaps
     encoding;
  2. a thread pool encodes chunks of each batch with ``Encoding.encode_to_numpy`` (same ids as
     ``encode_ordinary``: no special-token parsing, a literal "<|endoftext|>" in a web page is
     plain text) and appends the EOT id to every document; up to two batches are in flight so
     the threads never wait on the Python side;
  3. tokens are appended to a flat on-disk spill (uint16/uint32) with per-document offsets,
     so memory stays bounded;
  4. documents are split (val chosen by a hash of ``id``), train documents are repeated or
     subsampled per ``mix`` weight, each split is shuffled with ``seed`` (a global shuffle over
     the whole dataset), and :class:`webmill.tokenize.shards.ShardWriter` writes the shards and
     ``manifest.json`` last.

Everything is deterministic given the inputs, tokenizer, ``seed``, ``val_fraction`` and ``mix``:
two runs write byte-identical files.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer
import xxhash

from webmill.errors import UserError
from webmill.tokenize.encoding import get_encoding, tokenizer_info
from webmill.tokenize.shards import DEFAULT_ROW_GROUP_ROWS, ShardWriter, token_dtype

DEFAULT_SOURCE = "web"
BUCKET_PREFIX = "bucket:"
_U64 = float(2**64)


def _hash_unit(ids: list[str], seed: int) -> np.ndarray:
    """Map each id to a float in [0, 1) with xxh64(id, seed) / 2**64 (stable across runs)."""
    return np.fromiter((xxhash.xxh64_intdigest(s.encode("utf-8"), seed) for s in ids), dtype=np.float64, count=len(ids)) / _U64


def parse_mix(spec: str | None) -> dict[str, float] | None:
    """Parse ``"web=1,wiki=2.5,bucket:4=2"`` into ``{"web": 1.0, "wiki": 2.5, "bucket:4": 2.0}``.

    Raises:
        UserError: malformed item or a negative / non-numeric weight.
    """
    if not spec:
        return None
    out: dict[str, float] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.rpartition("=")
        if not sep or not key:
            raise UserError(f"--mix item {item!r} is not NAME=WEIGHT (e.g. web=1,wiki=2,bucket:4=1.5)")
        try:
            w = float(val)
        except ValueError as e:
            raise UserError(f"--mix item {item!r}: weight {val!r} is not a number") from e
        out[key.strip()] = w
    return out or None


class _Reader(threading.Thread):
    """Background thread: read Parquet record batches and put ``(file, dict of lists)`` on a queue."""

    def __init__(self, files: list[Path], text_column: str, batch_rows: int, q: queue.Queue):
        super().__init__(daemon=True, name="webmill-tokenize-reader")
        self.files, self.text_column, self.batch_rows, self.q = files, text_column, batch_rows, q
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for f in self.files:
                try:
                    pf = pq.ParquetFile(f)
                    names = pf.schema_arrow.names
                except (OSError, pa.ArrowException) as e:
                    raise UserError(f"{f}: not a readable Parquet file ({e}); re-run the step that wrote it") from e
                if self.text_column not in names:
                    raise UserError(
                        f"{f}: no column {self.text_column!r} (columns: {names}); pass --text-column or "
                        "point --input at the documents directory"
                    )
                cols = [c for c in ("id", self.text_column, "source", "quality_bucket") if c in names]
                row = 0
                for batch in pf.iter_batches(batch_size=self.batch_rows, columns=cols):
                    n = batch.num_rows
                    d = {c: batch.column(c) for c in cols}
                    texts = d[self.text_column].to_pylist()
                    ids = (
                        d["id"].cast(pa.string()).to_pylist() if "id" in d
                        else [f"{f.stem}:{row + i}" for i in range(n)]
                    )
                    if "id" in d and d["id"].null_count:
                        raise UserError(f"{f}: column 'id' has null values (rows {row}..{row + n}); every document needs an id")
                    item = {
                        "file": f,
                        "ids": ids,
                        "texts": texts,
                        "source": d["source"].cast(pa.string()).to_pylist() if "source" in d else None,
                        "quality_bucket": d["quality_bucket"].cast(pa.int32()) if "quality_bucket" in d else None,
                    }
                    row += n
                    while not self.stop.is_set():
                        try:
                            self.q.put(item, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if self.stop.is_set():
                        return
            self.q.put(None)
        except BaseException as e:  # handed to the consumer, re-raised there
            self.q.put(e)


def _encode_chunk(enc, texts: list[str], eot: int, np_dtype) -> tuple[np.ndarray, np.ndarray]:
    """Encode texts; return (flat tokens with EOT after each doc, lengths incl. EOT)."""
    arrs = [enc.encode_to_numpy(t, allowed_special=set(), disallowed_special=()) for t in texts]
    lens = np.fromiter((a.size + 1 for a in arrs), dtype=np.int64, count=len(arrs))
    eot_arr = np.array([eot], dtype=np.uint32)
    parts: list[np.ndarray] = []
    for a in arrs:
        parts.append(a)
        parts.append(eot_arr)
    flat = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint32)
    return flat.astype(np_dtype, copy=False), lens


def tokenize_dataset(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
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
        out_dir: shard directory; existing shards and manifest there are replaced.
        tokenizer: tiktoken name or trained-tokenizer directory (:func:`get_encoding`).
        shard_tokens: target tokens per shard file (int > 0).
        val_fraction: fraction of documents in ``val``, chosen by ``xxh64(id) / 2**64 <
            val_fraction`` (independent of ``seed`` and ``mix``); with ≥ 2 documents at least
            one is in val (the smallest hash) and at least one in train; 0 means no val split.
            Range [0, 1).
        seed: shuffle seed (numpy PCG64 permutation of each split's documents) and the seed of
            the hash deciding fractional ``mix`` repeats.
        mix: per-source weights applied to the train split only. Key ``NAME`` matches
            ``source == NAME``; key ``bucket:N`` matches ``quality_bucket == N``; weights of
            matching keys multiply; unmatched documents keep weight 1. A document of weight
            ``w`` appears ``floor(w)`` times plus once more when ``xxh64(id, seed+1)/2**64 <
            frac(w)`` (so 0.5 keeps about half, 2 doubles). Data-mixing by repetition/upsampling
            as in "Scaling Data-Constrained Language Models" (Muennighoff et al., 2023, §4).
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
    inp = Path(input_dir)
    if not inp.is_dir():
        raise UserError(f"{inp}: input directory not found; give the documents directory (e.g. OUT/final)")
    files = sorted(inp.glob("*.parquet"))
    if not files:
        raise UserError(f"{inp}: holds no *.parquet files; run the previous curate steps first")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if mix:
        bad = {k: w for k, w in mix.items() if not (w >= 0 and np.isfinite(w))}
        if bad:
            raise UserError(f"mix weights must be finite and >= 0, got {bad}")
    enc = get_encoding(tokenizer)
    info = tokenizer_info(enc)
    eot = info["eot_id"]
    dtype = np.dtype(token_dtype(info["vocab_size"]))
    num_threads = num_threads or len(os.sched_getaffinity(0))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if Path(tokenizer).is_dir():
        # A trained tokenizer travels with its shards: copied to OUT/shards/tokenizer/, and the
        # manifest's tokenizer.path (relative to the shard dir) points at it.
        from webmill.tokenize.encoding import CONFIG_FILE, RANKS_FILE

        (out / "tokenizer").mkdir(exist_ok=True)
        for f in (RANKS_FILE, CONFIG_FILE):
            shutil.copyfile(Path(tokenizer) / f, out / "tokenizer" / f)
        info = {**info, "path": "tokenizer"}

    for stale in out.glob(".tokenize-*"):  # spill dirs left by a killed run
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)

    # ---- pass 1: read + encode + spill -----------------------------------------------------
    spill_dir = Path(tempfile.mkdtemp(prefix=".tokenize-", dir=out))
    try:
        ids_all: list[str] = []
        src_codes: list[np.ndarray] = []
        src_names: dict[str, int] = {}
        qb_chunks: list[pa.Array] = []
        lens_chunks: list[np.ndarray] = []
        skipped = 0
        n_input = 0
        q: queue.Queue = queue.Queue(maxsize=4)
        reader = _Reader(files, text_column, batch_rows, q)
        reader.start()
        spill_path = spill_dir / "tokens.bin"
        pending: deque = deque()
        with open(spill_path, "wb") as spill, ThreadPoolExecutor(num_threads, thread_name_prefix="webmill-encode") as pool:

            def finish_one() -> None:
                futs = pending.popleft()
                for fut in futs:
                    flat, lens = fut.result()
                    spill.write(memoryview(flat))
                    lens_chunks.append(lens)

            try:
                while True:
                    item = q.get()
                    if item is None:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    texts = item["texts"]
                    n_input += len(texts)
                    keep = [i for i, t in enumerate(texts) if t]
                    skipped += len(texts) - len(keep)
                    if not keep:
                        continue
                    if len(keep) < len(texts):
                        texts = [texts[i] for i in keep]
                        ids = [item["ids"][i] for i in keep]
                        srcs = None if item["source"] is None else [item["source"][i] for i in keep]
                        qb = None if item["quality_bucket"] is None else item["quality_bucket"].take(pa.array(keep))
                    else:
                        ids, srcs, qb = item["ids"], item["source"], item["quality_bucket"]
                    ids_all.extend(ids)
                    if srcs is None:
                        code = src_names.setdefault(DEFAULT_SOURCE, len(src_names))
                        src_codes.append(np.full(len(ids), code, dtype=np.int32))
                    else:
                        src_codes.append(
                            np.fromiter(
                                (src_names.setdefault(s or DEFAULT_SOURCE, len(src_names)) for s in srcs),
                                dtype=np.int32, count=len(srcs),
                            )
                        )
                    qb_chunks.append(qb if qb is not None else pa.nulls(len(ids), pa.int32()))
                    # contiguous chunks, ~4 per thread, balanced by characters
                    n_chunks = max(1, min(len(texts), 4 * num_threads))
                    bounds = np.linspace(0, len(texts), n_chunks + 1).astype(int)
                    futs = [
                        pool.submit(_encode_chunk, enc, texts[a:b], eot, dtype)
                        for a, b in zip(bounds[:-1], bounds[1:]) if b > a
                    ]
                    pending.append(futs)
                    if len(pending) >= 2:
                        finish_one()
                while pending:
                    finish_one()
            finally:
                reader.stop.set()
        t_encode = time.perf_counter() - t0

        n_docs = len(ids_all)
        if n_docs == 0:
            raise UserError(
                f"{inp}: no non-empty documents in {len(files)} Parquet file(s) "
                f"(column {text_column!r}); nothing to tokenize"
            )
        lens = np.concatenate(lens_chunks)
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        codes = np.concatenate(src_codes)
        names_by_code = np.array(sorted(src_names, key=src_names.get), dtype=object)
        qbs = pa.concat_arrays([c.cast(pa.int32()) for c in qb_chunks])
        qb_np = qbs.to_numpy(zero_copy_only=False)  # float with NaN for nulls
        tokens = np.memmap(spill_path, dtype=dtype, mode="r", shape=(int(offsets[-1]),)) if offsets[-1] else np.empty(0, dtype)

        # ---- split, mix, shuffle ------------------------------------------------------------
        is_val = np.zeros(n_docs, dtype=bool)
        if n_docs >= 2 and val_fraction > 0:
            h = _hash_unit(ids_all, 0)
            is_val = h < val_fraction
            if not is_val.any():
                is_val[int(np.argmin(h))] = True
            if is_val.all():
                is_val[int(np.argmax(h))] = False
        train_idx = np.flatnonzero(~is_val)
        val_idx = np.flatnonzero(is_val)

        weights = np.ones(n_docs, dtype=np.float64)
        if mix:
            for key, w in mix.items():
                if key.startswith(BUCKET_PREFIX):
                    try:
                        b = int(key[len(BUCKET_PREFIX):])
                    except ValueError as e:
                        raise UserError(f"mix key {key!r}: bucket must be an int, e.g. bucket:3") from e
                    m = qb_np == b
                else:
                    if key not in src_names:
                        raise UserError(
                            f"mix key {key!r} matches no document source; sources in {inp}: "
                            f"{sorted(src_names)} (or use bucket:N for quality buckets)"
                        )
                    m = codes == src_names[key]
                if not m.any():
                    raise UserError(f"mix key {key!r} matches no document in {inp}")
                weights[m] *= w
        pre_mix: dict[str, int] = {}
        for c, name in enumerate(names_by_code):
            pre_mix[str(name)] = int(lens[train_idx][codes[train_idx] == c].sum())
        w_tr = weights[train_idx]
        reps = np.floor(w_tr).astype(np.int64)
        frac = w_tr - reps
        if (frac > 0).any():
            u = _hash_unit([ids_all[i] for i in train_idx], seed + 1)
            reps += (u < frac).astype(np.int64)
        train_entries = np.repeat(train_idx, reps)
        rng = np.random.default_rng(seed)
        train_order = train_entries[rng.permutation(train_entries.size)]
        val_order = val_idx[rng.permutation(val_idx.size)]
        if train_order.size == 0:
            raise UserError(f"mix weights {mix} leave no training documents; raise a weight above 0")

        # ---- pass 2: write shards -----------------------------------------------------------
        extra = {
            "seed": seed,
            "val_fraction": val_fraction,
            "shuffle": "global permutation per split (numpy PCG64, seed)",
            "mix": {"weights": dict(mix or {}), "train_tokens_before_mix": pre_mix},
            # relative to the shard directory: two runs into different -o paths give the same
            # manifest, and a moved OUT keeps pointing at its own documents
            "input_dir": os.path.relpath(inp.resolve(), out.resolve()),
            "input_files": len(files),
            "input_documents": n_input,
            "skipped_empty_documents": skipped,
        }
        ids_arr = np.array(ids_all, dtype=object)
        with ShardWriter(
            out, info, shard_tokens=shard_tokens, row_group_rows=row_group_rows,
            config_hash=config_hash, overwrite=True, extra=extra,
        ) as w:
            for split, order in (("train", train_order), ("val", val_order)):
                step = max(row_group_rows, 1)
                for a in range(0, order.size, step):
                    idx = order[a : a + step]
                    starts, ends = offsets[idx], offsets[idx + 1]
                    flat = np.concatenate([tokens[s:e] for s, e in zip(starts.tolist(), ends.tolist())])
                    offs = np.zeros(idx.size + 1, dtype=np.int64)
                    np.cumsum(ends - starts, out=offs[1:])
                    qsel = qb_np[idx]
                    w.write_batch(
                        split,
                        ids_arr[idx].tolist(),
                        flat,
                        offs,
                        names_by_code[codes[idx]].tolist(),
                        [None if np.isnan(x) else int(x) for x in qsel.tolist()],
                    )
        manifest = w.manifest
        del tokens
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    manifest["_timing_s"] = {"encode": round(t_encode, 3), "total": round(time.perf_counter() - t0, 3)}
    return manifest


def tokenize_cmd(
    input: Path = typer.Argument(..., help="Directory of document Parquet files (e.g. OUT/final) with a text column."),
    out: Path = typer.Option(..., "--out", "-o", help="Output token shard directory (e.g. OUT/shards); existing shards there are replaced."),
    tokenizer: str = typer.Option("cl100k_base", "--tokenizer", help="tiktoken name (cl100k_base works offline; gpt2, o200k_base need a cached download) or a directory from `curate train-tokenizer`."),
    shard_tokens: int = typer.Option(100_000_000, "--shard-tokens", help="Target tokens per shard file."),
    val_fraction: float = typer.Option(0.0005, "--val-fraction", help="Fraction of documents in the val split, chosen by a hash of the document id (at least one when there are >= 2 documents)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the document shuffle and of fractional mix repeats."),
    mix: str = typer.Option("", "--mix", help="Train-split weights: NAME=WEIGHT for a source, bucket:N=WEIGHT for a quality bucket, comma separated (e.g. web=1,wiki=2,bucket:0=0.5). 2 repeats each document twice, 0.5 keeps about half."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the document text."),
    threads: int = typer.Option(0, "--threads", help="Encoder threads (0: all CPUs available)."),
    config_hash: str = typer.Option("", "--config-hash", help="Pipeline config hash to record in the manifest."),
) -> None:
    """Tokenize documents into token shards (format v1, every document ends with EOT) + manifest.json."""
    m = tokenize_dataset(
        input, out, tokenizer=tokenizer, shard_tokens=shard_tokens, val_fraction=val_fraction,
        seed=seed, mix=parse_mix(mix), config_hash=config_hash, text_column=text_column,
        num_threads=threads or None,
    )
    tr, va = m["splits"]["train"], m["splits"]["val"]
    typer.echo(
        f"wrote {len(m['files'])} shard file(s) to {out}: train {tr['num_documents']:,} docs / "
        f"{tr['num_tokens']:,} tokens, val {va['num_documents']:,} docs / {va['num_tokens']:,} tokens; "
        f"tokenizer {m['tokenizer']['name']} ({m['dtype']}); {m['_timing_s']['total']:.1f} s"
    )
