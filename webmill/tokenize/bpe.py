"""Train a byte-level BPE tokenizer with rustbpe and save it in tiktoken's format.

Follows nanochat's ``nanochat/tokenizer.py`` (RustBPETokenizer): rustbpe learns the merges,
the learned ranks plus special tokens become a :class:`tiktoken.Encoding` for fast encoding.
The split (pre-tokenizer) pattern is stored in ``tokenizer.json`` next to the ranks, so training
and encoding can never use different patterns.

Saved directory layout (loaded back by :func:`webmill.tokenize.encoding.get_encoding`):
  * ``tokenizer.tiktoken``: one ``base64(token_bytes) rank`` line per mergeable token, sorted
    by rank (tiktoken's ``.tiktoken`` format, as read by ``tiktoken.load.load_tiktoken_bpe``);
  * ``tokenizer.json``: ``format``, ``version``, ``name``, ``pattern``, ``special_tokens``
    (``{str: id}``), ``vocab_size``, ``ranks_sha256`` and training statistics.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator

import tiktoken

from webmill.errors import UserError
from webmill.storage import Storage, as_storage, is_url
from webmill.tokenize.encoding import (
    CONFIG_FILE,
    RANKS_FILE,
    TOKENIZER_FORMAT,
    _ranks_bytes,
)
from webmill.tokenize.paths import file_storage

# GPT-4-style split pattern: contractions, letter runs, 1-3 digit groups, punctuation runs,
# whitespace. It is nanochat's ``SPLIT_PATTERN`` (nanochat/tokenizer.py) with GPT-4's ``\p{N}{1,3}``
# digit groups (tiktoken ``tiktoken_ext/openai_public.py``, cl100k_base ``pat_str``); nanochat
# uses ``\p{N}{1,2}`` to spend fewer tokens on numbers in small vocabularies.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

# Special tokens, ids assigned after the mergeable tokens in this order. <|endoftext|> is the
# document boundary of webmill's token shards (GPT-2 convention); <|bos|> as in nanochat;
# the <|im_*|> chat delimiters are reserved (cl100k/ChatML names) so later fine-tuning needs no
# vocabulary change.
SPECIAL_TOKENS = ("<|endoftext|>", "<|bos|>", "<|im_start|>", "<|im_end|>", "<|im_sep|>")


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: str | os.PathLike | Storage,
    *,
    name: str | None = None,
    pattern: str = GPT4_SPLIT_PATTERN,
) -> tiktoken.Encoding:
    """Train a byte-level BPE tokenizer on ``texts`` and save it to ``out_dir``.

    Args:
        texts: documents (str); streamed once into rustbpe (buffered in Rust, counted with
            all cores).
        vocab_size: total vocabulary size including the 5 special tokens
            (``SPECIAL_TOKENS``); int ≥ 256 + 5 + 1. The number of merges is
            ``vocab_size - 256 - 5`` (nanochat convention). If the text is too small to learn
            that many merges, the vocabulary is smaller; ``tokenizer.json`` records the
            requested and the actual size.
        out_dir: directory (local path, fsspec URL or :class:`Storage`) to create/overwrite
            ``tokenizer.tiktoken`` and ``tokenizer.json`` in (atomic publish through the
            storage layer; the config is written last).
        name: tokenizer name recorded in shards (default ``bpe-<vocab_size>``).
        pattern: split regex (default: GPT-4's), stored with the tokenizer.

    Returns:
        The trained tokenizer as a :class:`tiktoken.Encoding` (the same object
        ``get_encoding(out_dir)`` returns).

    Raises:
        UserError: ``vocab_size`` too small, or no text given.
    """
    n_special = len(SPECIAL_TOKENS)
    if not isinstance(vocab_size, int) or vocab_size < 256 + n_special + 1:
        raise UserError(
            f"vocab_size must be an int >= {256 + n_special + 1} (256 byte tokens + {n_special} "
            f"special tokens + at least one merge), got {vocab_size!r}"
        )
    import rustbpe  # lazy: only training needs it

    stats = {"documents": 0, "chars": 0}

    def counted(it: Iterable[str]) -> Iterator[str]:
        for t in it:
            if not isinstance(t, str):
                raise UserError(f"train_tokenizer: document {stats['documents']} is {type(t).__name__}, expected str")
            stats["documents"] += 1
            stats["chars"] += len(t)
            yield t

    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(counted(texts), vocab_size - n_special, pattern=pattern)
    if stats["documents"] == 0 or stats["chars"] == 0:
        raise UserError("train_tokenizer: no text to train on; check the input directory and text column")
    ranks = {bytes(k): int(v) for k, v in tok.get_mergeable_ranks()}
    n = len(ranks)
    if sorted(ranks.values()) != list(range(n)):
        raise RuntimeError("rustbpe returned non-contiguous ranks")  # internal invariant
    specials = {s: n + i for i, s in enumerate(SPECIAL_TOKENS)}
    name = name or f"bpe-{vocab_size}"
    enc = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)

    out = as_storage(out_dir)
    out.makedirs()
    out.write_bytes(RANKS_FILE, _ranks_bytes(ranks))
    cfg = {
        "format": TOKENIZER_FORMAT,
        "version": 1,
        "name": name,
        "pattern": pattern,
        "special_tokens": specials,
        "vocab_size": enc.n_vocab,
        "requested_vocab_size": vocab_size,
        "ranks_sha256": hashlib.sha256(_ranks_bytes(ranks)).hexdigest(),
        "trainer": "rustbpe",
        "train_documents": stats["documents"],
        "train_chars": stats["chars"],
    }
    out.write_text(CONFIG_FILE, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return enc


def iter_texts(
    input_path: str | os.PathLike | Storage,
    *,
    text_column: str = "text",
    max_chars: int | None = None,
    doc_cap: int | None = 10_000,
) -> Iterator[str]:
    """Yield documents from a file or a directory of ``*.parquet`` / ``*.txt`` / ``*.jsonl``.

    Args:
        input_path: a directory (its matching files in sorted order, not recursive; hidden and
            temp files left out) or one file; a local path, fsspec URL or :class:`Storage`.
            Parquet: column ``text_column``; ``.jsonl``: key ``text_column`` of each line;
            ``.txt``: the whole file is one document (UTF-8, undecodable bytes replaced,
            universal newlines).
        text_column: column/key holding the text.
        max_chars: stop after this many characters in total (None: no limit).
        doc_cap: truncate each document to this many characters (nanochat's ``doc_cap``;
            keeps one huge page from dominating the counts); None: no cap.

    Yields:
        str documents (null/empty texts are skipped).

    Raises:
        UserError: path missing, no matching files, missing text column, malformed JSON line.
    """
    st, files = _text_files(input_path)
    total = 0

    def gen() -> Iterator[str]:
        for f in files:
            where = st.uri(f)
            if f.endswith(".parquet"):
                pf = st.parquet_file(f)
                if text_column not in pf.schema_arrow.names:
                    raise UserError(f"{where}: no column {text_column!r} (columns: {pf.schema_arrow.names}); pass --text-column")
                for batch in pf.iter_batches(columns=[text_column], batch_size=1024):
                    yield from (t for t in batch.column(0).to_pylist() if t)
            elif f.endswith(".jsonl"):
                with st.open(f, "r") as fh:
                    for i, line in enumerate(fh, 1):
                        if not line.strip():
                            continue
                        try:
                            t = json.loads(line).get(text_column)
                        except (json.JSONDecodeError, AttributeError) as e:
                            raise UserError(f"{where}:{i}: not a JSON object line ({e})") from e
                        if t:
                            yield t
            else:  # as Path.read_text(errors="replace"): universal newlines
                yield io.TextIOWrapper(io.BytesIO(st.read_bytes(f)), encoding="utf-8", errors="replace").read()

    for t in gen():
        if doc_cap:
            t = t[:doc_cap]
        if max_chars is not None:
            if total >= max_chars:
                return
            t = t[: max_chars - total]
        total += len(t)
        yield t


_TEXT_SUFFIXES = (".parquet", ".txt", ".jsonl")


def _text_files(input_path: str | os.PathLike | Storage) -> tuple[Storage, list[str]]:
    """(storage, sorted file names) of the text files :func:`iter_texts` reads."""
    if isinstance(input_path, Storage) or is_url(input_path) or os.path.isdir(input_path):
        st = as_storage(input_path)
        if st.isdir():
            files = [n for n in st.list() if n.endswith(_TEXT_SUFFIXES)]
            if not files:
                raise UserError(f"{st.uri()}: holds no .parquet, .txt or .jsonl files")
            return st, files
    st, name = file_storage(input_path) if not isinstance(input_path, Storage) else (input_path, "")
    if name and st.isfile(name):
        return st, [name]
    where = input_path.uri() if isinstance(input_path, Storage) else os.fspath(input_path)
    raise UserError(f"{where}: not found; give a directory of .parquet/.txt/.jsonl files")
