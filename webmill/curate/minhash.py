"""Text normalization, word shingles, MinHash signatures and LSH band keys (numpy + pyarrow, no Ray).

Over 500 lines on purpose: one concern, "signatures equal to datasketch's", whose parts change
together (each shingle hash has a scalar reference, the datasketch ``hashfunc``, and a vectorized
twin). The character-shingle functions live in :mod:`webmill.curate.minhash_chars`.

The signatures are bit-for-bit those of ``datasketch.MinHash(num_perm, seed, hashfunc=H,
scheme=...)`` fed the same shingles (as UTF-8 bytes) with ``update``/``update_batch``; they are
computed vectorized over a batch of documents, one chunk of shingles at a time, so memory is
bounded by ``chunk_shingles x num_perm`` machine words and never by the size of the batch.

Choices and their sources
-------------------------
* Normalization (FineWeb's MinHash step, datatrove ``simplify_text``; Penedo et al. 2024,
  "The FineWeb Datasets", section 3.4): Unicode NFKD, lowercase, every Unicode punctuation or
  symbol character (general categories ``P*`` and ``S*``) replaced by a space, whitespace
  collapsed. Combining marks produced by NFKD are kept (so Indic vowel signs do not split words).
* Shingles: word 5-grams (FineWeb: ``n_grams=5``); a document with fewer words than
  ``shingle_size`` gives one shingle made of all its words; a document with no word gives none.
* Character shingles, for languages written without spaces (zh, ja, th, ...: a "word" of the
  normalization is a whole phrase between punctuation marks there): the normalized text with
  every separator *removed* (a shingle spans phrase boundaries; punctuation and spacing
  differences do not matter, as for words), cut into k-character n-grams. Source: Data-Juicer's
  MinHash deduplicator recommends ``tokenization="character"`` with ``window_size=5`` for
  Chinese-like languages; NeMo Curator shingles character n-grams (``char_ngrams``) for every
  language (docs/dedup.md, "Languages without spaces"). Fewer than k characters: one
  shingle of all of them; none: no shingle. The shingle's bytes are the UTF-8 of its k
  characters (no separator); :mod:`webmill.curate.minhash_chars`. Which documents use them is
  the caller's choice (:meth:`MinHasher.signatures_mixed`, per document).
* 112 permutations = 14 bands x 8 rows (FineWeb section 3.4: threshold ~0.75, P(candidate) at
  J=0.8 ~ 0.92). Banding: Leskovec, Rajaraman, Ullman, *Mining of Massive Datasets*, ch. 3.4.
* Permutations: datasketch 2.0.0 ``MinHash._init_permutations`` reproduced exactly:
  ``np.random.RandomState(seed)``; scheme ``"affine32"`` (datasketch's default since 2.0.0):
  ``a`` odd, ``h -> a * fmix32(h) + b mod 2^32``; scheme ``"legacy"`` (datasketch < 2.0):
  ``h -> ((a * h + b) mod (2^61 - 1)) & (2^32 - 1)`` with ``a, b`` drawn below the Mersenne
  prime ``2^61 - 1``, computed, as in datasketch, with uint64 wrap-around for ``a * h``.
* Shingle hash ``H`` (32-bit, chosen by measurement, see ``bench/minhash.py`` and docs/dedup.md):
    - ``"xxh3_words"`` (default): each word is hashed once with XXH3-64 (``xxhash``), the
      shingle hash is ``fmix64(sum_i wh_i * P^(k-1-i) mod 2^64) & 0xffffffff`` with
      ``P = 0x9E3779B97F4A7C15`` (a polynomial rolling hash over the word hashes, finished with
      the MurmurHash3 64-bit finalizer). It is an ordinary function of the shingle bytes
      (:func:`xxh3_words_hash32`), so datasketch can be given it as ``hashfunc``. Vectorized:
      Arrow splits a batch into words and ``dictionary_encode`` finds the distinct ones, each
      distinct word is hashed once, the rolling polynomial runs in numpy. Per-shingle Python
      hashing was the bottleneck (bench/minhash.py: 8-12x datasketch with the same H).
      For character shingles the units are characters instead of words
      (``minhash_chars.xxh3_chars_hash32``): ``fmix64(sum_i xxh3_64(utf8(char_i)) * P^(k-1-i)) & 0xffffffff``,
      i.e. exactly ``xxh3_words_hash32`` of the characters joined by spaces; vectorized from the
      codepoints (UTF-32 into numpy), each distinct codepoint hashed once.
    - ``"xxh3"``: ``xxh3_64_intdigest(shingle) & 0xffffffff`` (one Python call per shingle).
    - ``"sha1"``: datasketch's default ``sha1_hash32`` (first 4 bytes of SHA-1, little endian).
    ``"xxh3"`` and ``"sha1"`` hash character shingles' bytes the same way as word shingles'.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

SHINGLE_HASHES = ("xxh3_words", "xxh3", "sha1")
SCHEMES = ("affine32", "legacy")

_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH32 = np.uint64(_M32)
_ROLL_P = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, odd
_FMIX64 = (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33)  # MurmurHash3 finalizer
_FMIX32 = (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)


# ----------------------------------------------------------------------------------------------
# normalization


def _build_tables() -> tuple[bytes, frozenset[str]]:
    """Byte translation table for ASCII punctuation/symbols and the set of non-ASCII ones."""
    separators = set()
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if unicodedata.category(ch)[0] in "PS" or ch.isspace():
            separators.add(ch)
    table = bytes(32 if chr(i) in separators else i for i in range(128)) + bytes(range(128, 256))
    return table, frozenset(c for c in separators if not c.isascii())


_ASCII_TABLE, _NONASCII_SEPARATORS = _build_tables()
_ASCII_BYTES = bytes(range(128))


def normalized_bytes(text: str | None) -> bytes:
    """UTF-8 bytes of ``text`` after NFKD and ``lower()``, every separator replaced by ``b" "``.

    Separators: characters of Unicode general category ``P*`` (punctuation) or ``S*``
    (symbols) and whitespace (FineWeb MinHash normalization, datatrove ``simplify_text``).
    Runs of spaces are *not* collapsed here; :func:`normalize_words` and :func:`split_words`
    split on them. Lone surrogates (invalid in UTF-8) become separators too. ``None`` -> ``b""``.

    Raises:
        TypeError: ``text`` is neither ``str`` nor ``None``.
    """
    if text is None:
        return b""
    if not isinstance(text, str):
        raise TypeError(f"normalize_words expects str, got {type(text).__name__}")
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
    text = text.lower()
    data = text.encode("utf-8", "replace")
    non_ascii = data.translate(None, _ASCII_BYTES)  # the few non-ASCII characters, found at C speed
    if non_ascii:
        present = _NONASCII_SEPARATORS.intersection(non_ascii.decode("utf-8", "replace"))
        if present:
            for ch in present:
                text = text.replace(ch, " ")
            data = text.encode("utf-8", "replace")
    return data.translate(_ASCII_TABLE)


def normalize_words(text: str | None) -> list[bytes]:
    """Normalize ``text`` and split it into words (UTF-8 ``bytes``, no empty word).

    Steps (FineWeb MinHash normalization, datatrove ``simplify_text``): Unicode NFKD, ``lower()``,
    every character of general category ``P*`` (punctuation) or ``S*`` (symbols) and every
    whitespace character becomes a separator; runs of separators collapse. ``None`` counts as
    ``""``. Example: ``"Hello, World!  État"`` -> ``[b"hello", b"world", b"e\\xcc\\x81tat"]``.

    Raises:
        TypeError: ``text`` is neither ``str`` nor ``None``.
    """
    return normalized_bytes(text).split()


def split_words(normalized: Sequence[bytes]) -> tuple[pa.LargeBinaryArray, np.ndarray]:
    """Split many :func:`normalized_bytes` outputs into words at once (Arrow, no Python loop).

    Returns:
        ``(words, offsets)``: ``words`` a flat Arrow ``large_binary`` array of all non-empty
        words in document order; ``offsets`` int64 of shape ``(n_docs + 1,)``, document ``i``
        owning ``words[offsets[i]:offsets[i+1]]``. Equal to :func:`normalize_words` per document.
    """
    split = pc.split_pattern(pa.array(normalized, type=pa.large_binary()), pattern=" ")
    words = pc.list_flatten(split)
    parent = pc.list_parent_indices(split)
    nonempty = pc.greater(pc.binary_length(words), 0)
    words, parent = words.filter(nonempty), parent.filter(nonempty).to_numpy()
    offsets = np.zeros(len(normalized) + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent, minlength=len(normalized)), out=offsets[1:])
    return words, offsets


def word_hashes(words: pa.Array) -> np.ndarray:
    """XXH3-64 of every word (uint64, same order); each distinct word is hashed once
    (Arrow ``dictionary_encode``, then ``xxhash.xxh3_64_intdigest`` on the distinct ones)."""
    if len(words) == 0:
        return np.empty(0, dtype=np.uint64)
    enc = pc.dictionary_encode(words)
    distinct = enc.dictionary.to_pylist()
    dh = np.fromiter(map(xxhash.xxh3_64_intdigest, distinct), dtype=np.uint64, count=len(distinct))
    return dh[enc.indices.to_numpy()]


def text_hashes(words: pa.Array, offsets: np.ndarray) -> np.ndarray:
    """Exact-duplicate keys: :func:`text_hash64` of every document of a :func:`split_words` result
    (uint64, shape ``(n_docs,)``)."""
    docs = pa.LargeListArray.from_arrays(pa.array(offsets), words)
    joined = pc.binary_join(docs, pa.scalar(b" ", pa.large_binary()))
    return np.fromiter(map(xxhash.xxh3_64_intdigest, joined.to_pylist()), dtype=np.uint64, count=len(joined))


def normalize_text(text: str | None) -> str:
    """Return the normalized text: :func:`normalize_words` joined by single spaces (``str``)."""
    return b" ".join(normalize_words(text)).decode("utf-8", "surrogatepass")


def shingles(words: Sequence[bytes], shingle_size: int = 5) -> list[bytes]:
    """Word ``shingle_size``-grams of a normalized word list, as ``bytes`` joined by ``b" "``.

    A document with ``0 < len(words) < shingle_size`` gives one shingle of all its words
    (FineWeb/datatrove convention); an empty word list gives ``[]``. Duplicates are kept (a
    MinHash over a multiset equals the MinHash over its set).

    Raises:
        ValueError: ``shingle_size < 1``.
    """
    if shingle_size < 1:
        raise ValueError(f"shingle_size must be >= 1, got {shingle_size}")
    if not words:
        return []
    if len(words) < shingle_size:
        return [b" ".join(words)]
    return list(map(b" ".join, zip(*(words[i:] for i in range(shingle_size)))))


def text_hash64(words: Sequence[bytes]) -> int:
    """XXH3-64 of the normalized text (``b" ".join(words)``): the exact-duplicate key (int < 2^64).

    Two documents with different normalized texts collide with probability 2^-64 per pair
    (about N^2 / 2^65 false merges expected among N documents: 3e-4 for N = 1e8).
    """
    return xxhash.xxh3_64_intdigest(b" ".join(words))


# ----------------------------------------------------------------------------------------------
# shingle hash functions (reference scalar versions, usable as datasketch ``hashfunc``)


def _fmix64_int(h: int) -> int:
    s1, m1, s2, m2, s3 = _FMIX64
    h ^= h >> s1
    h = (h * m1) & _M64
    h ^= h >> s2
    h = (h * m2) & _M64
    return h ^ (h >> s3)


def xxh3_words_hash32(shingle: bytes) -> int:
    """The default 32-bit shingle hash ``"xxh3_words"`` (scalar reference; pass to datasketch).

    ``shingle`` is ``b" "``-joined normalized words; returns
    ``fmix64(sum_i xxh3_64(word_i) * P^(k-1-i) mod 2^64) & 0xffffffff`` (an int < 2^32).
    """
    h = 0
    for word in shingle.split(b" "):
        h = (h * _ROLL_P + xxhash.xxh3_64_intdigest(word)) & _M64
    return _fmix64_int(h) & _M32


def xxh3_hash32(shingle: bytes) -> int:
    """``"xxh3"`` shingle hash: XXH3-64 of the shingle bytes truncated to its low 32 bits."""
    return xxhash.xxh3_64_intdigest(shingle) & _M32


def sha1_hash32(shingle: bytes) -> int:
    """``"sha1"`` shingle hash, identical to ``datasketch.hashfunc.sha1_hash32``."""
    return struct.unpack("<I", hashlib.sha1(shingle).digest()[:4])[0]


def shingle_hashfunc(name: str) -> Callable[[bytes], int]:
    """Scalar shingle hash function by name (one of :data:`SHINGLE_HASHES`).

    Raises:
        ValueError: unknown name.
    """
    funcs = {"xxh3_words": xxh3_words_hash32, "xxh3": xxh3_hash32, "sha1": sha1_hash32}
    if name not in funcs:
        raise ValueError(f"unknown shingle hash {name!r}; choose one of {', '.join(SHINGLE_HASHES)}")
    return funcs[name]


# ----------------------------------------------------------------------------------------------
# vectorized helpers


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finalizer on a uint64 array (wrap-around arithmetic)."""
    s1, m1, s2, m2, s3 = (np.uint64(x) for x in _FMIX64)
    h = h ^ (h >> s1)
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finalizer on a uint32 array (datasketch ``_fmix(hv, 32)``)."""
    s1, m1, s2, m2, s3 = (np.uint32(x) for x in _FMIX32)
    h = h ^ (h >> s1)
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


def _rolling_hash32(unit_hashes: np.ndarray, unit_offsets: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """``fmix64(sum_i u_i * P^(k-1-i) mod 2^64) & 0xffffffff`` over every window of ``k``
    consecutive unit hashes (uint64; units = words or characters) inside each document, and
    over all the units of a document with ``0 < n < k`` units; uint32 of shape
    ``(offsets[-1],)``, windows in document order (``offsets`` from the caller)."""
    counts = np.diff(unit_offsets)
    n_sh = np.diff(offsets)
    hv64 = np.empty(int(offsets[-1]), dtype=np.uint64)
    p = np.uint64(_ROLL_P)
    long_docs = counts >= k
    if long_docs.any():
        n_win = len(unit_hashes) - k + 1
        roll = unit_hashes[:n_win].copy()
        for j in range(1, k):
            roll *= p
            roll += unit_hashes[j : j + n_win]
        n_long = n_sh[long_docs]
        # window t of long document i starts at unit unit_offsets[i] + t, goes to offsets[i] + t
        t = np.arange(int(n_long.sum()), dtype=np.int64) - np.repeat(np.cumsum(n_long) - n_long, n_long)
        hv64[np.repeat(offsets[:-1][long_docs], n_long) + t] = roll[np.repeat(unit_offsets[:-1][long_docs], n_long) + t]
    for i in np.flatnonzero((counts > 0) & (counts < k)):  # one shingle of all the units
        h = 0
        for w in unit_hashes[unit_offsets[i] : unit_offsets[i + 1]].tolist():
            h = (h * _ROLL_P + w) & _M64
        hv64[offsets[i]] = h
    return (_fmix64(hv64) & np.uint64(_M32)).astype(np.uint32)


def datasketch_permutations(num_perm: int, seed: int, scheme: str = "affine32") -> np.ndarray:
    """The permutation parameters ``(a, b)`` of ``datasketch.MinHash(num_perm, seed, scheme)``.

    Returns an array of shape ``(2, num_perm)``: dtype uint32 for ``"affine32"`` (``a`` odd),
    uint64 for ``"legacy"`` (``1 <= a < 2^61-1``, ``0 <= b < 2^61-1``). Reproduces datasketch
    2.0.0 ``MinHash._init_permutations`` draw for draw.

    Raises:
        ValueError: unknown scheme or ``num_perm < 1``.
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        pairs = [
            (gen.randint(1, _MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, _MERSENNE_PRIME, dtype=np.uint64))
            for _ in range(num_perm)
        ]
        return np.array(pairs, dtype=np.uint64).T.copy()
    if scheme == "affine32":
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        return np.array([a, b])
    raise ValueError(f"unknown MinHash scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


class MinHasher:
    """Vectorized MinHash signatures equal to datasketch's, with bounded memory.

    Args:
        num_perm: number of permutations (signature length); FineWeb: 112.
        seed: permutation seed, as datasketch's ``seed`` (default 1 = datasketch's default).
        shingle_size: words per shingle; FineWeb: 5.
        hash_name: shingle hash, one of :data:`SHINGLE_HASHES` (see module docstring).
        scheme: ``"affine32"`` (datasketch >= 2.0 default) or ``"legacy"`` (datasketch < 2.0).
        chunk_shingles: shingles processed per numpy step; the working buffer is
            ``num_perm * chunk_shingles`` words of 4 (affine32) or 8 (legacy) bytes
            (112 x 16,384 x 4 B = 7.3 MB by default).

    Raises:
        ValueError: a parameter out of range (message names it).
    """

    def __init__(
        self,
        num_perm: int = 112,
        seed: int = 1,
        shingle_size: int = 5,
        hash_name: str = "xxh3_words",
        scheme: str = "affine32",
        chunk_shingles: int = 16384,
    ) -> None:
        if shingle_size < 1:
            raise ValueError(f"shingle_size must be >= 1, got {shingle_size}")
        if chunk_shingles < 1:
            raise ValueError(f"chunk_shingles must be >= 1, got {chunk_shingles}")
        self.hashfunc = shingle_hashfunc(hash_name)
        self.num_perm, self.seed, self.shingle_size = num_perm, seed, shingle_size
        self.hash_name, self.scheme, self.chunk_shingles = hash_name, scheme, chunk_shingles
        perms = datasketch_permutations(num_perm, seed, scheme)
        self._a = perms[0][:, None].copy()  # (num_perm, 1) for the (num_perm, chunk) layout
        self._b = perms[1][:, None].copy()
        self.dtype = np.uint32 if scheme == "affine32" else np.uint64

    # -- shingle hashes -------------------------------------------------------------------------

    def shingle_hashes_split(self, words: pa.Array, word_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hash every shingle of every document given as a :func:`split_words` result.

        Returns:
            ``(hv, offsets)``: ``hv`` uint32 of shape ``(total_shingles,)``, the shingle hashes
            of document ``i`` being ``hv[offsets[i]:offsets[i+1]]``; ``offsets`` int64 of shape
            ``(n_docs + 1,)``. Shingles are in document order (duplicates kept).
        """
        k = self.shingle_size
        counts = np.diff(word_offsets)
        n_sh = np.where(counts >= k, counts - k + 1, np.minimum(counts, 1))
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(n_sh, out=offsets[1:])
        if self.hash_name != "xxh3_words":  # one Python call per shingle
            flat = words.to_pylist()
            docs = (flat[word_offsets[i] : word_offsets[i + 1]] for i in range(len(counts)))
            hv = (self.hashfunc(sh) for doc in docs for sh in shingles(doc, k))
            return np.fromiter(hv, dtype=np.uint32, count=int(offsets[-1])), offsets
        # xxh3_words: hash each word once, then a rolling polynomial over k word hashes
        return _rolling_hash32(word_hashes(words), word_offsets, offsets, k), offsets

    def char_shingle_hashes_split(self, codepoints: np.ndarray, char_offsets: np.ndarray,
                                  k: int) -> tuple[np.ndarray, np.ndarray]:
        """Hash every ``k``-character shingle of documents given as a
        :func:`~webmill.curate.minhash_chars.split_chars` result.

        Returns:
            ``(hv, offsets)`` as :meth:`shingle_hashes_split`: ``hv`` uint32 of shape
            ``(total_shingles,)``, equal to :func:`~webmill.curate.minhash_chars.char_shingle_hashfunc` of each
            ``minhash_chars.char_shingles`` item; ``offsets`` int64 of shape ``(n_docs + 1,)``.

        Raises:
            ValueError: ``k < 1``.
        """
        if k < 1:
            raise ValueError(f"character shingle size must be >= 1, got {k}")
        counts = np.diff(char_offsets)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(np.where(counts >= k, counts - k + 1, np.minimum(counts, 1)), out=offsets[1:])
        from webmill.curate import minhash_chars as mc  # imports this module: loaded on first use

        if self.hash_name != "xxh3_words":  # one Python call per shingle
            hashfunc = mc.char_shingle_hashfunc(self.hash_name)
            docs = (codepoints[char_offsets[i] : char_offsets[i + 1]].astype("<u4").tobytes().decode("utf-32-le")
                    for i in range(len(counts)))
            hv = (hashfunc(sh) for doc in docs for sh in mc.char_shingles(doc, k))
            return np.fromiter(hv, dtype=np.uint32, count=int(offsets[-1])), offsets
        return _rolling_hash32(mc.char_hashes(codepoints), char_offsets, offsets, k), offsets

    def shingle_hashes(self, docs_words: Sequence[Sequence[bytes]]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`shingle_hashes_split` for documents given as lists of normalized words."""
        words = pa.array([w for doc in docs_words for w in doc], type=pa.large_binary())
        word_offsets = np.zeros(len(docs_words) + 1, dtype=np.int64)
        np.cumsum([len(doc) for doc in docs_words], out=word_offsets[1:])
        return self.shingle_hashes_split(words, word_offsets)

    # -- signatures -----------------------------------------------------------------------------

    def signatures_from_hashes(self, hv: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """MinHash signatures from shingle hashes.

        Args:
            hv: uint32 shingle hashes, shape ``(total_shingles,)``.
            offsets: int64, shape ``(n_docs + 1,)``, document ``i`` owns ``hv[offsets[i]:offsets[i+1]]``.

        Returns:
            shape ``(n_docs, num_perm)``, dtype uint32 (affine32) or uint64 (legacy, values
            < 2^32), equal to ``datasketch.MinHash(...).hashvalues``. A document without
            shingles gets the all-``2^32-1`` signature of an empty datasketch MinHash.
        """
        n_docs = len(offsets) - 1
        sig_t = np.full((self.num_perm, n_docs), _M32, dtype=self.dtype)
        if self.scheme == "affine32":
            hv = _fmix32(hv.astype(np.uint32, copy=False))
        else:
            hv = hv.astype(np.uint64)
        total = len(hv)
        chunk = self.chunk_shingles
        buf = np.empty((self.num_perm, min(chunk, max(total, 1))), dtype=self.dtype)
        for s in range(0, total, chunk):
            e = min(s + chunk, total)
            m = buf[:, : e - s]
            np.multiply(self._a, hv[s:e], out=m)  # wraps mod 2^32 (affine32) / 2^64 (legacy)
            m += self._b
            if self.scheme == "legacy":
                m %= _MERSENNE_PRIME
                m &= _MAX_HASH32
            # documents overlapping [s, e) with a non-empty part in it
            d0 = int(np.searchsorted(offsets, s, side="right")) - 1
            d1 = int(np.searchsorted(offsets, e, side="left"))
            seg_start = np.maximum(offsets[d0:d1], s)
            seg_end = np.minimum(offsets[d0 + 1 : d1 + 1], e)
            nonempty = seg_end > seg_start
            docs = np.arange(d0, d1)[nonempty]
            mins = np.minimum.reduceat(m, seg_start[nonempty] - s, axis=1)
            sig_t[:, docs] = np.minimum(sig_t[:, docs], mins)
        return np.ascontiguousarray(sig_t.T)

    def signatures_from_split(self, words: pa.Array, word_offsets: np.ndarray) -> np.ndarray:
        """Signatures of documents given as a :func:`split_words` result; see :meth:`signatures_from_hashes`."""
        return self.signatures_from_hashes(*self.shingle_hashes_split(words, word_offsets))

    def signatures_from_words(self, docs_words: Sequence[Sequence[bytes]]) -> np.ndarray:
        """Signatures of documents given as normalized word lists; see :meth:`signatures_from_hashes`."""
        return self.signatures_from_hashes(*self.shingle_hashes(docs_words))

    def signatures_from_chars(self, normalized: Sequence[bytes], k: int) -> np.ndarray:
        """Signatures over ``k``-character shingles of :func:`normalized_bytes` outputs (separators
        removed, see :func:`~webmill.curate.minhash_chars.normalize_chars`); see :meth:`signatures_from_hashes`."""
        from webmill.curate.minhash_chars import split_chars

        return self.signatures_from_hashes(*self.char_shingle_hashes_split(*split_chars(normalized), k))

    def signatures_mixed(self, normalized: Sequence[bytes], char_k: np.ndarray,
                         words: pa.Array | None = None, word_offsets: np.ndarray | None = None) -> np.ndarray:
        """Signatures of a batch mixing word-shingled and character-shingled documents.

        Args:
            normalized: :func:`normalized_bytes` of each document, length ``n_docs``.
            char_k: int array of shape ``(n_docs,)``: characters per shingle for document ``i``,
                ``0`` = ``shingle_size``-word shingles.
            words, word_offsets: :func:`split_words` of ``normalized`` when the caller has it
                (else computed here).

        Returns:
            shape ``(n_docs, num_perm)`` in row order; row ``i`` equals
            :meth:`signatures_from_split` (``char_k[i] == 0``) or :meth:`signatures_from_chars`
            with ``k = char_k[i]`` of that document alone. All-word batches take the word path
            unchanged (bit-identical to :meth:`signatures_from_split`).

        Raises:
            ValueError: ``char_k`` has the wrong length or a negative value.
        """
        char_k = np.asarray(char_k, dtype=np.int64)
        if char_k.shape != (len(normalized),) or (char_k < 0).any():
            raise ValueError(f"char_k must be {len(normalized)} integers >= 0, got shape {char_k.shape}")
        if words is None or word_offsets is None:
            words, word_offsets = split_words(normalized)
        is_word = char_k == 0
        if is_word.all():
            return self.signatures_from_split(words, word_offsets)
        sig = np.empty((len(normalized), self.num_perm), dtype=self.dtype)
        if is_word.any():
            idx = np.flatnonzero(is_word)
            docs = pa.LargeListArray.from_arrays(pa.array(word_offsets), words).take(pa.array(idx))
            sub_offsets = np.zeros(len(idx) + 1, dtype=np.int64)
            np.cumsum(np.diff(word_offsets)[idx], out=sub_offsets[1:])
            sig[idx] = self.signatures_from_split(docs.flatten(), sub_offsets)
        for k in np.unique(char_k[~is_word]).tolist():
            idx = np.flatnonzero(char_k == k)
            sig[idx] = self.signatures_from_chars([normalized[i] for i in idx], k)
        return sig

    def signatures(self, texts: Iterable[str | None]) -> np.ndarray:
        """Signatures of raw texts (normalized here); shape ``(n_docs, num_perm)``."""
        return self.signatures_from_split(*split_words([normalized_bytes(t) for t in texts]))


# ----------------------------------------------------------------------------------------------
# LSH


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """64-bit key of every LSH band of every signature.

    Band ``i`` is ``sig[:, i*rows:(i+1)*rows]``; its key is
    ``fmix64(sum_j v_j * P^(rows-1-j) mod 2^64)``. Two documents land in the same bucket of band
    ``i`` iff their keys (with the band index) are equal; distinct bands collide with
    probability ~2^-64 per pair.

    Args:
        sig: shape ``(n_docs, num_perm)``, unsigned ints < 2^32, ``num_perm >= bands * rows``
            (extra columns are ignored, as datasketch's MinHashLSH does).

    Returns:
        uint64 array of shape ``(n_docs, bands)``.

    Raises:
        ValueError: ``bands * rows > sig.shape[1]``.
    """
    if bands * rows > sig.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} exceeds the signature length {sig.shape[1]}")
    s = sig[:, : bands * rows].astype(np.uint64).reshape(len(sig), bands, rows)
    p = np.uint64(_ROLL_P)
    h = s[:, :, 0].copy()
    for j in range(1, rows):
        h *= p
        h += s[:, :, j]
    return _fmix64(h)


def candidate_probability(jaccard: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The LSH S-curve ``P(candidate | J) = 1 - (1 - J^rows)^bands``.

    Source: Leskovec, Rajaraman, Ullman, *Mining of Massive Datasets*, section 3.4.2.
    """
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=np.float64) ** rows) ** bands


def optimal_bands_rows(
    threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5
) -> tuple[int, int]:
    """``(bands, rows)`` minimizing the weighted false positive + false negative area of the S-curve.

    Delegates to datasketch 2.0.0 ``datasketch.lsh._optimal_param`` (the method ``MinHashLSH``
    uses for its ``threshold`` argument); ``bands * rows <= num_perm``.

    Raises:
        ValueError: ``threshold`` outside (0, 1).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    from datasketch.lsh import _optimal_param

    return tuple(int(x) for x in _optimal_param(threshold, num_perm, false_positive_weight, false_negative_weight))
