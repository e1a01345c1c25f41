"""Read and validate token shards (format v1, :mod:`webmill.tokenize.format`):
:func:`read_manifest`, :func:`check_shards`, :func:`load_shard`.

Every read goes through :class:`webmill.storage.Storage`, so a shard directory may be a local
path or any fsspec URL (``memory://``, ``s3://``, ...).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webmill.storage import Storage, as_storage
from webmill.tokenize.format import (
    HEADER_KEYS,
    KV_KEY,
    MANIFEST_NAME,
    SPLITS,
    TOKENIZER_KEYS,
    ShardError,
    add_source_counts,
    check_documents,
    is_shard_name,
    schema,
    schema_matches,
    validate_manifest,
)
from webmill.tokenize.paths import file_storage


def read_manifest(shard_dir: str | os.PathLike | Storage) -> dict:
    """Read and structurally check ``shard_dir/manifest.json``.

    Args:
        shard_dir: a directory written by ``curate tokenize`` / :class:`ShardWriter` (local
            path, fsspec URL or :class:`Storage`).

    Returns:
        The manifest dict (layout in ``docs/shard-format.md``).

    Raises:
        ShardError: the directory or manifest is missing, not JSON, of another format or
            version, or lacks required keys; the message names the path.
    """
    st = as_storage(shard_dir)
    where = st.uri(MANIFEST_NAME)
    if not st.isdir():
        raise ShardError(f"{st.uri()}: shard directory not found; run `curate tokenize` to create it")
    if not st.isfile(MANIFEST_NAME):
        raise ShardError(
            f"{where}: missing; the shard directory is incomplete (interrupted run?) — re-run `curate tokenize`"
        )
    try:
        m = json.loads(st.read_bytes(MANIFEST_NAME).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(f"{where}: not valid JSON ({e}); re-run `curate tokenize`") from e
    return validate_manifest(m, where)


def _open_parquet(st: Storage, name: str) -> pq.ParquetFile:
    src = st.local_path(name) or st.open(name)
    try:
        return pq.ParquetFile(src, page_checksum_verification=True)
    except (OSError, pa.ArrowException, ValueError) as e:
        raise ShardError(
            f"{st.uri(name)}: not a readable Parquet file ({e}); the file is truncated or corrupt — "
            "re-run `curate tokenize`"
        ) from e


def _sha256(st: Storage, name: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with st.open(name) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_tokenizer_matches(m: dict, tokenizer: dict, where: str) -> None:
    tok = m["tokenizer"]
    keys = TOKENIZER_KEYS + tuple(k for k in ("pattern_sha256",) if k in tokenizer and k in tok)
    for k in keys:
        if tokenizer.get(k) != tok.get(k):
            raise ShardError(
                f"{where}: tokenizer {k} is {tok.get(k)!r} but the expected tokenizer has "
                f"{tokenizer.get(k)!r}; re-tokenize with the same tokenizer or change the config"
            )


def _check_file_header(pf: pq.ParquetFile, path: str, e: dict, m: dict, where: str) -> None:
    """Schema, key-value header, split/counts and row count of one file against its entry."""
    want_schema = schema(m["dtype"])
    if not schema_matches(pf.schema_arrow, want_schema):
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
        if fmeta.get(k) != m[k]:
            raise ShardError(
                f"{path}: metadata {k} = {fmeta.get(k)!r} differs from {where} ({m[k]!r}); "
                "the file belongs to another run — re-run `curate tokenize`"
            )
    for k in ("split", "num_tokens", "num_documents"):
        if fmeta.get(k) != e[k]:
            raise ShardError(f"{path}: metadata {k} = {fmeta.get(k)!r} but {where} records {e[k]!r}")
    if pf.metadata.num_rows != e["num_documents"]:
        raise ShardError(f"{path}: {pf.metadata.num_rows} rows but {where} records {e['num_documents']} documents")


def _check_file_tokens(pf: pq.ParquetFile, path: str, m: dict, counts: dict[str, dict[str, int]]) -> int:
    """Check every row group's documents; add per-source counts into ``counts``; return tokens."""
    eot, vocab = m["tokenizer"]["eot_id"], m["tokenizer"]["vocab_size"]
    ntok = 0
    try:
        for i in range(pf.num_row_groups):
            t = pf.read_row_group(i, columns=["id", "tokens", "num_tokens", "source"])
            col = t.column("tokens").combine_chunks()
            offs = col.offsets.to_numpy()
            flat = col.values.to_numpy()[offs[0] : offs[-1]]
            offs = offs - offs[0]
            lens = np.diff(offs)
            nt = t.column("num_tokens").to_numpy()
            ids = t.column("id")
            where = f"{path}: row group {i}, "
            if not np.array_equal(lens, nt):
                bad = int(np.flatnonzero(lens != nt)[0])
                raise ShardError(
                    f"{where}document {ids[bad].as_py()!r}: num_tokens {int(nt[bad])} but "
                    f"{int(lens[bad])} tokens stored"
                )
            check_documents(flat, offs, eot, vocab, lambda j: ids[j].as_py(), where)
            add_source_counts(counts, t.column("source").to_pylist(), lens)
            ntok += int(flat.size)
    except (OSError, pa.ArrowException) as ex:
        raise ShardError(f"{path}: cannot read data ({ex}); the file is corrupt — re-run `curate tokenize`") from ex
    return ntok


def check_shards(
    shard_dir: str | os.PathLike | Storage,
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
        token of every document is ``eot_id``, all ids < vocab_size
        (:func:`~webmill.tokenize.format.check_documents`), sums per file, split and source
        match the manifest.

    Args:
        shard_dir: directory with ``manifest.json`` and ``shard-*.parquet`` (local path,
            fsspec URL or :class:`Storage`).
        tokenizer: expected tokenizer info (from ``tokenizer_info(enc)``), or None to skip.
        verify_tokens: read all token data (O(total bytes), row group by row group, bounded
            memory); False checks only the manifest and Parquet footers (fast).

    Returns:
        The manifest dict.

    Raises:
        ShardError: on the first problem found.
    """
    st = as_storage(shard_dir)
    m = read_manifest(st)
    where = st.uri(MANIFEST_NAME)
    if tokenizer is not None:
        _check_tokenizer_matches(m, tokenizer, where)
    listed = {e["path"] for e in m["files"]}
    if len(listed) != len(m["files"]):
        raise ShardError(f"{where}: lists a file twice")
    extra = [n for n in st.list() if is_shard_name(n) and n not in listed]
    if extra:
        raise ShardError(
            f"{st.uri(extra[0])}: not listed in {where} (stale file from another run?); delete it or "
            "re-run `curate tokenize`"
        )

    split_sums = {s: [0, 0] for s in SPLITS}
    source_sums: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
    for e in m["files"]:
        name, path = e["path"], st.uri(e["path"])
        if not st.isfile(name):
            raise ShardError(f"{path}: listed in {where} but missing; re-run `curate tokenize`")
        size = st.size(name)
        if "num_bytes" in e and size != e["num_bytes"]:
            raise ShardError(
                f"{path}: {size} bytes but the manifest records {e['num_bytes']} "
                "(truncated or replaced); re-run `curate tokenize`"
            )
        if verify_tokens and "sha256" in e and _sha256(st, name) != e["sha256"]:
            raise ShardError(f"{path}: sha256 differs from the manifest (corrupt file); re-run `curate tokenize`")
        pf = _open_parquet(st, name)
        _check_file_header(pf, path, e, m, where)
        if verify_tokens:
            ntok = _check_file_tokens(pf, path, m, source_sums[e["split"]])
            if ntok != e["num_tokens"]:
                raise ShardError(f"{path}: holds {ntok} tokens but {where} records {e['num_tokens']}")
        split_sums[e["split"]][0] += e["num_tokens"]
        split_sums[e["split"]][1] += e["num_documents"]

    for s in SPLITS:
        rec = m["splits"].get(s, {"num_tokens": 0, "num_documents": 0})
        if [rec.get("num_tokens"), rec.get("num_documents")] != split_sums[s]:
            raise ShardError(
                f"{where}: split {s} records {rec.get('num_tokens')} tokens / {rec.get('num_documents')} "
                f"documents but its files sum to {split_sums[s][0]} / {split_sums[s][1]}"
            )
        if verify_tokens and "sources" in rec and rec["sources"] != source_sums[s]:
            raise ShardError(
                f"{where}: split {s} per-source counts {rec['sources']} do not match the files ({source_sums[s]})"
            )
    return m


def load_shard(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one shard file's tokens as a flat array plus document offsets (no validation).

    Args:
        path: a ``shard-NNNNN.parquet`` file (local path or fsspec URL).

    Returns:
        ``(tokens, offsets)``: ``tokens`` 1-D uint16/uint32 array of all documents
        concatenated (each ending with EOT); ``offsets`` 1-D int64 array of shape
        ``(num_documents + 1,)`` with document i at ``tokens[offsets[i]:offsets[i+1]]``.

    Raises:
        ShardError: the file is missing or not readable Parquet.
    """
    st, name = file_storage(path)
    if not st.isfile(name):
        raise ShardError(f"{st.uri(name)}: shard file not found")
    pf = _open_parquet(st, name)
    try:
        col = pf.read(columns=["tokens"]).column("tokens").combine_chunks()
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"{st.uri(name)}: cannot read tokens ({e}); re-run `curate tokenize`") from e
    offs = col.offsets.to_numpy().astype(np.int64)
    flat = col.values.to_numpy()[offs[0] : offs[-1]]
    return flat, offs - offs[0]
