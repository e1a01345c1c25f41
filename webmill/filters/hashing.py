"""The hashing engine of the heuristic rules: whitespace tokens and word n-grams as 64-bit hashes.

Documents of at least :data:`webmill.filters.textstats.NUMPY_MIN_CHARS` characters in a
space-separated language are measured *vectorized*: the text is viewed as a UTF-32 code-point
array, whitespace tokens are found, classified (alphabetic / alphanumeric) and hashed with NumPy
(:func:`token_arrays`), without building the word list. Word n-grams are then hashed from the
word hashes (:func:`ngram_hashes`) and equal hashes grouped with one sort (:func:`equal_runs`).
Only equality of hashes within one document is ever used; the hashes are not stable across
versions and are never written out.

Pure NumPy: no Ray, no I/O.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Per-code-point flags for the BMP; index 0x10000 stands for every astral code point, which is
# classified one by one. Whitespace as str.split() sees it (str.isspace), alphabetic as
# str.isalpha() (datatrove's test for Gopher's "alphabetic character"), alnum as str.isalnum().
_WS, _ALPHA, _ALNUM = 1, 2, 4


def _char_flags(c: str) -> int:
    return (_WS if c.isspace() else 0) | (_ALPHA if c.isalpha() else 0) | (
        _ALNUM if c.isalnum() else 0
    )


_FLAGS = np.array([_char_flags(chr(cp)) for cp in range(0x10000)] + [0], dtype=np.uint8)

_U64 = np.uint64
_BASE = 0x100000001B3  # FNV-64 prime (odd, so invertible modulo 2**64)
_POW_CACHE_MAX = 1 << 20
# (BASE**k, BASE**-k) for k < len: computed once per process, grown on demand up to
# _POW_CACHE_MAX entries (16 MB); longer texts compute their powers without storing them.
_pow_cache: list[np.ndarray] = [np.ones(1, _U64), np.ones(1, _U64)]


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(BASE**k, BASE**-k) mod 2**64`` for ``k < n`` (``uint64`` arrays of shape ``(n,)``)."""
    pw, ipw = _pow_cache
    if len(pw) >= n:
        return pw[:n], ipw[:n]
    size = max(n, min(2 * len(pw), _POW_CACHE_MAX))
    with np.errstate(over="ignore"):
        pw = np.cumprod(np.full(size, _BASE, dtype=_U64))
        ipw = np.cumprod(np.full(size, pow(_BASE, -1, 2**64), dtype=_U64))
    pw = np.concatenate((np.ones(1, _U64), pw[:-1]))
    ipw = np.concatenate((np.ones(1, _U64), ipw[:-1]))
    if size <= _POW_CACHE_MAX:
        _pow_cache[:] = [pw, ipw]
    return pw[:n], ipw[:n]


def _mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer (Steele et al. 2014), in place on a ``uint64`` array."""
    h ^= h >> _U64(30)
    h *= _U64(0xBF58476D1CE4E5B9)
    h ^= h >> _U64(27)
    h *= _U64(0x94D049BB133111EB)
    h ^= h >> _U64(31)
    return h


def token_arrays(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Describe the whitespace tokens of ``text`` (those of ``text.split()``, same order).

    Vectorized over the code points (UTF-32); no per-token Python work.

    Returns:
        ``(lengths, has_alpha, has_alnum, hashes)``, each of shape ``(n_tokens,)``: characters
        per token (``int64``); whether it holds a ``str.isalpha`` character (``bool``);
        whether it holds a ``str.isalnum`` character (``bool``; tokens without one are symbol
        tokens); a 64-bit hash of its characters (``uint64``: polynomial hash modulo 2**64,
        normalized to the token start, then SplitMix64-mixed; equal tokens give equal hashes,
        unequal ones collide with probability about 2**-64).
    """
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    flags = _FLAGS[np.minimum(cps, 0x10000)]
    astral = np.flatnonzero(cps >= 0x10000)
    if len(astral):
        flags[astral] = [_char_flags(chr(cps[i])) for i in astral]
    nonws = (flags & _WS) == 0
    n = len(nonws)
    edge = np.zeros(n + 1, dtype=bool)  # token boundaries: where nonws changes value
    if n:
        edge[0], edge[n] = nonws[0], nonws[-1]
        np.not_equal(nonws[1:], nonws[:-1], out=edge[1:n])
    bounds = np.flatnonzero(edge)  # alternating token starts and ends
    if len(bounds) == 0:
        empty = np.zeros(0, dtype=bool)
        return np.zeros(0, np.int64), empty, empty, np.zeros(0, _U64)
    idx, ends = bounds[0::2], bounds[1::2]
    lengths = ends - idx
    # OR of the flags over each segment [start, next start): the trailing whitespace adds
    # only the whitespace bit
    seg_flags = np.bitwise_or.reduceat(flags, idx)
    has_alpha = (seg_flags & _ALPHA) != 0
    has_alnum = (seg_flags & _ALNUM) != 0
    pw, ipw = _powers(len(cps))
    prefix = np.zeros(len(cps) + 1, dtype=_U64)
    with np.errstate(over="ignore"):
        np.cumsum((cps.astype(_U64) + _U64(1)) * pw, out=prefix[1:])
        hashes = (prefix[idx + lengths] - prefix[idx]) * ipw[idx]
    return lengths, has_alpha, has_alnum, _mix(hashes)


def count_tokens(text: str) -> int:
    """``len(text.split())`` without building the list (vectorized; ``int``)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    nonws = (_FLAGS[np.minimum(cps, 0x10000)] & _WS) == 0  # astral code points: not spaces
    return int(nonws[0]) + int(np.count_nonzero(nonws[1:] & ~nonws[:-1])) if len(cps) else 0


@lru_cache(maxsize=64)
def word_set_hashes(words: frozenset[str]) -> np.ndarray:
    """:func:`token_arrays` hashes of a set of single words (``uint64``, shape ``(len,)``)."""
    return np.array(sorted(int(token_arrays(w)[3][0]) for w in words if w.split() == [w]),
                    dtype=_U64)


# --- word n-grams ----------------------------------------------------------------------------

_NGRAM_MULT = _U64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio)


def ngram_hashes(word_hashes: np.ndarray, n: int) -> np.ndarray:
    """Hash every word n-gram: ``np.ndarray[uint64]`` of shape ``(max(len - n + 1, 0),)``.

    Polynomial combination of the word hashes modulo 2**64; equal n-grams give equal hashes.
    """
    m = len(word_hashes) - n + 1
    if m <= 0:
        return np.empty(0, dtype=_U64)
    h = word_hashes[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            h *= _NGRAM_MULT
            h += word_hashes[k : k + m]
    return h


def equal_runs(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group equal hashes: ``(order, run_id, run_len, run_start)``.

    ``order`` sorts ``h`` (``np.argsort``, not stable); ``run_id[k]`` is the group of
    ``h[order[k]]``; group ``g`` has ``run_len[g]`` members from sorted index ``run_start[g]``.
    """
    order = np.argsort(h)
    hs = h[order]
    new = np.empty(len(hs), dtype=bool)
    new[0] = True
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    run_start = np.flatnonzero(new)
    run_id = np.cumsum(new) - 1
    run_len = np.diff(run_start, append=len(hs))
    return order, run_id, run_len, run_start
