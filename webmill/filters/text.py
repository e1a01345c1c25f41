"""Word splitting and per-document statistics shared by the heuristic rules.

The Gopher, C4 and FineWeb rules all look at the same few things: the lines of a document, its
words, and a handful of counts over them. :func:`text_stats` computes these once per document
text and hands the same :class:`TextStats` to every filter in the chain (a one-entry cache keyed
by the identity of the text string, so a C4 line edit, which makes a new string, invalidates it).

Word splitting (language-aware)
-------------------------------
* Languages written with spaces (the default, and every language not listed below): words are
  the whitespace-separated tokens of the text (``str.split()``), as in C4's reference code
  (``line.split()``). Tokens without a letter or digit (``"-"``, ``"|"``, ``"•"``) are
  *symbol tokens*: they count as tokens but not as words in the Gopher word-count and mean
  word-length rules (datatrove's ``GopherQualityFilter`` likewise drops punctuation tokens).
* Languages written without spaces between words (:data:`NO_SPACE_LANGUAGES`: Chinese,
  Japanese, Thai, Lao, Khmer, Burmese, Tibetan/Dzongkha, Cantonese, Wu, Gan): every character of
  those scripts (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, Tibetan, with its
  combining marks) is one word, other runs of letters/digits are one word each, punctuation is
  dropped. A real segmenter (jieba, pythainlp; FineWeb-2 uses them through spaCy) would give
  fewer, longer words; we avoid the dependency, so rules on mean word length are not applied to
  these languages (see each filter's docstring) and word counts of these languages count
  characters.

The language comes from ``doc.metadata["language"]`` (an ISO 639-1 code as written by the
language-ID stage; ``"__label__zh"``, ``"zh-cn"`` and ``"zh_Hans"`` are read as ``"zh"``). A
document without one is treated as :data:`DEFAULT_LANGUAGE` (English, as in FineWeb).

Speed
-----
Documents of at least :data:`NUMPY_MIN_CHARS` characters in a space-separated language are
measured *vectorized*: the text is viewed as a UTF-32 code-point array, whitespace tokens are
found, classified (alphabetic / alphanumeric) and hashed with NumPy, without building the word
list. Smaller documents use plain Python (lower fixed cost). Both paths give the same numbers
(tested on the shared WARC documents). Nothing here imports Ray or performs I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from itertools import filterfalse
from typing import NamedTuple

import numpy as np
import regex

from webmill.errors import UserError

DEFAULT_LANGUAGE = "en"

#: ISO 639 codes of languages written without spaces between words (lid.176 labels).
NO_SPACE_LANGUAGES: frozenset[str] = frozenset(
    {"zh", "ja", "th", "lo", "km", "my", "bo", "dz", "yue", "wuu", "gan"}
)

#: Characters that end a sentence-final line: FineWeb's ``stop_chars`` / C4's ``_END_MARKS``
#: (``. ' " ! ?``) plus the same marks of other scripts (full-width CJK ``。！？｡``, curly
#: quotes ``” ’``, CJK quotes ``」 』``, Devanagari danda ``। ॥``, Arabic ``؟ ۔``, Ethiopic ``።``).
TERMINAL_PUNCTUATION: tuple[str, ...] = (
    ".", "'", '"', "!", "?", "。", "！", "？", "｡", "”", "’", "」", "』", "।", "॥", "؟", "۔", "።"
)

#: Space-separated texts with at least this many characters use the vectorized (NumPy) paths.
NUMPY_MIN_CHARS = 3000
#: Character-word texts (Chinese, ...) with at least this many words count n-grams with NumPy.
NUMPY_MIN_CHAR_WORDS = 500

# Scripts split into one word per character for NO_SPACE_LANGUAGES.
_NO_SPACE_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
_CHAR_WORD_RE = regex.compile(
    rf"[{_NO_SPACE_SCRIPTS}]\p{{M}}*"  # one character of a no-space script (+ its marks)
    rf"|[[\w\p{{M}}]--[{_NO_SPACE_SCRIPTS}_]]+",  # any other run of letters/digits/marks
    flags=regex.V1,
)


@lru_cache(maxsize=1024)
def normalize_language(language: object, default: str = DEFAULT_LANGUAGE) -> str:
    """Return the bare lower-case ISO code of a language label.

    Args:
        language: a label such as ``"en"``, ``"__label__zh"``, ``"zh-CN"``, ``"zh_Hans"``;
            ``None`` or ``""`` means unknown.
        default: the code returned for an unknown language.

    Returns:
        ``str``, e.g. ``"zh"``.
    """
    if not language:
        return default
    lang = str(language).strip().lower().removeprefix("__label__")
    return re.split(r"[-_]", lang, maxsplit=1)[0] or default


def split_words(text: str, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Split ``text`` into words, language-aware (see the module docstring).

    Args:
        text: the document text (``str``).
        language: normalized language code (see :func:`normalize_language`).

    Returns:
        ``list[str]``: whitespace tokens for space-separated languages (punctuation stays
        attached, symbol-only tokens included); for :data:`NO_SPACE_LANGUAGES` one entry per
        Han/Kana/Thai/... character and per other letter/digit run, without punctuation.
    """
    if language in NO_SPACE_LANGUAGES:
        return _CHAR_WORD_RE.findall(text)
    return text.split()


# --- punctuation-split tokens (FineWeb's Gopher quality words) --------------------------------

#: Word tokens the way FineWeb counted them for the Gopher quality rules: datatrove's
#: ``GopherQualityFilter`` splits English text with spaCy's rule-based tokenizer
#: (``spacy.blank("en")``; NLTK's ``word_tokenize`` in the datatrove used for FineWeb), which
#: splits punctuation off words ("end." → "end", "."; "(1990)," → "(", "1990", ")", ",") but
#: keeps URLs, e-mail addresses, domains, abbreviations ("U.S."), numbers ("3.5", "1,000",
#: "14/03/2014"), contractions ("it", "'s") and hyphens before digits ("mid-1960s") together.
#: This regex reproduces that without spaCy: on 388 English web texts (trafilatura output of
#: the shared WARCs) the alphabetic-token ratio differs from spaCy 3.8's by 0.004 (median) and
#: the keep/drop decision at 0.8 agrees on 385 (whitespace tokens: 300).
_PUNCT_TOKEN_RE = regex.compile(
    r"""
    (?:https?://|www\.)[^\s<>"]+[^\s<>".,;:!?)\]'] # URL
    | [\w.+-]+@[\w-]+(?:\.[\w-]+)+                 # e-mail address
    | (?:[^\W\d_]\.){2,}                            # abbreviation: U.S. e.g.
    | (?:[^\W_][\w-]*\.)+[^\W\d_]{2,}(?![\w.])       # domain: example.org
    | (?<!\S)\.[^\W\d_]\w*                           # .gov .mp3 at a token start
    | (?<=\w)['’][^\W\d_]+                           # contraction: 's n't 've
    | \w+(?:\.?\[|\()\w+                             # citation, plural: word.[1 model(s
    | \w*[^\W\d_](?:-\d\w*)+                         # mid-1960s (hyphen before a digit)
    | \w+(?:[.,:/]\d+)*                              # word, 3.5, 1,000, 10:30, 14/03/2014
    | \.{2,} | -{2,} | \|+                           # ellipsis, dash, rule runs
    | [^\w\s]                                        # any other punctuation: one token each
    """,
    regex.X,
)


def punctuation_tokens(text: str) -> list[str]:
    """Split ``text`` into word and punctuation tokens like spaCy's English tokenizer, as
    FineWeb's Gopher quality rules saw them (datatrove ``GopherQualityFilter``; see
    :data:`_PUNCT_TOKEN_RE` for the measured agreement).

    Returns:
        ``list[str]``: tokens in text order, none empty or containing whitespace.
    """
    return _PUNCT_TOKEN_RE.findall(text)


# punctuation split off the ends of a word one character per token (spaCy prefixes/suffixes)
_EDGE_PUNCT = ',;:!?()[]{}"\'.“”‘’«»'


class PunctTokenCounts(NamedTuple):
    """Counts over :func:`punctuation_tokens` (see :func:`punctuation_token_counts`)."""

    n_tokens: int  #: all tokens
    n_alpha: int  #: tokens holding an alphabetic character (``str.isalpha``)
    n_words: int  #: tokens holding a letter or digit (``str.isalnum``): words
    word_chars: int  #: characters of those words
    distinct: frozenset  #: the distinct word tokens (``frozenset[str]``)


def punctuation_token_counts(text: str) -> PunctTokenCounts:
    """The counts of :func:`punctuation_tokens` without running the regex on every token.

    Whitespace tokens that are all letters/digits ("word") or one character ("|") are one
    token; a word with punctuation only at its ends ("(1990),") is the word plus one token per
    end character, as the regex splits it; the rest (contractions, URLs, "U.S.", "3.5", "...")
    go through the regex. Same numbers as counting ``punctuation_tokens`` over the whitespace
    tokens (tested on the shared WARC documents), except that a letter/digit run holding a
    numeric symbol that is not a regex word character ("Ã¼" mojibake: "¼") stays one word;
    ~4× faster than the regex on web text (≈ 6 MB/s on one core).
    """
    findall = _PUNCT_TOKEN_RE.findall
    isalnum, isalpha, isnumeric, strip = str.isalnum, str.isalpha, str.isnumeric, str.strip
    tokens = text.split()
    words = list(filter(isalnum, tokens))  # the common case, filtered in C
    n_tok = len(tokens)  # each whitespace token is at least one token
    pieces: list[str] = []
    if len(words) < n_tok:
        for w in filterfalse(isalnum, tokens):
            if len(w) == 1:
                continue  # "|", "-", "&": one symbol token
            core = strip(w, _EDGE_PUNCT)
            if core and isalnum(core) and ".." not in w and w[0] != ".":  # ".gov": one token
                words.append(core)
                n_tok += len(w) - len(core)  # one more token per end character
            else:
                found = findall(w)
                pieces += found
                n_tok += len(found) - 1
    n_words = len(words)
    n_alpha = n_words - sum(map(isnumeric, words))
    word_chars = sum(map(len, words))
    for p in pieces:
        if not isalnum(p) and not any(map(isalnum, p)):
            continue
        n_words += 1
        word_chars += len(p)
        words.append(p)
        n_alpha += isalpha(p) or any(map(isalpha, p))
    return PunctTokenCounts(n_tok, n_alpha, n_words, word_chars, frozenset(words))


# --- vectorized whitespace tokens ------------------------------------------------------------

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
_pow_cache: list[np.ndarray] = [np.ones(1, _U64), np.ones(1, _U64)]  # BASE**k, BASE**-k


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
def _word_set_hashes(words: frozenset[str]) -> np.ndarray:
    """:func:`token_arrays` hashes of a set of single words (``uint64``, shape ``(len,)``)."""
    return np.array(sorted(int(token_arrays(w)[3][0]) for w in words if w.split() == [w]),
                    dtype=_U64)


class _lazy:
    """Attribute computed by the decorated method on first access, then stored on the object.

    (``functools.cached_property`` takes a lock per first access on Python 3.11, which costs
    more than some of these computations.)
    """

    def __init__(self, func):
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        value = self.func(obj)
        obj.__dict__[self.name] = value
        return value


class TextStats:
    """Lines, words and counts of one document text, each computed on first use.

    Attributes (lazily computed, then cached on the object):
        text: the text (``str``).
        language: normalized language code (``str``).
        char_words: ``True`` when words are characters (language in NO_SPACE_LANGUAGES).
        vectorized: ``True`` when tokens are measured with NumPy (long space-separated text).
        numpy_ngrams: ``True`` when n-grams are counted with NumPy (vectorized, or at least
            :data:`NUMPY_MIN_CHAR_WORDS` character words).
        lines: ``text.split("\\n")`` (``list[str]``; empty lines included).
        words: :func:`split_words` result (``list[str]``; avoid on vectorized stats, where
            nothing else needs it).
        n_words: number of words/tokens (``int``).
        word_lengths: ``np.ndarray[int64]`` of shape ``(n_words,)``, characters per word.
        word_chars: total characters of the words (``int``).
        max_word_length: longest word in characters (``int``, 0 without words).
        n_symbol_tokens: tokens without a letter or digit (``-``, ``|``, ``•``; ``int``; 0 for
            char words, whose split drops punctuation).
        symbol_chars: characters in those symbol tokens (``int``).
        n_non_alpha_tokens: tokens without an alphabetic character (symbols, numbers; ``int``).
        punct_counts: :func:`punctuation_token_counts` of the text.
        word_hashes: ``np.ndarray[uint64]`` of shape ``(n_words,)``: a hash per word (Python
            ``hash`` or :func:`token_arrays`; only equality within one document is used).
    """

    def __init__(self, text: str, language: str = DEFAULT_LANGUAGE):
        self.text = text
        self.language = language
        self.char_words = language in NO_SPACE_LANGUAGES
        self.vectorized = not self.char_words and len(text) >= NUMPY_MIN_CHARS

    @_lazy
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @_lazy
    def numpy_ngrams(self) -> bool:
        return self.vectorized or (self.char_words and len(self.words) >= NUMPY_MIN_CHAR_WORDS)

    @_lazy
    def words(self) -> list[str]:
        return split_words(self.text, self.language)

    @_lazy
    def punct_counts(self) -> PunctTokenCounts:
        return punctuation_token_counts(self.text)

    @_lazy
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return token_arrays(self.text)

    @_lazy
    def n_words(self) -> int:
        if not self.vectorized:
            return len(self.words)
        if "_arrays" in self.__dict__:
            return len(self._arrays[0])
        return count_tokens(self.text)  # FineWeb after a C4 edit needs only the count

    @_lazy
    def word_lengths(self) -> np.ndarray:
        if self.vectorized:
            return self._arrays[0]
        return np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))

    @_lazy
    def word_chars(self) -> int:
        if self.vectorized:
            return int(self._arrays[0].sum())
        return sum(map(len, self.words))

    @_lazy
    def max_word_length(self) -> int:
        if self.vectorized:
            return int(self._arrays[0].max(initial=0))
        return max(map(len, self.words), default=0)

    @_lazy
    def word_hashes(self) -> np.ndarray:
        if self.vectorized:
            return self._arrays[3]
        words = self.words
        return np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(_U64)

    @_lazy
    def _token_counts(self) -> tuple[int, int, int]:
        """``(n_symbol_tokens, symbol_chars, n_non_alpha_tokens)``."""
        if self.vectorized:
            lengths, alpha, alnum, _ = self._arrays
            n = len(lengths)
            return int(n - alnum.sum()), int(lengths[~alnum].sum()), int(n - alpha.sum())
        n_sym = sym_chars = n_non_alpha = 0
        isalpha, isalnum = str.isalpha, str.isalnum
        for w in self.words:
            if isalpha(w) or any(map(isalpha, w)):
                continue
            n_non_alpha += 1
            if not self.char_words and not any(map(isalnum, w)):
                n_sym += 1
                sym_chars += len(w)
        return n_sym, sym_chars, n_non_alpha

    @property
    def n_symbol_tokens(self) -> int:
        return self._token_counts[0]

    @property
    def symbol_chars(self) -> int:
        return self._token_counts[1]

    @property
    def n_non_alpha_tokens(self) -> int:
        return self._token_counts[2]

    def count_words_in(self, words: frozenset[str]) -> int:
        """Occurrences of the (single, case-sensitive) words of ``words`` in the text (``int``)."""
        if self.vectorized:
            return int(np.isin(self._arrays[3], _word_set_hashes(words)).sum())
        return sum(map(words.__contains__, self.words))


_last: TextStats | None = None


def text_stats(doc, default_language: str = DEFAULT_LANGUAGE) -> TextStats:
    """Return the (cached) :class:`TextStats` of ``doc.text`` in ``doc.metadata["language"]``.

    The cache holds the stats of the last text seen, keyed by the identity of the text object
    and the language, so the filters of one chain share one computation per document.

    Args:
        doc: a :class:`webmill.filters.base.Document` (anything with ``.text`` and
            ``.metadata``).
        default_language: language assumed when the metadata has none.

    Raises:
        UserError: ``doc.text`` is not a ``str`` (names the document id).
    """
    global _last
    text = doc.text
    if not isinstance(text, str):
        raise UserError(
            f"document {getattr(doc, 'id', '') or '<no id>'}: text is "
            f"{type(text).__name__}, expected str; decode the text before filtering"
        )
    lang = normalize_language((doc.metadata or {}).get("language"), default_language)
    cached = _last
    if cached is not None and cached.text is text and cached.language == lang:
        return cached
    stats = TextStats(text, lang)
    _last = stats
    return stats


# --- repetition statistics (Gopher, Rae et al. 2021, Appendix A) ---------------------------

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


def _runs(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def top_word_char_count(stats: TextStats) -> int:
    """``max over words w of count(w) × len(w)`` (``int``; 0 without words).

    Bounds the top n-gram character count from above: every occurrence of an n-gram holds
    its k-th word at a distinct position, so ``count(g) × len(g) <= n × top_word_char_count``.
    Lets :class:`GopherRepetitionFilter` skip the n-gram counting for most documents.
    """
    if not stats.numpy_ngrams:
        return max((k * len(w) for w, k in Counter(stats.words).items()), default=0)
    if stats.n_words == 0:
        return 0
    order, _, run_len, run_start = _runs(stats.word_hashes)
    return int((run_len * stats.word_lengths[order[run_start]]).max())


def top_ngram_char_count(stats: TextStats, n: int) -> int:
    """Characters in all occurrences of the most frequent word n-gram.

    ``count(top n-gram) × characters of its words`` (separators not counted), the numerator
    of Gopher's "top n-gram character fraction". Occurrences may overlap ("a a a" has the
    2-gram "a a" twice), so the result can exceed ``stats.word_chars``. Ties between equally
    frequent n-grams go to the longest one (deterministic whatever the hash order). Returns 0
    when no n-gram occurs twice (datatrove would count a unique n-gram, which drops every
    document of a few words).
    """
    if not stats.numpy_ngrams:
        words = stats.words
        counts = Counter(zip(*(words[k:] for k in range(n))))
        top = max(counts.values(), default=0)
        if top < 2:
            return 0
        return top * max(sum(map(len, g)) for g, k in counts.items() if k == top)
    h = ngram_hashes(stats.word_hashes, n)
    if len(h) < 2:
        return 0
    order, run_id, run_len, _ = _runs(h)
    top = int(run_len.max())
    if top < 2:
        return 0
    starts = order[run_len[run_id] == top]
    csum = np.concatenate(([0], np.cumsum(stats.word_lengths)))
    return top * int((csum[starts + n] - csum[starts]).max())


def duplicate_ngram_char_count(stats: TextStats, n: int) -> int:
    """Characters of words covered by a repeated occurrence of some word n-gram.

    An occurrence is repeated when the same n-gram occurred earlier in the document; each
    word is counted once however many repeated occurrences cover it (Gopher's "fraction of
    characters contained within all duplicate n-grams"; datatrove approximates the same
    union by skipping ``n`` words after each repeat). Linear in the number of words apart
    from one sort of the n-gram hashes on the vectorized path.
    """
    if not stats.numpy_ngrams:
        words = stats.words
        grams = list(zip(*(words[k:] for k in range(n))))
        if len(set(grams)) == len(grams):  # no n-gram occurs twice (the common case)
            return 0
        seen: set = set()
        covered_to = 0  # words before this index are already counted
        chars = 0
        for i, gram in enumerate(grams):
            if gram in seen:
                chars += sum(map(len, words[max(i, covered_to) : i + n]))
                covered_to = i + n
            else:
                seen.add(gram)
        return chars
    h = ngram_hashes(stats.word_hashes, n)
    m = len(h)
    if m < 2:
        return 0
    order, run_id, run_len, run_start = _runs(h)
    if len(run_len) == m:
        return 0
    first = np.minimum.reduceat(order, run_start)  # first position of each n-gram
    repeated = np.zeros(m, dtype=np.int64)
    repeated[order] = order != first[run_id]
    # word i is covered if a repeated occurrence starts in [i - n + 1, i]
    csum = np.concatenate(([0], np.cumsum(repeated), np.full(n - 1, repeated.sum())))
    idx = np.arange(stats.n_words)
    covered = csum[idx + 1] - csum[np.maximum(idx - n + 1, 0)] > 0
    return int(stats.word_lengths[covered].sum())


def duplicate_count_and_chars(items: list[str]) -> tuple[int, int]:
    """Number and total characters of the repeated items of a list (first occurrence free).

    Returns:
        ``(n_repeated, chars_repeated)``: e.g. ``["a", "bb", "a", "a"]`` → ``(2, 2)``.
    """
    unique = set(items)
    return len(items) - len(unique), sum(map(len, items)) - sum(map(len, unique))


# --- config validation helpers -------------------------------------------------------------


def check_number(table: str, key: str, value, *, integer: bool = False, lo: float = 0.0,
                 hi: float | None = None, allow_disable: bool = True):
    """Validate one threshold from a ``[filters.<table>]`` config table.

    Returns:
        the value, or ``None`` when the rule is turned off (``false`` in TOML, ``None`` in
        Python).

    Raises:
        UserError: naming ``[filters.<table>] <key>`` when the value has the wrong type or
            range.
    """
    if allow_disable and (value is None or value is False):
        return None
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value < lo or (hi is not None and value > hi):
        kind = "an integer" if integer else "a number"
        rng = f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}"
        off = " (or false to turn the rule off)" if allow_disable else ""
        raise UserError(
            f"[filters.{table}] {key} must be {kind}{rng}{off}, got {value!r}; "
            "fix the value in the config file"
        )
    return value


def check_bool(table: str, key: str, value) -> bool:
    """Validate a boolean switch; raises :class:`UserError` naming the key otherwise."""
    if not isinstance(value, bool):
        raise UserError(f"[filters.{table}] {key} must be true or false, got {value!r}")
    return value


def check_strings(table: str, key: str, value) -> tuple[str, ...]:
    """Validate a list of strings; raises :class:`UserError` naming the key otherwise."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise UserError(f"[filters.{table}] {key} must be a list of strings, got {value!r}")
    out = tuple(value)
    if not all(isinstance(v, str) for v in out):
        raise UserError(f"[filters.{table}] {key} must be a list of strings, got {value!r}")
    return out


def check_languages(table: str, key: str, value) -> frozenset[str]:
    """Validate a list of language codes and normalize them (see :func:`normalize_language`)."""
    return frozenset(normalize_language(v, "") for v in check_strings(table, key, value))
