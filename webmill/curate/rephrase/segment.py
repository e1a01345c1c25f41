"""Segmentation of the rephrasing stage: documents → segments of at most N tokens.

Each segment is one generation request. Segments are measured in tiktoken ``cl100k_base``
tokens (:data:`SEGMENT_TOKENIZER`, a model-independent yardstick; the model's own tokens are
counted by the backend) and cut at paragraph boundaries, then sentence ends, then token
boundaries for a single overlong sentence.
"""

from __future__ import annotations

import re

SEGMENT_TOKENIZER = "cl100k_base"

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|(?<=[。！？；])")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def segment_encoder():
    """The tiktoken encoding segments are measured in (:data:`SEGMENT_TOKENIZER`)."""
    from webmill.tokenize.encoding import get_encoding

    return get_encoding(SEGMENT_TOKENIZER)


def n_tokens(enc, s: str) -> int:
    """Tokens of ``s`` in ``enc`` (int; special-token text is encoded as ordinary text)."""
    return len(enc.encode_ordinary(s))


def _hard_split(s: str, max_tokens: int, enc) -> list[str]:
    """Split ``s`` at token boundaries into pieces of at most ``max_tokens`` tokens."""
    toks = enc.encode_ordinary(s)
    window = max_tokens
    while True:
        _, offsets = enc.decode_with_offsets(toks)
        cuts = [offsets[i] for i in range(window, len(toks), window)]
        bounds = [0, *cuts, len(s)]
        pieces = [s[a:b] for a, b in zip(bounds, bounds[1:]) if s[a:b].strip()]
        if all(n_tokens(enc, p) <= max_tokens for p in pieces) or window <= 1:
            return pieces  # raw slices: "".join(pieces) == s up to blank pieces
        window = max(1, int(window * 0.9))


def _pack(pieces: list[tuple[str, int]], sep: str, max_tokens: int, enc) -> list[str]:
    sep_n = n_tokens(enc, sep)
    out, cur, cur_n = [], [], 0
    for p, n in pieces:
        add = n + (sep_n if cur else 0)
        if cur and cur_n + add > max_tokens:
            out.append(sep.join(cur))
            cur, cur_n = [p], n
        else:
            cur.append(p)
            cur_n += add
    if cur:
        out.append(sep.join(cur))
    return out


def _split_paragraph(p: str, max_tokens: int, enc) -> list[tuple[str, int]]:
    # sentence pieces keep their trailing whitespace, so joining them with "" restores the text
    # (no spaces are invented between CJK sentences)
    cuts = [m.end() for m in _SENTENCE_END.finditer(p) if 0 < m.end() < len(p)]
    bounds = [0, *cuts, len(p)]
    pieces: list[tuple[str, int]] = []
    for a, b in zip(bounds, bounds[1:]):
        s = p[a:b]
        if not s.strip():
            continue
        n = n_tokens(enc, s)
        if n <= max_tokens:
            pieces.append((s, n))
        else:
            pieces.extend((x, n_tokens(enc, x)) for x in _hard_split(s, max_tokens, enc))
    packed = [x.strip() for x in _pack(pieces, "", max_tokens, enc)]
    return [(x, n_tokens(enc, x)) for x in packed if x]


def split_segments(text: str, max_tokens: int, enc=None) -> list[str]:
    """Split ``text`` into segments of at most ``max_tokens`` tokens at paragraph boundaries.

    Paragraphs are separated by blank lines when the text has any, else by single newlines
    (trafilatura/WET text puts one paragraph per line). Consecutive paragraphs are packed
    greedily into a segment while the segment stays within the limit; a paragraph over the
    limit is split at sentence ends, and a sentence over the limit at token boundaries.
    Every returned segment, re-encoded, has at most ``max_tokens`` tokens.

    Args:
        text: document text (str).
        max_tokens: limit in tokens of ``enc`` (int ≥ 1).
        enc: a :class:`tiktoken.Encoding`; default ``cl100k_base``
            (``webmill.tokenize.encoding.get_encoding``).

    Returns:
        List of non-empty str segments in document order (``[]`` for blank text); joining them
        with the paragraph separator gives the text up to whitespace.

    Raises:
        ValueError: ``max_tokens < 1``.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    enc = enc or segment_encoder()
    text = text.strip()
    if not text:
        return []
    if _BLANK_LINE.search(text):
        sep, paras = "\n\n", _BLANK_LINE.split(text)
    else:
        sep, paras = "\n", text.split("\n")
    pieces: list[tuple[str, int]] = []
    for p in paras:
        p = p.strip()
        if not p:
            continue
        n = n_tokens(enc, p)
        pieces.extend([(p, n)] if n <= max_tokens else _split_paragraph(p, max_tokens, enc))
    out: list[str] = []
    for seg in _pack(pieces, sep, max_tokens, enc):
        out.extend([seg] if n_tokens(enc, seg) <= max_tokens else
                   [x.strip() for x in _hard_split(seg, max_tokens, enc) if x.strip()])
    return out
