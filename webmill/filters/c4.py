"""C4 cleaning rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a
Unified Text-to-Text Transformer", JMLR 21, section 2.2 "The Colossal Clean Crawled Corpus"),
in the form of TensorFlow Datasets' reference code (``tensorflow_datasets/text/c4_utils.py``,
``clean_page``) and datatrove's ``C4QualityFilter``, with FineWeb's settings (datatrove
``examples/fineweb.py``: ``C4QualityFilter(filter_no_terminal_punct=False)``, the rest default).

The bad-words list rule of C4 is not implemented (FineWeb does not use it either).
Pure Python: no Ray, no I/O.
"""

from __future__ import annotations

import re

from webmill.filters.base import BaseFilter, Document, FilterResult, dropped
from webmill.filters.checks import check_bool, check_languages, check_number, check_strings
from webmill.filters.textstats import TextStats, text_stats
from webmill.filters.words import (
    DEFAULT_LANGUAGE,
    NO_SPACE_LANGUAGES,
    TERMINAL_PUNCTUATION,
    normalize_language,
    split_words,
)

#: Wikipedia-style citation markers removed from lines (TFDS ``_CITATION_REGEX`` idea):
#: ``[1]``, ``[12]``, ``[]``, ``[edit]``, ``[citation needed]``.
CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)

#: Lines containing one of these (lower-cased) are removed (TFDS ``_POLICY_SUBSTRINGS``).
POLICY_SUBSTRINGS: tuple[str, ...] = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by whitespace and more
# text, or at a CJK full stop/exclamation/question mark followed by more text. A line holds
# (number of such ends + 1) sentences. This stands in for NLTK punkt's sent_tokenize, which
# C4/datatrove use; it over-counts after abbreviations such as "Dr." (punkt does not).
_SENTENCE_END_RE = re.compile(
    r"[.!?]+[\"'”’)\]]*\s+(?=\S)|[。！？｡]+[”’」』)]*(?=\S)"
)
_ELLIPSIS = ("...", "…")


def _line_hit(needle: str, line_no: int, line: str) -> tuple[None, None, str]:
    """``(value, threshold, detail)`` of a whole-document drop by one line (no statistic)."""
    return None, None, f"line {line_no} contains {needle!r}: {line[:120]!r}"


def count_sentences(line: str) -> int:
    """Number of sentences in one non-empty line (see ``_SENTENCE_END_RE``); ``int >= 1``."""
    return len(_SENTENCE_END_RE.findall(line)) + 1


class C4Filter(BaseFilter):
    """C4's line-level cleaning followed by its document-level drops (Raffel et al. 2020, 2.2).

    ``filter(doc)`` edits ``doc.text`` in place when it keeps the document: lines are stripped,
    citation markers are cut out, failing lines are removed, the kept lines are joined with
    ``"\\n"``. It always sets ``doc.metadata["c4_lines_removed"]`` (``int``: non-blank input lines
    removed; blank lines are dropped silently). A dropped document keeps its original text.

    Line rules, applied in the TFDS order to each stripped line (each switchable):
        1. a word longer than ``max_word_length`` (1,000 chars) → line removed (TFDS
           ``_MAX_WORD_LENGTH``; not in the paper).
        2. ``remove_citations``: ``[1]``, ``[edit]``, ``[citation needed]`` cut from the line.
        3. ``filter_no_terminal_punct``: line not ending in terminal punctuation (or ending in
           an ellipsis) → removed. Paper: "only retained lines that ended in a terminal
           punctuation mark". Off by default, as FineWeb ran it.
        4. fewer than ``min_words_per_line`` words (3) → removed (paper).
        5. ``filter_lorem_ipsum``: "lorem ipsum" → whole document dropped (paper).
        6. ``filter_javascript``: "javascript" → line removed (paper).
        7. ``filter_curly_bracket``: ``{`` → whole document dropped (paper).
        8. ``filter_policy``: one of ``policy_substrings`` → line removed (TFDS code).
    Then: fewer than ``min_num_sentences`` (5) sentences in the kept lines → dropped (paper).

    Reasons:
        ``c4_lorem_ipsum``: a kept line contains "lorem ipsum" (any case).
        ``c4_curly_bracket``: a kept line contains ``{``.
        ``c4_too_few_sentences``: kept lines hold fewer than ``min_num_sentences`` sentences.

    Languages: all rules apply to all languages except ``skip_languages``; for
    Chinese/Japanese/Thai/... (:data:`webmill.filters.words.NO_SPACE_LANGUAGES`) words are
    characters (rules 1 and 4) and ``。！？`` end sentences, so a Chinese line needs 3
    characters, not 3 spaces.

    Sentences are counted with a regex splitter (punctuation + whitespace), not NLTK punkt.

    What decided a drop (``doc.metadata``, :func:`webmill.filters.base.dropped`):
    ``c4_too_few_sentences`` records the sentence count and ``min_num_sentences`` (``<``);
    ``c4_lorem_ipsum``/``c4_curly_bracket`` record no number, only the line (its number among
    the text's lines, 1-based, and its first 120 characters).

    Args:
        remove_citations: True (TFDS code). filter_no_terminal_punct: False (FineWeb).
        min_num_sentences: 5 (paper). min_words_per_line: 3 (paper).
        max_word_length: 1000 (TFDS code). filter_lorem_ipsum, filter_javascript,
        filter_curly_bracket, filter_policy: True (paper/TFDS). policy_substrings: TFDS list.
        Numeric rules take ``None``/``false`` (or -1, as in datatrove) to turn them off.
        skip_languages: none. default_language: "en".

    Raises:
        UserError: a setting has the wrong type/range (message names the config key).
    """

    name = "c4"
    REASONS: tuple[str, ...] = ("c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences")

    def __init__(
        self,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = False,
        min_num_sentences: int | None = 5,
        min_words_per_line: int | None = 3,
        max_word_length: int | None = 1000,
        filter_lorem_ipsum: bool = True,
        filter_javascript: bool = True,
        filter_curly_bracket: bool = True,
        filter_policy: bool = True,
        policy_substrings=POLICY_SUBSTRINGS,
        skip_languages=(),
        default_language: str = DEFAULT_LANGUAGE,
    ):
        t = self.name

        def num(key, value):
            return None if value == -1 else check_number(t, key, value, integer=True)

        self.remove_citations = check_bool(t, "remove_citations", remove_citations)
        self.filter_no_terminal_punct = check_bool(
            t, "filter_no_terminal_punct", filter_no_terminal_punct
        )
        self.min_num_sentences = num("min_num_sentences", min_num_sentences)
        self.min_words_per_line = num("min_words_per_line", min_words_per_line)
        self.max_word_length = num("max_word_length", max_word_length)
        self.filter_lorem_ipsum = check_bool(t, "filter_lorem_ipsum", filter_lorem_ipsum)
        self.filter_javascript = check_bool(t, "filter_javascript", filter_javascript)
        self.filter_curly_bracket = check_bool(t, "filter_curly_bracket", filter_curly_bracket)
        self.filter_policy = check_bool(t, "filter_policy", filter_policy)
        self.policy_substrings = tuple(
            p.lower() for p in check_strings(t, "policy_substrings", policy_substrings)
        )
        self.skip_languages = check_languages(t, "skip_languages", skip_languages)
        self.default_language = check_strings(t, "default_language", [default_language])[0]
        self.reasons = self.REASONS

    def clean(
        self, text: str, language: str = DEFAULT_LANGUAGE, stats: TextStats | None = None
    ) -> tuple[str, int, str | None]:
        """Apply the line rules and the document rules to one text.

        Args:
            text: the document text (``str``).
            language: ISO code (normalized with :func:`normalize_language`).
            stats: the :class:`TextStats` of ``text`` if already computed (saves a pass).

        Returns:
            ``(new_text, lines_removed, reason)``: the cleaned text (kept lines joined with
            ``"\\n"``), the number of non-blank lines removed (``int``), and ``None`` when the
            document is kept or one of :attr:`REASONS` when it is dropped (``new_text`` is then
            the unchanged input and ``lines_removed`` counts the lines removed before the drop).
        """
        new_text, removed, reason, _ = self._clean(text, language, stats)
        return new_text, removed, reason

    def _clean(self, text: str, language: str, stats: TextStats | None):
        """:meth:`clean` plus what decided a drop: ``(new_text, lines_removed, reason, why)``,
        ``why`` = ``(value, threshold, detail)`` for :func:`webmill.filters.base.dropped`
        (``None`` when kept)."""
        lang = normalize_language(language, self.default_language)
        char_words = lang in NO_SPACE_LANGUAGES
        if stats is None or stats.text is not text:
            stats = TextStats(text, lang)
        # document-level pre-checks: skip per-line work a rule cannot trigger
        lower = text.lower()
        max_len = self.max_word_length
        check_long = max_len is not None and stats.max_word_length > max_len
        check_cite = self.remove_citations and "[" in text
        check_lorem = self.filter_lorem_ipsum and "lorem ipsum" in lower
        check_js = self.filter_javascript and "javascript" in lower
        check_curly = self.filter_curly_bracket and "{" in text
        policies = (
            tuple(p for p in self.policy_substrings if p in lower) if self.filter_policy else ()
        )
        needs_lower = check_lorem or check_js or bool(policies)
        min_words = self.min_words_per_line
        min_sentences = self.min_num_sentences or 0
        end_marks = TERMINAL_PUNCTUATION

        kept: list[str] = []
        removed = 0
        n_sentences = 0
        for i, line in enumerate(text.split("\n"), 1):
            line = line.strip()
            if not line:
                continue
            if check_long and max(map(len, split_words(line, lang)), default=0) > max_len:
                removed += 1
                continue
            if check_cite:
                line = CITATION_RE.sub("", line)
            if self.filter_no_terminal_punct and (
                not line.endswith(end_marks) or line.endswith(_ELLIPSIS)
            ):
                removed += 1
                continue
            if min_words:
                # split at most min_words - 1 times: enough to tell "fewer than min_words"
                n_words = (
                    len(split_words(line, lang))
                    if char_words
                    else len(line.split(None, min_words - 1))
                )
                if n_words < min_words:
                    removed += 1
                    continue
            if needs_lower:
                line_lower = line.lower()
                if check_lorem and "lorem ipsum" in line_lower:
                    return text, removed, "c4_lorem_ipsum", _line_hit("lorem ipsum", i, line)
                if check_js and "javascript" in line_lower:
                    removed += 1
                    continue
            if check_curly and "{" in line:
                return text, removed, "c4_curly_bracket", _line_hit("{", i, line)
            if policies and any(p in line_lower for p in policies):
                removed += 1
                continue
            if n_sentences < min_sentences:  # counting further cannot change the outcome
                n_sentences += count_sentences(line)
            kept.append(line)

        if self.min_num_sentences is not None and n_sentences < self.min_num_sentences:
            # every kept line was counted (counting stops only once min_sentences is reached)
            return text, removed, "c4_too_few_sentences", (
                n_sentences, self.min_num_sentences,
                f"sentences {n_sentences} < {self.min_num_sentences} "
                f"({len(kept)} lines kept, {removed} removed)")
        return "\n".join(kept), removed, None, None

    def filter(self, doc: Document) -> FilterResult:
        """Clean ``doc.text`` in place and keep it, or drop it (text left unchanged).

        Sets ``doc.metadata["c4_lines_removed"]`` (``int``) in both cases.
        """
        lang = normalize_language((doc.metadata or {}).get("language"), self.default_language)
        if lang in self.skip_languages:
            doc.metadata["c4_lines_removed"] = 0
            return True, None
        stats = text_stats(doc, self.default_language)
        new_text, removed, reason, why = self._clean(doc.text, lang, stats)
        doc.metadata["c4_lines_removed"] = removed
        if reason is not None:
            return dropped(doc, reason, *why)
        if new_text != doc.text:  # keep the same object when unchanged (shared stats cache)
            doc.text = new_text
        return True, None
