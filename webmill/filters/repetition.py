"""Repetition statistics of the Gopher rules (Rae et al. 2021, "Scaling Language Models",
arXiv:2112.11446, Appendix A, Table A1): top n-gram and duplicate n-gram character counts, and
duplicate lines/paragraphs.

Each function takes a :class:`webmill.filters.textstats.TextStats`; short texts are counted
with Python ``Counter``/sets over the words, long ones (``stats.numpy_ngrams``) with the n-gram
hashes of :mod:`webmill.filters.hashing` (same numbers, tested on real WARC documents).

Pure Python/NumPy: no Ray, no I/O.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from webmill.filters.hashing import equal_runs, ngram_hashes
from webmill.filters.textstats import TextStats

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
    order, _, run_len, run_start = equal_runs(stats.word_hashes)
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
    order, run_id, run_len, _ = equal_runs(h)
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
    order, run_id, run_len, run_start = equal_runs(h)
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
