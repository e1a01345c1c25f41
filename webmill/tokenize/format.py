"""Token shard format v1: constants, the Arrow schema, manifest validation and the one document
check that the writer and the reader share (layout in ``docs/shard-format.md``).

A shard directory holds ``shard-00000.parquet``, ``shard-00001.parquet``, ... (one row per
document: ``id``, ``tokens``, ``num_tokens``, ``source``, ``quality_bucket``) and
``manifest.json``. Every document ends with the tokenizer's EOT token (``boundary = "eot"``).
Each file holds one split. The manifest header (:data:`HEADER_KEYS`) is repeated in each file's
Parquet key-value metadata under the key :data:`KV_KEY`, with that file's ``split``,
``num_tokens`` and ``num_documents``.

The integrity checks follow llm.c's shard header check (magic, version, token count of every
shard; ``dev/data/data_common.py`` / ``train_gpt2.c``) and go further: per-file sha256 and size,
Parquet page checksums, and the EOT placement of every document (:func:`check_documents`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

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
FILE_ENTRY_KEYS = ("path", "split", "num_tokens", "num_documents")
SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".parquet"


class ShardError(UserError):
    """A token shard directory or file is missing, corrupt or does not match its manifest.

    The message names the file and says what to do (usually: re-run ``curate tokenize``).
    """


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard-00007.parquet``; both splits share one counter)."""
    return f"{SHARD_PREFIX}{index:05d}{SHARD_SUFFIX}"


def is_shard_name(name: str) -> bool:
    """True for a base name of the form ``shard-*.parquet``."""
    return name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)


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


def arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type of token dtype ``"uint16"``/``"uint32"`` (ValueError for anything else)."""
    if dtype == "uint16":
        return pa.uint16()
    if dtype == "uint32":
        return pa.uint32()
    raise ValueError(f"token dtype must be 'uint16' or 'uint32', got {dtype!r}")


def schema(dtype: str) -> pa.Schema:
    """Return the Arrow schema of a v1 token shard for token dtype ``"uint16"``/``"uint32"``."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("tokens", pa.list_(arrow_type(dtype)), nullable=False),
            pa.field("num_tokens", pa.int32(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("quality_bucket", pa.int32(), nullable=True),
        ]
    )


def schema_matches(got: pa.Schema, want: pa.Schema) -> bool:
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


def check_tokenizer_dict(tokenizer: dict, where: str) -> None:
    """Check a tokenizer identity dict (``tokenizer_info(enc)``) as shards record it.

    Raises:
        ShardError: not a dict, keys of :data:`TOKENIZER_KEYS` missing, boundary not ``"eot"``,
            a non-positive ``vocab_size`` or an ``eot_id`` outside the vocabulary; the message
            starts with ``where``.
    """
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


def validate_manifest(m: object, where: str) -> dict:
    """Structurally check a parsed ``manifest.json`` and return it.

    Args:
        m: the parsed JSON.
        where: the manifest's name for messages (path or URL).

    Raises:
        ShardError: not an object, another format or version, required keys missing, a dtype
            that does not fit ``vocab_size``, no files, or a bad file entry.
    """
    if not isinstance(m, dict):
        raise ShardError(f"{where}: expected a JSON object")
    if m.get("format") != FORMAT:
        raise ShardError(f"{where}: format is {m.get('format')!r}, expected {FORMAT!r}")
    if m.get("version") != VERSION:
        raise ShardError(
            f"{where}: shard format version {m.get('version')!r} is not supported (this webmill reads "
            f"version {VERSION}); re-run `curate tokenize` with this webmill"
        )
    missing = [k for k in (*HEADER_KEYS, "files", "splits") if k not in m]
    if missing:
        raise ShardError(f"{where}: lacks keys {missing}")
    check_tokenizer_dict(m["tokenizer"], where)
    want = token_dtype(m["tokenizer"]["vocab_size"])
    if m["dtype"] != want:
        raise ShardError(
            f"{where}: dtype {m['dtype']!r} does not fit vocab_size {m['tokenizer']['vocab_size']} "
            f"(expected {want!r})"
        )
    if not isinstance(m["files"], list) or not m["files"]:
        raise ShardError(f"{where}: lists no files; the tokenize step wrote no documents")
    for e in m["files"]:
        if not isinstance(e, dict) or not set(FILE_ENTRY_KEYS) <= set(e):
            raise ShardError(f"{where}: bad file entry {e!r}")
        if e["split"] not in SPLITS:
            raise ShardError(f"{where}: file {e['path']} has unknown split {e['split']!r}")
        if not isinstance(e["path"], str) or "/" in e["path"] or "\\" in e["path"] or e["path"] in ("", ".", ".."):
            raise ShardError(f"{where}: file path {e['path']!r} must be a plain file name in the directory")
    return m


def check_documents(
    flat: np.ndarray,
    offsets: np.ndarray,
    eot_id: int,
    vocab_size: int,
    doc_id: Callable[[int], str],
    where: str = "",
) -> None:
    """The one document check of format v1, used by the writer and by :func:`check_shards`.

    Args:
        flat: 1-D integer array, all documents' tokens concatenated; shape ``(offsets[-1],)``.
        offsets: 1-D int array, shape ``(n + 1,)``, ``offsets[0] == 0``; document i is
            ``flat[offsets[i]:offsets[i + 1]]``.
        eot_id: the EOT token id every document must end with (``boundary = "eot"``).
        vocab_size: token ids must lie in ``[0, vocab_size)``.
        doc_id: maps a document index to its id, for the message (called only on failure).
        where: message prefix naming the file / row group (``""`` in the writer).

    Raises:
        ShardError: an empty document, a document whose last token is not ``eot_id``, or a
            token id outside ``[0, vocab_size)``; names the first bad document.
    """
    lengths = np.diff(offsets)
    if (lengths <= 0).any():
        bad = int(np.flatnonzero(lengths <= 0)[0])
        raise ShardError(f"{where}document {doc_id(bad)!r} has no tokens; every document must end with EOT")
    if not flat.size:
        return
    last = flat[offsets[1:] - 1]
    if (last != eot_id).any():
        bad = int(np.flatnonzero(last != eot_id)[0])
        raise ShardError(
            f"{where}document {doc_id(bad)!r} ends with token {int(last[bad])}, not eot_id {eot_id}; "
            "every document must end with the EOT token"
        )
    lo, hi = int(flat.min()), int(flat.max())
    if lo < 0 or hi >= vocab_size:
        raise ShardError(f"{where}token ids must lie in [0, {vocab_size}), got [{lo}, {hi}]")


def add_source_counts(
    counts: dict[str, dict[str, int]], sources: Sequence[str] | np.ndarray, lengths: np.ndarray
) -> None:
    """Add per-source token and document counts of a batch into ``counts``, in place.

    Args:
        counts: ``{source: {"num_tokens": int, "num_documents": int}}`` (the manifest's layout;
            new sources are added with that key order).
        sources: n source names.
        lengths: n token counts (int array).
    """
    if len(sources) == 0:
        return
    # one np.unique + bincount per batch, no Python loop per document
    uniq, inv = np.unique(np.asarray(sources, dtype=object), return_inverse=True)
    tok_sum = np.bincount(inv, weights=lengths, minlength=len(uniq))
    doc_sum = np.bincount(inv, minlength=len(uniq))
    for u, t, d in zip(uniq, tok_sum, doc_sum):
        c = counts.setdefault(str(u), {"num_tokens": 0, "num_documents": 0})
        c["num_tokens"] += int(t)
        c["num_documents"] += int(d)
