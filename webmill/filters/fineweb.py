"""FineWeb's own heuristic rules (Penedo et al. 2024, "The FineWeb Datasets: Decanting the Web
for the Finest Text Data at Scale", arXiv:2406.17557, section 3.3 "Developing additional
heuristic filters"), as run by datatrove's ``FineWebQualityFilter`` (default arguments, used in
datatrove's ``examples/fineweb.py``), and :func:`apply_filters`, which runs a chain of rules on
one document. The chain itself (Gopher repetition → Gopher quality → C4 → FineWeb, the order of
``examples/fineweb.py``) is built from the config by the stage registry,
:func:`webmill.curate.stages.build_rules`.

Pure Python: no Ray, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat

from webmill.errors import UserError
from webmill.filters.base import BaseFilter, Document, FilterResult, dropped, failed
from webmill.filters.checks import check_bool, check_languages, check_number, check_strings
from webmill.filters.repetition import duplicate_count_and_chars
from webmill.filters.textstats import text_stats
from webmill.filters.words import DEFAULT_LANGUAGE, TERMINAL_PUNCTUATION


class FineWebQualityFilter(BaseFilter):
    """Drop list-like, punctuation-poor and line-duplicated documents (FineWeb, section 3.3).

    Lines are ``text.split("\\n")`` (blank lines included, not stripped, as in datatrove).

    Reasons (checked in this order, first hit wins):
        ``fineweb_line_punct_ratio``: lines ending in one of ``stop_chars`` / lines
            <= ``line_punct_thr`` (0.12). With ``line_punct_exclude_zero`` a ratio of exactly
            0 is not dropped.
        ``fineweb_short_line_ratio``: lines of at most ``short_line_length`` (30) characters /
            lines >= ``short_line_thr`` (0.67).
        ``fineweb_char_dup_ratio``: characters in repeated non-blank lines (every occurrence
            after the first) / characters other than ``"\\n"`` >= ``char_duplicates_ratio``
            (0.01).
        ``fineweb_newline_ratio``: newlines / words > ``new_line_ratio`` (0.3); words as in
            :func:`webmill.filters.words.split_words` (datatrove calls this ``list_ratio``).
    A threshold of ``None``/``false`` turns its rule off. A drop records the ratio, its
    threshold and ``"<ratio> <value> <op> <threshold>"`` (:func:`webmill.filters.base.failed`).

    Languages: all four rules apply to every language except ``skip_languages``.
    ``stop_chars`` adds the full-width/other-script sentence enders (``。！？``, ``।``, ``؟``,
    curly quotes ...) to FineWeb's ASCII set, which would otherwise drop every Chinese page;
    for Chinese/Japanese/Thai... words are characters, which lowers their newline ratio.

    Args (defaults: datatrove ``FineWebQualityFilter`` defaults, which produced FineWeb):
        line_punct_thr: 0.12 (paper 3.3). line_punct_exclude_zero: False (datatrove).
        short_line_thr: 0.67 and short_line_length: 30 (paper 3.3).
        char_duplicates_ratio: 0.01 (datatrove default used for the release; the paper's
            text gives 0.1 for this rule).
        new_line_ratio: 0.3 (paper 3.3: "list-like" documents).
        stop_chars: :data:`webmill.filters.words.TERMINAL_PUNCTUATION`.
        skip_languages: none. default_language: "en".

    Raises:
        UserError: a threshold has the wrong type/range (message names the config key).
    """

    name = "fineweb"
    REASONS: tuple[str, ...] = (
        "fineweb_line_punct_ratio",
        "fineweb_short_line_ratio",
        "fineweb_char_dup_ratio",
        "fineweb_newline_ratio",
    )

    def __init__(
        self,
        line_punct_thr: float | None = 0.12,
        line_punct_exclude_zero: bool = False,
        short_line_thr: float | None = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float | None = 0.01,
        new_line_ratio: float | None = 0.3,
        stop_chars=TERMINAL_PUNCTUATION,
        skip_languages=(),
        default_language: str = DEFAULT_LANGUAGE,
    ):
        t = self.name
        self.line_punct_thr = check_number(t, "line_punct_thr", line_punct_thr, hi=1)
        self.line_punct_exclude_zero = check_bool(
            t, "line_punct_exclude_zero", line_punct_exclude_zero
        )
        self.short_line_thr = check_number(t, "short_line_thr", short_line_thr, hi=1)
        self.short_line_length = check_number(
            t, "short_line_length", short_line_length, integer=True, allow_disable=False
        )
        self.char_duplicates_ratio = check_number(
            t, "char_duplicates_ratio", char_duplicates_ratio, hi=1
        )
        self.new_line_ratio = check_number(t, "new_line_ratio", new_line_ratio)
        self.stop_chars = check_strings(t, "stop_chars", stop_chars)
        if not self.stop_chars and self.line_punct_thr is not None:
            raise UserError(
                f"[filters.{t}] stop_chars must not be empty while line_punct_thr is set"
            )
        self.skip_languages = check_languages(t, "skip_languages", skip_languages)
        self.default_language = check_strings(t, "default_language", [default_language])[0]
        self.reasons = self.REASONS

    def filter(self, doc: Document) -> FilterResult:
        """Keep or drop ``doc`` (see the class docstring for the reasons). Does not modify it."""
        s = text_stats(doc, self.default_language)
        if s.language in self.skip_languages:
            return True, None
        lines = s.lines
        n_lines = len(lines)  # >= 1: "".split("\n") == [""]

        if self.line_punct_thr is not None:
            ratio = sum(map(str.endswith, lines, repeat(self.stop_chars))) / n_lines
            if ratio <= self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
                return failed(doc, "fineweb_line_punct_ratio", "line_punct_ratio", ratio, "<=",
                              self.line_punct_thr)

        if self.short_line_thr is not None:
            n_short = sum(map(self.short_line_length.__ge__, map(len, lines)))
            if n_short / n_lines >= self.short_line_thr:
                return failed(doc, "fineweb_short_line_ratio", "short_line_ratio",
                              n_short / n_lines, ">=", self.short_line_thr)

        text = s.text
        if self.char_duplicates_ratio is not None:
            n_newlines = n_lines - 1
            chars = len(text) - n_newlines
            _, dup_chars = duplicate_count_and_chars(list(filter(str.strip, lines)))
            if chars and dup_chars / chars >= self.char_duplicates_ratio:
                return failed(doc, "fineweb_char_dup_ratio", "char_dup_ratio", dup_chars / chars,
                              ">=", self.char_duplicates_ratio)

        if self.new_line_ratio is not None:
            n_newlines = n_lines - 1
            n_words = s.n_words
            if n_newlines and not n_words:  # the ratio is infinite: no number to record
                return dropped(doc, "fineweb_newline_ratio", None, self.new_line_ratio,
                               f"newline_ratio: {n_newlines} newlines, 0 words")
            if n_newlines and n_newlines / n_words > self.new_line_ratio:
                return failed(doc, "fineweb_newline_ratio", "newline_ratio",
                              n_newlines / n_words, ">", self.new_line_ratio)
        return True, None


def apply_filters(filters: Iterable[BaseFilter], doc: Document) -> FilterResult:
    """Run ``filters`` in order on ``doc`` until one drops it.

    Returns:
        ``(True, None)`` when every filter keeps ``doc`` (modifiers such as C4 may have
        edited ``doc.text``), else ``(False, reason)`` of the first filter that dropped it.
    """
    for f in filters:
        keep, reason = f.filter(doc)
        if not keep:
            return False, reason
    return True, None
