"""Gopher repetition and quality rules (Rae et al. 2021, "Scaling Language Models: Methods,
Analysis & Insights from Training Gopher", arXiv:2112.11446, Appendix A: section A.1.1 and
Table A1), with the thresholds FineWeb used (Penedo et al. 2024, "The FineWeb Datasets",
section 3.3; datatrove's ``GopherRepetitionFilter``/``GopherQualityFilter`` defaults as run by
datatrove's ``examples/fineweb.py``).

Both filters are pure functions of one document: no Ray, no I/O. A drop records the statistic
that failed, its threshold and ``"<stat> <value> <op> <threshold>"`` in ``doc.metadata``
(:func:`webmill.filters.base.failed`), e.g. ``"dup_line_frac 0.41 > 0.3"``. Words and lines come from
:func:`webmill.filters.textstats.text_stats`, shared with the C4 and FineWeb filters.
"""

from __future__ import annotations

import re
from itertools import repeat

from webmill.filters.base import BaseFilter, Document, FilterResult, failed
from webmill.filters.checks import check_languages, check_number, check_strings
from webmill.filters.repetition import (
    duplicate_count_and_chars,
    duplicate_ngram_char_count,
    top_ngram_char_count,
    top_word_char_count,
)
from webmill.filters.textstats import text_stats
from webmill.filters.words import DEFAULT_LANGUAGE, NO_SPACE_LANGUAGES

_PARAGRAPH_SPLIT = re.compile(r"\n{2,}")
_ELLIPSIS = ("...", "…")

#: Gopher's stop words (Rae et al. 2021, A.1.1: "the, be, to, of, and, that, have, with").
GOPHER_STOP_WORDS: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")


def _ngram_table(table: str, key: str, value) -> tuple[tuple[int, float], ...]:
    """Validate ``[[n, fraction], ...]`` (TOML arrays) into sorted ``((n, fraction), ...)``."""
    from webmill.errors import UserError

    if value is None or value is False:
        return ()
    try:
        pairs = tuple((p[0], p[1]) for p in value)
    except (TypeError, IndexError, KeyError):
        pairs = None
    if pairs is None or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1
        and isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0
        for n, f in pairs
    ):
        raise UserError(
            f"[filters.{table}] {key} must be a list of [n, fraction] pairs with n >= 1, "
            f"e.g. [[2, 0.20], [3, 0.18]], got {value!r}"
        )
    return tuple(sorted(pairs))


class GopherRepetitionFilter(BaseFilter):
    """Drop documents with too much repeated content (Gopher, Rae et al. 2021, Table A1).

    All fractions are of the document's characters (``len(text)``, as datatrove does), so the
    FineWeb thresholds mean the same here. A document is dropped when a fraction is strictly
    greater than its threshold; set a threshold to ``None``/``false`` to turn the rule off.

    Reasons (checked in this order, first hit wins):
        ``gopher_rep_dup_para_frac``: repeated paragraphs / paragraphs > ``dup_para_frac``.
        ``gopher_rep_dup_para_char_frac``: chars in repeated paragraphs > ``dup_para_char_frac``.
        ``gopher_rep_dup_line_frac``: repeated lines / non-blank lines > ``dup_line_frac``.
        ``gopher_rep_dup_line_char_frac``: chars in repeated lines > ``dup_line_char_frac``.
        ``gopher_rep_top_{n}_gram``: chars in all occurrences of the most frequent word n-gram
            (one that occurs at least twice) > the fraction given for n in ``top_n_grams``.
        ``gopher_rep_dup_{n}_gram``: chars of words covered by repeated occurrences of word
            n-grams > the fraction given for n in ``dup_n_grams``.

    "Repeated" means every occurrence after the first. Paragraphs are split on two or more
    newlines, lines on one (blank lines ignored). N-grams are over the words of
    :func:`webmill.filters.words.split_words`, so for Chinese/Japanese/Thai... (no spaces) they
    are character n-grams. Since duplicated-(n+1)-gram coverage is a subset of duplicated-n-gram
    coverage, the dup n-gram rules stop early once a fraction is below every remaining
    threshold; this gives exactly the result of checking every n.

    Languages: every rule applies to every language except those in ``skip_languages``.

    Args:
        dup_line_frac: 0.30 (Table A1 "duplicate line fraction").
        dup_para_frac: 0.30 (Table A1 "duplicate paragraph fraction").
        dup_line_char_frac: 0.20 (Table A1 "duplicate line character fraction").
        dup_para_char_frac: 0.20 (Table A1 "duplicate paragraph character fraction").
        top_n_grams: ``[[2, 0.20], [3, 0.18], [4, 0.16]]`` (Table A1 "top n-gram character
            fraction").
        dup_n_grams: ``[[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]]``
            (Table A1 "duplicate n-gram character fraction").
        skip_languages: language codes kept without checks (default none).
        default_language: language assumed when ``doc.metadata["language"]`` is missing.

    Raises:
        UserError: a threshold has the wrong type/range (message names the config key).
    """

    name = "gopher_repetition"
    REASONS: tuple[str, ...] = (
        "gopher_rep_dup_para_frac",
        "gopher_rep_dup_para_char_frac",
        "gopher_rep_dup_line_frac",
        "gopher_rep_dup_line_char_frac",
        "gopher_rep_top_2_gram",
        "gopher_rep_top_3_gram",
        "gopher_rep_top_4_gram",
        *(f"gopher_rep_dup_{n}_gram" for n in range(5, 11)),
    )

    def __init__(
        self,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_n_grams=((2, 0.20), (3, 0.18), (4, 0.16)),
        dup_n_grams=((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
        skip_languages=(),
        default_language: str = DEFAULT_LANGUAGE,
    ):
        t = self.name
        self.dup_line_frac = check_number(t, "dup_line_frac", dup_line_frac, hi=1)
        self.dup_para_frac = check_number(t, "dup_para_frac", dup_para_frac, hi=1)
        self.dup_line_char_frac = check_number(t, "dup_line_char_frac", dup_line_char_frac, hi=1)
        self.dup_para_char_frac = check_number(t, "dup_para_char_frac", dup_para_char_frac, hi=1)
        self.top_n_grams = _ngram_table(t, "top_n_grams", top_n_grams)
        self.dup_n_grams = _ngram_table(t, "dup_n_grams", dup_n_grams)
        self.skip_languages = check_languages(t, "skip_languages", skip_languages)
        self.default_language = check_strings(t, "default_language", [default_language])[0]
        self.reasons = (
            *self.REASONS[:4],
            *(f"gopher_rep_top_{n}_gram" for n, _ in self.top_n_grams),
            *(f"gopher_rep_dup_{n}_gram" for n, _ in self.dup_n_grams),
        )

    def filter(self, doc: Document) -> FilterResult:
        """Keep or drop ``doc`` (see the class docstring for the reasons). Does not modify it."""
        s = text_stats(doc, self.default_language)
        if s.language in self.skip_languages:
            return True, None
        text = s.text
        n_chars = len(text)
        if n_chars == 0:
            return True, None

        if self.dup_para_frac is not None or self.dup_para_char_frac is not None:
            stripped = text.strip()
            paragraphs = _PARAGRAPH_SPLIT.split(stripped) if "\n\n" in stripped else [stripped]
            n_dup, dup_chars = duplicate_count_and_chars(paragraphs)
            if self.dup_para_frac is not None and n_dup / len(paragraphs) > self.dup_para_frac:
                return failed(doc, "gopher_rep_dup_para_frac", "dup_para_frac",
                              n_dup / len(paragraphs), ">", self.dup_para_frac)
            if (
                self.dup_para_char_frac is not None
                and dup_chars / n_chars > self.dup_para_char_frac
            ):
                return failed(doc, "gopher_rep_dup_para_char_frac", "dup_para_char_frac",
                              dup_chars / n_chars, ">", self.dup_para_char_frac)

        if self.dup_line_frac is not None or self.dup_line_char_frac is not None:
            lines = list(filter(str.strip, s.lines))
            if lines:
                n_dup, dup_chars = duplicate_count_and_chars(lines)
                if self.dup_line_frac is not None and n_dup / len(lines) > self.dup_line_frac:
                    return failed(doc, "gopher_rep_dup_line_frac", "dup_line_frac",
                                  n_dup / len(lines), ">", self.dup_line_frac)
                if (
                    self.dup_line_char_frac is not None
                    and dup_chars / n_chars > self.dup_line_char_frac
                ):
                    return failed(doc, "gopher_rep_dup_line_char_frac", "dup_line_char_frac",
                                  dup_chars / n_chars, ">", self.dup_line_char_frac)

        if self.top_n_grams:
            bound = top_word_char_count(s) / n_chars  # top n-gram fraction <= n * bound
            for n, frac in self.top_n_grams:
                if n * bound > frac and (top := top_ngram_char_count(s, n) / n_chars) > frac:
                    return failed(doc, f"gopher_rep_top_{n}_gram", f"top_{n}_gram_char_frac",
                                  top, ">", frac)

        for i, (n, frac) in enumerate(self.dup_n_grams):
            dup_frac = duplicate_ngram_char_count(s, n) / n_chars
            if dup_frac > frac:
                return failed(doc, f"gopher_rep_dup_{n}_gram", f"dup_{n}_gram_char_frac",
                              dup_frac, ">", frac)
            rest = self.dup_n_grams[i + 1 :]
            if not rest or dup_frac <= min(f for _, f in rest):
                break  # larger n cover a subset of these words: all remaining rules pass
        return True, None


class GopherQualityFilter(BaseFilter):
    """Drop documents that fail Gopher's quality heuristics (Rae et al. 2021, A.1.1).

    Reasons (checked in this order, first hit wins; a threshold of ``None``/``false`` turns
    its rule off):
        ``gopher_short_doc``: fewer than ``min_doc_words`` words (50).
        ``gopher_long_doc``: more than ``max_doc_words`` words (100,000).
        ``gopher_below_avg_word_len``: mean word length < ``min_avg_word_length`` (3 chars).
        ``gopher_above_avg_word_len``: mean word length > ``max_avg_word_length`` (10 chars).
        ``gopher_too_many_hashes``: count of ``#`` / words > ``max_symbol_word_ratio`` (0.1).
        ``gopher_too_many_ellipsis``: count of ``...`` and ``…`` / words >
            ``max_symbol_word_ratio`` (0.1).
        ``gopher_too_many_bullets``: lines starting (after leading spaces) with one of
            ``bullet_chars`` / lines > ``max_bullet_lines_ratio`` (0.9).
        ``gopher_too_many_end_ellipsis``: lines ending (before trailing spaces) in ``...`` or
            ``…`` / lines > ``max_ellipsis_lines_ratio`` (0.3).
        ``gopher_below_alpha_words``: tokens holding an alphabetic character / tokens <
            ``min_alpha_words_ratio`` (0.8).
        ``gopher_too_few_stop_words``: distinct ``stop_words`` among the tokens (in lower, Title
            or UPPER case; "the" and "The" are one) < ``min_stop_words`` (2).

    Tokens (``tokens``, default ``"punctuation"``): the text split as FineWeb's datatrove split
    it (spaCy's English tokenizer, reproduced by
    :func:`webmill.filters.words.punctuation_tokens`): punctuation is split off words, so
    ``"end."`` is the word ``"end"`` plus the token ``"."``. Words are the tokens holding a
    letter or digit; the word count, mean word length and ``#``/ellipsis ratios use them as
    datatrove does (the ``#``/ellipsis denominator is all tokens), and the alphabetic rule
    counts every token, so a text heavy in punctuation and numbers falls under 0.8 as it did
    for FineWeb. With ``tokens = "whitespace"``, tokens are ``str.split()`` tokens (attached
    punctuation stays in the word; the alphabetic ratio of ordinary prose is then ~0.15 higher)
    and stop words are counted by occurrence. Lines are ``text.split("\\n")`` (blank lines
    count, as with datatrove's ``splitlines``).

    Languages (``doc.metadata["language"]``):
        * word counts, symbol ratios, bullet/ellipsis lines, alphabetic ratio: all languages;
          for Chinese/Japanese/Thai/... (:data:`webmill.filters.words.NO_SPACE_LANGUAGES`)
          each character counts as a word, so a Chinese document of 50+ characters passes
          the 50-word minimum.
        * mean word length: not for ``word_length_skip_languages`` (default: the no-space
          languages, where a character is not a word).
        * stop words: only for ``stop_words_languages`` (default ``["en"]``), since the list
          is English.
        * nothing for ``skip_languages`` (default none).

    Args (defaults are FineWeb's, i.e. datatrove ``GopherQualityFilter`` defaults, which are
    Gopher's A.1.1 values):
        min_doc_words, max_doc_words: 50 and 100,000 words (A.1.1).
        min_avg_word_length, max_avg_word_length: 3 and 10 characters (A.1.1).
        max_symbol_word_ratio: 0.1 for ``#`` and for the ellipsis (A.1.1).
        max_bullet_lines_ratio: 0.9 (A.1.1 "more than 90% of lines starting with a bullet").
        max_ellipsis_lines_ratio: 0.3 (A.1.1 "more than 30% ending with an ellipsis").
        min_alpha_words_ratio: 0.8 (A.1.1 "80% of words ... contain at least one alphabetic
            character"; datatrove calls this ``max_non_alpha_words_ratio``).
        min_stop_words: 2 (A.1.1 "at least two of the following English words").
        tokens: ``"punctuation"`` (FineWeb's tokenization, above) or ``"whitespace"``.
        stop_words: Gopher's list (A.1.1).
        bullet_chars: ``["•", "-"]`` (datatrove's bullet test; Gopher names no glyphs).
        stop_words_languages: ``["en"]``.
        word_length_skip_languages: the no-space languages.
        skip_languages: none.
        default_language: ``"en"`` (FineWeb is English).

    Raises:
        UserError: a threshold has the wrong type/range (message names the config key).
    """

    name = "gopher_quality"
    REASONS: tuple[str, ...] = (
        "gopher_short_doc",
        "gopher_long_doc",
        "gopher_below_avg_word_len",
        "gopher_above_avg_word_len",
        "gopher_too_many_hashes",
        "gopher_too_many_ellipsis",
        "gopher_too_many_bullets",
        "gopher_too_many_end_ellipsis",
        "gopher_below_alpha_words",
        "gopher_too_few_stop_words",
    )

    def __init__(
        self,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100_000,
        min_avg_word_length: float | None = 3.0,
        max_avg_word_length: float | None = 10.0,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        min_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words=GOPHER_STOP_WORDS,
        bullet_chars=("•", "-"),
        stop_words_languages=("en",),
        word_length_skip_languages=tuple(sorted(NO_SPACE_LANGUAGES)),
        skip_languages=(),
        default_language: str = DEFAULT_LANGUAGE,
        tokens: str = "punctuation",
    ):
        t = self.name
        if tokens not in ("punctuation", "whitespace"):
            from webmill.errors import UserError

            raise UserError(
                f'[filters.{t}] tokens must be "punctuation" or "whitespace", got {tokens!r}'
            )
        self.tokens = tokens
        self.min_doc_words = check_number(t, "min_doc_words", min_doc_words, integer=True)
        self.max_doc_words = check_number(t, "max_doc_words", max_doc_words, integer=True)
        self.min_avg_word_length = check_number(t, "min_avg_word_length", min_avg_word_length)
        self.max_avg_word_length = check_number(t, "max_avg_word_length", max_avg_word_length)
        self.max_symbol_word_ratio = check_number(t, "max_symbol_word_ratio", max_symbol_word_ratio)
        self.max_bullet_lines_ratio = check_number(
            t, "max_bullet_lines_ratio", max_bullet_lines_ratio, hi=1
        )
        self.max_ellipsis_lines_ratio = check_number(
            t, "max_ellipsis_lines_ratio", max_ellipsis_lines_ratio, hi=1
        )
        self.min_alpha_words_ratio = check_number(
            t, "min_alpha_words_ratio", min_alpha_words_ratio, hi=1
        )
        self.min_stop_words = check_number(t, "min_stop_words", min_stop_words, integer=True)
        words = check_strings(t, "stop_words", stop_words)
        # exact-token lookup of each stop word in lower, Title and UPPER case
        self.stop_words = frozenset(
            v for w in words for v in (w.lower(), w.lower().capitalize(), w.upper())
        )
        self.bullet_chars = check_strings(t, "bullet_chars", bullet_chars)
        self.stop_words_languages = check_languages(t, "stop_words_languages", stop_words_languages)
        self.word_length_skip_languages = check_languages(
            t, "word_length_skip_languages", word_length_skip_languages
        )
        self.skip_languages = check_languages(t, "skip_languages", skip_languages)
        self.default_language = check_strings(t, "default_language", [default_language])[0]
        self.reasons = self.REASONS

    def filter(self, doc: Document) -> FilterResult:
        """Keep or drop ``doc`` (see the class docstring for the reasons). Does not modify it."""
        s = text_stats(doc, self.default_language)
        lang = s.language
        if lang in self.skip_languages:
            return True, None
        text = s.text
        split = self.tokens == "punctuation" and not s.char_words
        if split:
            pc = s.punct_counts
            n_tokens, n_words, word_chars = pc.n_tokens, pc.n_words, pc.word_chars
        else:
            n_tokens = s.n_words
            n_words = n_tokens - s.n_symbol_tokens
            word_chars = s.word_chars - s.symbol_chars

        if self.min_doc_words is not None and n_words < self.min_doc_words:
            return failed(doc, "gopher_short_doc", "words", n_words, "<", self.min_doc_words)
        if self.max_doc_words is not None and n_words > self.max_doc_words:
            return failed(doc, "gopher_long_doc", "words", n_words, ">", self.max_doc_words)

        if n_words and lang not in self.word_length_skip_languages:
            mean_len = word_chars / n_words
            if self.min_avg_word_length is not None and mean_len < self.min_avg_word_length:
                return failed(doc, "gopher_below_avg_word_len", "mean_word_length", mean_len,
                              "<", self.min_avg_word_length)
            if self.max_avg_word_length is not None and mean_len > self.max_avg_word_length:
                return failed(doc, "gopher_above_avg_word_len", "mean_word_length", mean_len,
                              ">", self.max_avg_word_length)

        if self.max_symbol_word_ratio is not None:
            denom = max(n_tokens if split else n_words, 1)
            per = "token" if split else "word"
            if (r := text.count("#") / denom) > self.max_symbol_word_ratio:
                return failed(doc, "gopher_too_many_hashes", f"hash_{per}_ratio", r, ">",
                              self.max_symbol_word_ratio)
            if (r := (text.count("...") + text.count("…")) / denom) > self.max_symbol_word_ratio:
                return failed(doc, "gopher_too_many_ellipsis", f"ellipsis_{per}_ratio", r, ">",
                              self.max_symbol_word_ratio)

        lines = s.lines
        n_lines = len(lines)
        if self.max_bullet_lines_ratio is not None and self.bullet_chars:
            n_bullet = sum(map(str.startswith, map(str.lstrip, lines), repeat(self.bullet_chars)))
            if n_bullet / n_lines > self.max_bullet_lines_ratio:
                return failed(doc, "gopher_too_many_bullets", "bullet_lines_ratio",
                              n_bullet / n_lines, ">", self.max_bullet_lines_ratio)
        if self.max_ellipsis_lines_ratio is not None:
            n_ellipsis = sum(map(str.endswith, map(str.rstrip, lines), repeat(_ELLIPSIS)))
            if n_ellipsis / n_lines > self.max_ellipsis_lines_ratio:
                return failed(doc, "gopher_too_many_end_ellipsis", "ellipsis_lines_ratio",
                              n_ellipsis / n_lines, ">", self.max_ellipsis_lines_ratio)

        if self.min_alpha_words_ratio is not None and n_tokens:
            if split:
                alpha = pc.n_alpha / n_tokens
            else:
                alpha = 1 - s.n_non_alpha_tokens / n_tokens
            if alpha < self.min_alpha_words_ratio:
                return failed(doc, "gopher_below_alpha_words", "alpha_token_ratio", alpha, "<",
                              self.min_alpha_words_ratio)

        if self.min_stop_words is not None and lang in self.stop_words_languages:
            if split:
                n_stop = len({w.lower() for w in self.stop_words.intersection(pc.distinct)})
            else:
                n_stop = s.count_words_in(self.stop_words)
            if n_stop < self.min_stop_words:
                return failed(doc, "gopher_too_few_stop_words", "stop_words", n_stop, "<",
                              self.min_stop_words)
        return True, None
