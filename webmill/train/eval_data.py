"""The eval set of ``train eval``: one flat sequence of token ids from token shards or raw text.

Shards: the documents of one split in manifest order (files sorted by name, row groups and rows
in order, as :func:`~webmill.train.data.load_val_batches` reads them), read through
:class:`~webmill.storage.Storage` (local or URL) after ``check_shards`` (footers only); their
tokenizer must be the checkpoint's. Text: ``.txt`` (the whole file is one document), ``.jsonl``
(one document per line, key ``text``), ``.parquet`` (one per row, column ``text``), or a
directory of such files (sorted by name), local or URL; empty documents are skipped; each
document is tokenized with ``encode_ordinary`` and followed by the EOT token, as in the shards.
The first ``max_tokens + 1`` tokens are kept (every one but the first is predicted once), so the
set depends only on the data, the tokenizer and ``max_tokens``. :func:`token_bytes` gives the
UTF-8 byte length of every token id, the denominator of bits per byte
(:mod:`webmill.train.evaluate`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from webmill.errors import UserError
from webmill.storage import Storage, as_storage, is_url

TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")
DEFAULT_MAX_TOKENS = 262_144  # 2^18 predicted tokens per evaluation


@dataclass
class EvalSet:
    """The tokens every checkpoint is evaluated on.

    ``tokens``: int64 array (n + 1,), targets are ``tokens[1:]``; ``documents``: documents with at
    least one token in it; ``data``: where it came from (URI, or URIs joined by ``,``);
    ``split``: the shard split or None for text; ``sha``: 12 hex of sha256(ids as uint32 LE).
    """

    tokens: np.ndarray
    documents: int
    data: str
    split: str | None
    sha: str

    @property
    def num_predicted(self) -> int:
        return max(len(self.tokens) - 1, 0)


def _make_set(flat: np.ndarray, eot_id: int, max_tokens: int | None, data: str, split: str | None) -> EvalSet:
    n = len(flat) if max_tokens is None else min(len(flat), max_tokens + 1)
    toks = np.ascontiguousarray(flat[:n], dtype=np.int64)
    if n < 2:
        raise UserError(f"{data}: fewer than 2 tokens to evaluate (got {n}); give more text or a larger --max-tokens")
    docs = int((toks == eot_id).sum()) + int(toks[-1] != eot_id)  # every document ends with EOT
    sha = hashlib.sha256(toks.astype("<u4").tobytes()).hexdigest()[:12]
    return EvalSet(toks, docs, data, split, sha)


def token_bytes(enc, vocab_size: int) -> np.ndarray:
    """UTF-8 byte length of every token id: int64 array (vocab_size,).

    Mergeable tokens: ``len(enc.decode_single_token_bytes(id))``; special tokens (EOT, BOS, ...)
    and ids the tokenizer does not define (gaps, the model's padding) count 0 bytes (as
    nanochat's ``token_bytes`` table).
    """
    table = np.zeros(vocab_size, dtype=np.int64)
    specials = set(getattr(enc, "_special_tokens", {}).values())
    for i in range(min(vocab_size, enc.n_vocab)):
        if i in specials:
            continue
        try:
            table[i] = len(enc.decode_single_token_bytes(i))
        except KeyError:  # a gap in the id space
            pass
    return table


# ---- the eval set --------------------------------------------------------------------------------


def _same_tokenizer(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("ranks_sha256", "vocab_size", "eot_id"))


def shard_eval_set(shards: str | os.PathLike | Storage, tok_info: dict, *, split: str = "val",
                   max_tokens: int | None = DEFAULT_MAX_TOKENS, where_ckpt: str = "the checkpoint") -> EvalSet:
    """The first ``max_tokens + 1`` tokens of ``split`` of a shard directory (manifest order).

    Args:
        shards: shard directory (``manifest.json`` + ``shard-*.parquet``), local, URL or Storage.
        tok_info: the checkpoint's tokenizer identity (``state["tokenizer"]``).
        split: ``"val"`` or ``"train"``.
        max_tokens: predicted tokens (int > 0), or None for the whole split.

    Raises:
        UserError: invalid shards, an empty split, or a tokenizer other than the checkpoint's
            (names both).
    """
    from webmill.tokenize.reader import check_shards
    from webmill.train.data import list_units, read_unit_tokens

    st = as_storage(shards)
    manifest = check_shards(st, verify_tokens=False)
    m_tok = manifest["tokenizer"]
    if not _same_tokenizer(m_tok, tok_info):
        raise UserError(f"{st.uri('manifest.json')}: tokenizer {m_tok.get('name')!r} (vocab {m_tok.get('vocab_size')}, "
                        f"ranks {str(m_tok.get('ranks_sha256'))[:12]}) differs from {where_ckpt}'s "
                        f"{tok_info.get('name')!r} (vocab {tok_info.get('vocab_size')}, ranks "
                        f"{str(tok_info.get('ranks_sha256'))[:12]}); evaluate shards made with the checkpoint's "
                        "tokenizer, or raw text with --text (bits per byte compares across tokenizers)")
    if split not in ("val", "train"):
        raise UserError(f"--split must be val or train, got {split!r}")
    units = list_units(st, manifest, split)
    if not units:
        raise UserError(f"{st.uri('manifest.json')}: no {split!r} documents; use --split train or other shards")
    parts, have = [], 0
    for u in units:
        if max_tokens is not None and have >= max_tokens + 1:
            break
        parts.append(read_unit_tokens(u))
        have += u.num_tokens
    return _make_set(np.concatenate(parts), int(m_tok["eot_id"]), max_tokens, st.uri(), split)


def text_files(paths: Sequence[str | os.PathLike]) -> list[tuple[Storage, str]]:
    """``(storage, name)`` of every text file named; a directory gives its files with a text
    suffix (sorted). Raises UserError for a missing path or an unknown suffix."""
    out = []
    for p in paths:
        s = os.fspath(p)
        st = as_storage(s)
        if st.isdir():
            names = [n for n in st.list() if n.endswith(TEXT_SUFFIXES)]
            if not names:
                raise UserError(f"{st.uri()}: no {'/'.join(TEXT_SUFFIXES)} files in this directory")
            out += [(st, n) for n in names]
            continue
        parent, name = s.rstrip("/").rsplit("/", 1) if is_url(s) else os.path.split(s)
        pst = as_storage(parent or ".")
        if not pst.isfile(name):
            raise UserError(f"{pst.uri(name)}: not found; --text takes .txt, .jsonl or .parquet files or directories")
        if not name.endswith(TEXT_SUFFIXES):
            raise UserError(f"{pst.uri(name)}: unknown text file type; use .txt (one document), .jsonl "
                            "(one {\"text\": ...} per line) or .parquet (a 'text' column)")
        out.append((pst, name))
    return out


def json_lines(raw: str, where: str) -> Iterator[tuple[int, object]]:
    """``(line number, value)`` of each non-blank line of a JSON-lines text (numbers from 1).

    Raises:
        UserError: a line that is not valid JSON (names ``where:LINE``; one value per line).
    """
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}:{i}: not valid JSON ({e.msg} at column {e.colno}); one value per line") from e


def read_documents(st: Storage, name: str) -> list[str]:
    """Documents of one text file (see the module docstring); empty ones are dropped.

    Raises:
        UserError: undecodable UTF-8, a JSONL line that is not an object with a string ``text``
            (names ``FILE:LINE``), or a Parquet file without a ``text`` column.
    """
    where = st.uri(name)
    if name.endswith(".parquet"):
        try:
            col = st.read_parquet(name, columns=["text"]).column("text").to_pylist()
        except (KeyError, ValueError) as e:
            raise UserError(f"{where}: needs a string column 'text' ({e})") from e
        return [t for t in col if t]
    try:
        raw = st.read_bytes(name).decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: not UTF-8 text ({e})") from e
    if name.endswith(".txt"):
        return [raw] if raw else []
    docs = []
    for i, obj in json_lines(raw, where):
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise UserError(f"{where}:{i}: each line must be an object with a string \"text\"")
        if obj["text"]:
            docs.append(obj["text"])
    return docs


def text_eval_set(paths: Sequence[str | os.PathLike], enc, eot_id: int, *,
                  max_tokens: int | None = DEFAULT_MAX_TOKENS) -> EvalSet:
    """Tokenize the documents of ``paths`` (in the order given) with ``enc`` (a tiktoken
    Encoding), each followed by ``eot_id``; keep the first ``max_tokens + 1`` tokens.

    Raises:
        UserError: as :func:`text_files` / :func:`read_documents`, or no text at all.
    """
    files = text_files(paths)
    flat, have = [], 0
    for st, name in files:
        if max_tokens is not None and have >= max_tokens + 1:
            break
        docs = read_documents(st, name)
        for i in range(0, len(docs), 256):  # tokenize in chunks: stop early when enough
            if max_tokens is not None and have >= max_tokens + 1:
                break
            for ids in enc.encode_ordinary_batch(docs[i:i + 256], num_threads=2):
                flat.append(np.asarray(ids + [eot_id], dtype=np.int64))
                have += len(ids) + 1
    data = ",".join(st.uri(n) for st, n in files)
    if not flat:
        raise UserError(f"{data}: no non-empty documents")
    return _make_set(np.concatenate(flat), eot_id, max_tokens, data, None)
