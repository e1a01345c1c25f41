"""Per-document text statistics shared by the heuristic rules: :class:`TextStats`.

The Gopher, C4 and FineWeb rules all look at the same few things: the lines of a document, its
words, and a handful of counts over them. :func:`text_stats` computes these once per document
text and hands the same :class:`TextStats` to every filter of the chain through a
:class:`StatsCache` (one entry, keyed by the identity of the text string, so a C4 line edit,
which makes a new string, invalidates it).

Each statistic is computed on first use. Documents of at least :data:`NUMPY_MIN_CHARS`
characters in a space-separated language are measured with NumPy
(:func:`webmill.filters.hashing.token_arrays`), smaller ones in plain Python (lower fixed cost);
both paths give the same numbers (tested on real WARC documents). Word splitting is in
:mod:`webmill.filters.words`, n-gram statistics in :mod:`webmill.filters.repetition`.

Pure Python/NumPy: no Ray, no I/O.
"""

from __future__ import annotations

import numpy as np

from webmill.errors import UserError
from webmill.filters.hashing import count_tokens, token_arrays, word_set_hashes
from webmill.filters.words import (
    DEFAULT_LANGUAGE,
    NO_SPACE_LANGUAGES,
    PunctTokenCounts,
    normalize_language,
    punctuation_token_counts,
    split_words,
)

#: Space-separated texts with at least this many characters use the vectorized (NumPy) paths.
NUMPY_MIN_CHARS = 3000
#: Character-word texts (Chinese, ...) with at least this many words count n-grams with NumPy.
NUMPY_MIN_CHAR_WORDS = 500


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
        return np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)

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
            return int(np.isin(self._arrays[3], word_set_hashes(words)).sum())
        return sum(map(words.__contains__, self.words))


class StatsCache:
    """A one-entry cache of :class:`TextStats`: the stats of the last ``(text, language)`` seen.

    The filters of one chain run one after the other on one document, each calling
    :func:`text_stats`; the cache makes them share one computation. The key is the *identity*
    of the text object (``is``, not ``==``: comparing texts would cost as much as a statistic),
    plus the language. A filter that edits ``doc.text`` (C4) makes a new string, so the next
    filter gets fresh stats. Holding one entry keeps memory bounded (one document's arrays).

    Not thread-safe by design: one process runs one chain on one document at a time (a Ray
    worker per input file); use one :class:`StatsCache` per thread otherwise.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: TextStats | None = None

    def get(self, text: str, language: str) -> TextStats:
        """The stats of ``text`` in ``language`` (normalized code), computed on a miss."""
        last = self.last
        if last is not None and last.text is text and last.language == language:
            return last
        stats = self.last = TextStats(text, language)
        return stats

    def clear(self) -> None:
        """Forget the cached entry (releases the last document's arrays)."""
        self.last = None


#: The process-wide cache used by :func:`text_stats` unless another is given.
STATS_CACHE = StatsCache()


def text_stats(doc, default_language: str = DEFAULT_LANGUAGE,
               cache: StatsCache = STATS_CACHE) -> TextStats:
    """Return the (cached) :class:`TextStats` of ``doc.text`` in ``doc.metadata["language"]``.

    Args:
        doc: a :class:`webmill.filters.base.Document` (anything with ``.text`` and
            ``.metadata``).
        default_language: language assumed when the metadata has none.
        cache: the :class:`StatsCache` shared by the filters of one chain (default: the
            process-wide :data:`STATS_CACHE`).

    Raises:
        UserError: ``doc.text`` is not a ``str`` (names the document id).
    """
    text = doc.text
    if not isinstance(text, str):
        raise UserError(
            f"document {getattr(doc, 'id', '') or '<no id>'}: text is "
            f"{type(text).__name__}, expected str; decode the text before filtering"
        )
    lang = normalize_language((doc.metadata or {}).get("language"), default_language)
    return cache.get(text, lang)
