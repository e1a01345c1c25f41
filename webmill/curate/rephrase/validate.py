"""Cleaning and validation of model outputs in the rephrasing stage.

:func:`clean_output` removes the chatter small models add around an answer (preambles, echoed
labels and template separators, closing offers, an unfinished end); :func:`validate_output`
accepts a cleaned output or names why it is rejected (empty, truncated, length ratio, copy,
copied prompt example, repetition, language, unsupported content). Thresholds and their sources
are documented on each function and in ``docs/rephrase.md``.
"""

from __future__ import annotations

import re
from typing import Optional

from webmill.curate.rephrase.prompts import LENGTH_BOUNDS, example_texts, output_labels

_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|absolutely|great|alright|here(?:'s| is| are)|below (?:is|are)"
    r"|the following (?:is|are)|i (?:have|'ve) (?:rewritten|rephrased))\b", re.I)
_CLOSER = re.compile(r"^\s*(?:i hope|hope this|let me know|feel free|if you (?:have|need|want|would)|is there anything"
                     r"|do you want|would you like)\b", re.I)
_TEMPLATE_CUT = re.compile(r"(?:^|\n)\s*(?:={3,}|web text:|source text:|document:)", re.I)
_FENCE = re.compile(r"^```[\w-]*\s*\n?|\n?```\s*$")


def _norm_label(line: str) -> str:
    return re.sub(r"[\s#*_:]+", " ", line).strip().lower()


_LABELS = {_norm_label(x) for x in output_labels()} | {
    "rewritten text", "rephrased text", "paraphrase", "answer", "output", "summary", "rewrite"}


def clean_output(text: str, truncated: bool = False) -> str:
    """Clean one raw model output.

    Cuts at an echoed template separator (``=====``, ``Web text:``, ``Document:``), strips code
    fences, drops a leading chatty preamble line ("Sure, here is the rewritten text:") and a
    leading echoed output label ("Encyclopedia version:"), drops trailing chatty lines ("Let me
    know if..."), strips trailing spaces per line and collapses runs of blank lines. With
    ``truncated`` (the generation hit ``max_tokens``) the unfinished end is dropped too: the
    last paragraph when there are several (question–answer pairs), else the last line when it
    has no sentence end, else the text after the last sentence end.

    Args:
        text: raw generated text (str).
        truncated: the output was cut by the token limit (bool).

    Returns:
        The cleaned text (str, possibly empty).
    """
    m = _TEMPLATE_CUT.search(text)
    if m:
        text = text[: m.start()]
    text = _FENCE.sub("", text.strip()).strip()
    lines = [ln.rstrip() for ln in text.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    changed = True
    while changed and lines:
        changed = False
        first = lines[0].strip()
        if _norm_label(first) in _LABELS:
            lines.pop(0)
            changed = True
        elif _PREAMBLE.match(first) and len(lines) > 1 and (first.endswith(":") or len(first.split()) <= 12):
            lines.pop(0)
            changed = True
        while lines and not lines[0].strip():
            lines.pop(0)
    if truncated and any(not ln.strip() for ln in lines):
        # several paragraphs (e.g. question-answer pairs): the last one is unfinished
        while lines and lines[-1].strip():
            lines.pop()
    elif truncated and lines:
        last = lines[-1]
        ends = [m.end() for m in re.finditer(r"[.!?。！？](?=\s|$)", last)]
        if ends:
            lines[-1] = last[: ends[-1]]
        else:
            lines.pop()
    while lines and (not lines[-1].strip() or _CLOSER.match(lines[-1])):
        lines.pop()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_REPETITION = None


def _repetition_filter():
    global _REPETITION
    if _REPETITION is None:
        from webmill.filters.gopher import GopherRepetitionFilter

        # Gopher's duplicate line/paragraph rules plus long repeated n-grams (degenerate loops of
        # small models); the short top-n-gram rules are off (QA labels repeat legitimately).
        _REPETITION = GopherRepetitionFilter(top_n_grams=(), dup_n_grams=((10, 0.2),))
    return _REPETITION


_STOPWORDS = frozenset(
    "about above after again also among another because been before being below between both "
    "could does doing down during each either even every from further have having here into itself "
    "just many more most much must neither only other over same should some such than that their "
    "them then there these they this those through under until upon very were what when where "
    "which while whom whose will with within without would your yours question answer answers "
    "questions".split())
_WORD = re.compile(r"\w+")


def _content_words(s: str) -> list[str]:
    return [w for w in _WORD.findall(s.lower()) if (len(w) >= 4 or w.isdigit()) and w not in _STOPWORDS]


def support(source: str, output: str) -> float:
    """Share of the output's content words that occur in the source (float in [0, 1]).

    A cheap lexical grounding score: content words are ``\\w+`` tokens of ≥ 4 characters (or
    numbers) outside a small English stop list; a word counts as supported when the source has
    a word with the same first 5 characters (a crude stem: "relocated" ≠ "moved", but
    "cultivars"/"cultivar" match), numbers must match exactly. Paraphrases written by people
    score 0.6–0.9 on the prompt examples; a small model's invented continuations score lower.
    Returns 1.0 for an output without content words.
    """
    out = _content_words(output)
    if not out:
        return 1.0
    src = set(_content_words(source))
    stems = {w[:5] for w in src if not w.isdigit()}
    ok = sum(1 for w in out if ((w in src) if w.isdigit() else (w[:5] in stems)))
    return ok / len(out)


def _canon(s: str) -> str:
    return re.sub(r"\W+", " ", s.lower()).strip()


_LEAK_N = 6


def _ngrams(s: str, n: int = _LEAK_N) -> set[tuple[str, ...]]:
    w = _canon(s).split()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


_EXAMPLE_NGRAMS: dict[str, set] = {}


def leaks_example(source: str, output: str, style: str) -> bool:
    """True when ``output`` repeats a 6-word sequence of the prompt's worked example for
    ``style`` (web text or desired output) that is not also in ``source``: the model copied the
    example instead of rewriting the document (a common failure of small base models)."""
    if style not in _EXAMPLE_NGRAMS:
        _EXAMPLE_NGRAMS[style] = set().union(*(_ngrams(t) for t in example_texts(style)))
    hits = _ngrams(output) & _EXAMPLE_NGRAMS[style]
    return bool(hits - _ngrams(source))


def similarity(source: str, output: str) -> float:
    """Word-sequence similarity of two texts (float in [0, 1]; difflib's ratio, lowercased words)."""
    import difflib

    a, b = _canon(source).split(), _canon(output).split()
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def validate_output(source: str, output: str, style: str, *, finish_reason: str = "stop",
                    expected_language: Optional[str] = None, lid=None,
                    bounds: Optional[tuple[float, float]] = None, allow_truncated: bool = False,
                    min_support: float = 0.0, max_similarity: float = 0.9) -> Optional[str]:
    """Check one cleaned output against its source segment.

    Args:
        source: the input segment (str).
        output: the cleaned output (str, from :func:`clean_output`).
        style: its style (one of :data:`~webmill.curate.rephrase.prompts.STYLES`).
        finish_reason: the generation's finish reason (``"length"`` = cut by max_tokens).
        expected_language: language code the output must have (fastText label, e.g. ``"en"``);
            None → no language check.
        lid: object with ``predict(text) -> (lang, score)``
            (:class:`webmill.filters.language.LanguageFilter`); required with
            ``expected_language``.
        bounds: (min, max) of ``len(output) / len(source)`` in characters; default the style's
            :data:`~webmill.curate.rephrase.prompts.LENGTH_BOUNDS`.
        allow_truncated: accept ``finish_reason == "length"``.
        min_support: least :func:`support` (share of the output's content words found in the
            source); 0 turns the check off.
        max_similarity: most :func:`similarity` to the source; above it the output is a
            (near) copy — small models often echo their input (1.0 turns the check off).

    Returns:
        None when valid, else the reason (str): ``empty``, ``truncated``, ``preamble``,
        ``too_short``, ``too_long``, ``copy``, ``example_leak`` (:func:`leaks_example`),
        ``repetitive``, ``language_mismatch``, ``unsupported``.
    """
    if not output.strip():
        return "empty"
    if finish_reason == "length" and not allow_truncated:
        return "truncated"
    if _PREAMBLE.match(output):
        return "preamble"
    lo, hi = bounds or LENGTH_BOUNDS[style]
    ratio = len(output) / max(1, len(source.strip()))
    if ratio < lo:
        return "too_short"
    if ratio > hi:
        return "too_long"
    if max_similarity < 1.0 and similarity(source, output) > max_similarity:
        return "copy"
    if leaks_example(source, output, style):
        return "example_leak"
    from webmill.filters.base import Document

    if not _repetition_filter().filter(Document(text=output, metadata={"language": expected_language or "en"}))[0]:
        return "repetitive"
    if expected_language and lid is not None:
        lang, _ = lid.predict(output)
        if lang != expected_language:
            return "language_mismatch"
    if min_support and support(source, output) < min_support:
        return "unsupported"
    return None
