"""LLM rephrasing of documents: ``OUT/final`` → ``OUT/rephrased`` (``curate rephrase``).

Synthetic rephrasings of web text after "Rephrasing the Web" (Maini et al. 2024,
arXiv:2401.16380: a Wikipedia-style paraphrase of noisy web text) and Nemotron-CC (Su et al.
2024, arXiv:2412.02595, section 2.3: low-quality documents are paraphrased in Wikipedia style,
high-quality ones get diverse QA pairs, a distilled version, extracted knowledge and a knowledge
list). Off by default in ``curate run``; see ``docs/rephrase.md``.

Steps, per input file:

1. **Routing** (:func:`route`): a deterministic hash of the document ``id`` decides whether the
   document is sampled (``fraction``) and which style it gets. With a ``quality_bucket`` column
   (int32, 0 = lowest of 20), buckets ``< bucket_threshold`` get ``low_styles`` (default
   ``wikipedia``) and the rest one of ``high_styles`` (default the four Nemotron-CC styles), or
   all of them with ``styles_per_document="all"``. Without the column: ``default_style``.
2. **Segmentation** (:func:`split_segments`): documents longer than ``max_segment_tokens``
   (tiktoken ``cl100k_base`` tokens) are split at paragraph boundaries (then sentences, then
   tokens for a single overlong sentence); each segment is one request.
3. **Generation** through a backend (:mod:`webmill.curate.llm`) on a bounded thread pool; every
   answer is stored in a persistent sqlite request cache (:class:`RequestCache`) keyed by model,
   style, prompt version, api and the segment's sha256, so an interrupted run resumes without
   asking again.
4. **Cleaning and validation** (:func:`clean_output`, :func:`validate_output`): preamble and
   template echoes removed; empty, truncated, too short/long, copied, repetitive or
   wrong-language outputs are rejected (reason counted).
5. **Assembly**: the valid segment outputs of a document become one synthetic document (a new
   row: ``synthetic_style``, ``parent_id``, ``synthetic_model`` set; the other columns copied
   from the parent, ``id`` derived from parent id and style). Originals are kept
   (``keep_originals=True``) or replaced by their synthetic versions. A document whose requests
   failed (server down, errors after retries) passes through unchanged and is counted in
   ``rephrase_failed``: never a crash, never a silent loss.

Statistics go to ``OUT/stats/rephrase.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sqlite3
import threading
import time
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq
import typer

from webmill.curate.llm import Generation, LLMRequestError
from webmill.curate.prompts import LENGTH_BOUNDS, PROMPT_VERSION, STYLES, build_prompt, example_texts, output_labels
from webmill.errors import UserError

SYNTHETIC_COLUMNS = ("synthetic_style", "parent_id", "synthetic_model")
SEGMENT_TOKENIZER = "cl100k_base"


# --------------------------------------------------------------------------------------------
# configuration

@dataclass
class RephraseConfig:
    """All settings of the rephrasing stage (the keys of a ``[rephrase]`` config table).

    Attributes:
        backend: ``"llama_cpp"`` (in-process GGUF, default the embedded Gemma 3 270M) or
            ``"openai"`` (any OpenAI-compatible server: vLLM, SGLang, llama.cpp, hosted APIs).
        base_url: server URL with ``/v1`` (openai backend).
        model: served model name (openai backend; required there). Ignored by llama_cpp, whose
            model name is the GGUF file name.
        api: ``"completions"`` (base models: few-shot prompts) or ``"chat"`` (instruct models).
        api_key_env: environment variable holding the API key (unset → ``"EMPTY"`` is sent).
        model_path: GGUF file for llama_cpp; empty → the embedded Gemma 3 270M.
        n_threads: llama_cpp CPU threads (1 on shared machines, see packages.md).
        n_ctx: llama_cpp context window (model tokens; prompt + max_tokens must fit).
        low_styles / high_styles: styles for ``quality_bucket < bucket_threshold`` / ``>=``.
        bucket_threshold: first "high" bucket (int; 10 of 20 buckets).
        default_style: style when the table has no ``quality_bucket`` (or it is null).
        styles_per_document: ``"one"`` (one style per document, by id hash) or ``"all"``.
        fraction: fraction of documents rephrased (float in [0, 1], by id hash).
        seed: seed of the sampling/style hashes (int).
        max_segment_tokens: largest segment in cl100k_base tokens (int ≥ 16).
        concurrency: requests in flight (int ≥ 1; llama_cpp runs one at a time anyway).
        timeout_s: per-request timeout (seconds).
        max_retries: retries per request after the first try (exponential backoff).
        max_consecutive_failures: after this many failed requests in a row, stop sending
            (the server is down); the remaining documents pass through as failed (0 = never stop).
        temperature, top_p: sampling parameters.
        max_tokens: most generated tokens per request (the model's tokens).
        cache_path: sqlite request cache; empty → ``OUT/cache/rephrase.sqlite``.
        keep_originals: keep the original next to its synthetic versions (False → replaced;
            originals without a synthetic version are always kept).
        min_length_ratio / max_length_ratio: bounds of output/input characters; 0 → the
            style's default (:data:`webmill.curate.prompts.LENGTH_BOUNDS`).
        allow_truncated: accept outputs cut by ``max_tokens`` in every style, minus their
            unfinished end (see :func:`clean_output`); otherwise they are rejected as
            ``truncated`` except in ``truncated_styles``.
        truncated_styles: styles whose answers are lists of independent items (QA pairs,
            facts), where a cut answer minus its last item is still whole: accepted when cut.
        check_language: reject outputs whose fastText language differs from the document's.
        min_support: least share of the output's content words found in its source segment
            (:func:`support`, a lexical guard against invented content; 0 = off).
        max_similarity: outputs more similar to their input than this (:func:`similarity`,
            word-level difflib ratio) are rejected as ``copy`` (1.0 = off).
        min_valid_fraction: fraction of a document's segments that must pass validation for
            the synthetic document to be written (invalid segments are left out).
    """

    backend: str = "llama_cpp"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api: str = "completions"
    api_key_env: str = "OPENAI_API_KEY"
    model_path: str = ""
    n_threads: int = 1
    n_ctx: int = 2048
    low_styles: tuple = ("wikipedia",)
    high_styles: tuple = ("qa", "distill", "extract_knowledge", "knowledge_list")
    bucket_threshold: int = 10
    default_style: str = "wikipedia"
    styles_per_document: str = "one"
    fraction: float = 1.0
    seed: int = 0
    max_segment_tokens: int = 512
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 3
    max_consecutive_failures: int = 20
    temperature: float = 0.5
    top_p: float = 0.9
    max_tokens: int = 768
    cache_path: str = ""
    keep_originals: bool = True
    min_length_ratio: float = 0.0
    max_length_ratio: float = 0.0
    allow_truncated: bool = False
    truncated_styles: tuple = ("qa", "knowledge_list")
    check_language: bool = True
    min_support: float = 0.5
    max_similarity: float = 0.9
    min_valid_fraction: float = 0.5

    def __post_init__(self):
        def bad(key, msg):
            raise UserError(f"config [rephrase] {key}: {msg}")

        if self.backend not in ("openai", "llama_cpp"):
            bad("backend", f"must be 'openai' or 'llama_cpp', got {self.backend!r}")
        if self.api not in ("completions", "chat"):
            bad("api", f"must be 'completions' (base models) or 'chat' (instruct models), got {self.api!r}")
        if self.styles_per_document not in ("one", "all"):
            bad("styles_per_document", f"must be 'one' or 'all', got {self.styles_per_document!r}")
        for key in ("low_styles", "high_styles", "truncated_styles"):
            v = getattr(self, key)
            v = (v,) if isinstance(v, str) else tuple(v)
            setattr(self, key, v)
            for s in v:
                if s not in STYLES:
                    bad(key, f"unknown style {s!r}; known: {', '.join(STYLES)}")
        if self.default_style not in STYLES:
            bad("default_style", f"unknown style {self.default_style!r}; known: {', '.join(STYLES)}")
        if not 0.0 <= self.fraction <= 1.0:
            bad("fraction", f"must be in [0, 1], got {self.fraction}")
        if self.max_segment_tokens < 16:
            bad("max_segment_tokens", f"must be >= 16, got {self.max_segment_tokens}")
        for key in ("concurrency", "n_threads", "max_tokens", "n_ctx"):
            if getattr(self, key) < 1:
                bad(key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("max_retries", "max_consecutive_failures"):
            if getattr(self, key) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)}")
        if self.timeout_s <= 0:
            bad("timeout_s", f"must be > 0, got {self.timeout_s}")
        if not 0.0 <= self.max_similarity <= 1.0:
            bad("max_similarity", f"must be in [0, 1], got {self.max_similarity}")
        if not 0.0 <= self.min_support <= 1.0:
            bad("min_support", f"must be in [0, 1], got {self.min_support}")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            bad("min_valid_fraction", f"must be in [0, 1], got {self.min_valid_fraction}")
        if self.max_length_ratio and self.max_length_ratio < self.min_length_ratio:
            bad("max_length_ratio", "must be >= min_length_ratio")

    @classmethod
    def from_dict(cls, table: dict | None) -> "RephraseConfig":
        """Build from a ``[rephrase]`` table (dict; ``enabled`` is ignored).

        Raises:
            UserError: unknown key (lists the known ones) or a value of the wrong type.
        """
        table = dict(table or {})
        table.pop("enabled", None)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in table.items():
            if key not in fields:
                raise UserError(f"unknown config key [rephrase] {key!r}; known keys: enabled, {', '.join(fields)}")
            default = fields[key].default
            ok = (isinstance(value, bool) if isinstance(default, bool)
                  else isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(default, float)
                  else isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int)
                  else isinstance(value, (list, tuple, str)) if isinstance(default, tuple)
                  else isinstance(value, str))
            if not ok:
                raise UserError(f"config [rephrase] {key} must be {type(default).__name__}, got {value!r}")
        return cls(**table)

    @classmethod
    def from_config(cls, cfg: dict) -> "RephraseConfig":
        """From a whole pipeline config (uses its ``rephrase`` table; absent → defaults)."""
        return cls.from_dict(cfg.get("rephrase") if isinstance(cfg, dict) else None)

    def length_bounds(self, style: str) -> tuple[float, float]:
        """(min, max) output/input character ratio for ``style``."""
        lo, hi = LENGTH_BOUNDS[style]
        return (self.min_length_ratio or lo, self.max_length_ratio or hi)


# --------------------------------------------------------------------------------------------
# routing

def _unit_hash(seed: int, purpose: str, doc_id: str) -> float:
    """Uniform float in [0, 1) from blake2b(seed, purpose, id): stable across runs and machines."""
    h = hashlib.blake2b(f"{seed}\0{purpose}\0{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def route(doc_id: str, quality_bucket: Optional[int], cfg: RephraseConfig) -> list[str]:
    """Styles to generate for one document (empty list: not sampled).

    Args:
        doc_id: the document's ``id`` (str); all decisions are hashes of it and ``cfg.seed``.
        quality_bucket: its ``quality_bucket`` (int, 0 = lowest) or None (column absent/null).
        cfg: the stage config (``fraction``, ``bucket_threshold``, styles).

    Returns:
        ``[]`` when the document is not in the sampled ``fraction``; else ``[default_style]``
        without a bucket, or the low/high styles (one chosen by hash, or all).
    """
    if _unit_hash(cfg.seed, "sample", doc_id) >= cfg.fraction:
        return []
    if quality_bucket is None:
        return [cfg.default_style]
    styles = list(cfg.low_styles if int(quality_bucket) < cfg.bucket_threshold else cfg.high_styles)
    if not styles or cfg.styles_per_document == "all":
        return styles
    return [styles[int(_unit_hash(cfg.seed, "style", doc_id) * len(styles))]]


# --------------------------------------------------------------------------------------------
# segmentation

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|(?<=[。！？；])")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _encoder():
    from webmill.tokenize.encoding import get_encoding

    return get_encoding(SEGMENT_TOKENIZER)


def _ntok(enc, s: str) -> int:
    return len(enc.encode_ordinary(s))


def _hard_split(s: str, max_tokens: int, enc) -> list[str]:
    """Split ``s`` at token boundaries into pieces of at most ``max_tokens`` tokens."""
    toks = enc.encode_ordinary(s)
    window = max_tokens
    while True:
        _, offsets = enc.decode_with_offsets(toks)
        cuts = [offsets[i] for i in range(window, len(toks), window)]
        bounds = [0, *cuts, len(s)]
        pieces = [s[a:b] for a, b in zip(bounds, bounds[1:]) if s[a:b].strip()]
        if all(_ntok(enc, p) <= max_tokens for p in pieces) or window <= 1:
            return pieces  # raw slices: "".join(pieces) == s up to blank pieces
        window = max(1, int(window * 0.9))


def _pack(pieces: list[tuple[str, int]], sep: str, max_tokens: int, enc) -> list[str]:
    sep_n = _ntok(enc, sep)
    out, cur, cur_n = [], [], 0
    for p, n in pieces:
        add = n + (sep_n if cur else 0)
        if cur and cur_n + add > max_tokens:
            out.append(sep.join(cur))
            cur, cur_n = [p], n
        else:
            cur.append(p)
            cur_n += add
    if cur:
        out.append(sep.join(cur))
    return out


def _split_paragraph(p: str, max_tokens: int, enc) -> list[tuple[str, int]]:
    # sentence pieces keep their trailing whitespace, so joining them with "" restores the text
    # (no spaces are invented between CJK sentences)
    cuts = [m.end() for m in _SENTENCE_END.finditer(p) if 0 < m.end() < len(p)]
    bounds = [0, *cuts, len(p)]
    pieces: list[tuple[str, int]] = []
    for a, b in zip(bounds, bounds[1:]):
        s = p[a:b]
        if not s.strip():
            continue
        n = _ntok(enc, s)
        if n <= max_tokens:
            pieces.append((s, n))
        else:
            pieces.extend((x, _ntok(enc, x)) for x in _hard_split(s, max_tokens, enc))
    packed = [x.strip() for x in _pack(pieces, "", max_tokens, enc)]
    return [(x, _ntok(enc, x)) for x in packed if x]


def split_segments(text: str, max_tokens: int, enc=None) -> list[str]:
    """Split ``text`` into segments of at most ``max_tokens`` tokens at paragraph boundaries.

    Paragraphs are separated by blank lines when the text has any, else by single newlines
    (trafilatura/WET text puts one paragraph per line). Consecutive paragraphs are packed
    greedily into a segment while the segment stays within the limit; a paragraph over the
    limit is split at sentence ends, and a sentence over the limit at token boundaries.
    Every returned segment, re-encoded, has at most ``max_tokens`` tokens.

    Args:
        text: document text (str).
        max_tokens: limit in tokens of ``enc`` (int ≥ 1).
        enc: a :class:`tiktoken.Encoding`; default ``cl100k_base``
            (``webmill.tokenize.encoding.get_encoding``).

    Returns:
        List of non-empty str segments in document order (``[]`` for blank text); joining them
        with the paragraph separator gives the text up to whitespace.

    Raises:
        ValueError: ``max_tokens < 1``.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    enc = enc or _encoder()
    text = text.strip()
    if not text:
        return []
    if _BLANK_LINE.search(text):
        sep, paras = "\n\n", _BLANK_LINE.split(text)
    else:
        sep, paras = "\n", text.split("\n")
    pieces: list[tuple[str, int]] = []
    for p in paras:
        p = p.strip()
        if not p:
            continue
        n = _ntok(enc, p)
        pieces.extend([(p, n)] if n <= max_tokens else _split_paragraph(p, max_tokens, enc))
    out: list[str] = []
    for seg in _pack(pieces, sep, max_tokens, enc):
        out.extend([seg] if _ntok(enc, seg) <= max_tokens else
                   [x.strip() for x in _hard_split(seg, max_tokens, enc) if x.strip()])
    return out


# --------------------------------------------------------------------------------------------
# cleaning and validation

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
        style: its style (one of :data:`~webmill.curate.prompts.STYLES`).
        finish_reason: the generation's finish reason (``"length"`` = cut by max_tokens).
        expected_language: language code the output must have (fastText label, e.g. ``"en"``);
            None → no language check.
        lid: object with ``predict(text) -> (lang, score)``
            (:class:`webmill.filters.language.LanguageFilter`); required with
            ``expected_language``.
        bounds: (min, max) of ``len(output) / len(source)`` in characters; default the style's
            :data:`~webmill.curate.prompts.LENGTH_BOUNDS`.
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


# --------------------------------------------------------------------------------------------
# request cache

def cache_key(model: str, style: str, prompt_version: str, api: str, text: str) -> str:
    """Cache key (64 hex chars): sha256 over model, style, prompt version, api and sha256(text)."""
    text_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return hashlib.sha256("\0".join((model, style, prompt_version, api, text_hash)).encode()).hexdigest()


class RequestCache:
    """Persistent cache of generations (sqlite, WAL journal): an interrupted run resumes.

    One row per successful request (raw, uncleaned output; validation is re-done on reuse, so
    changing validation settings needs no new requests). Failed requests are not cached. Safe
    for the stage's threads (one connection behind a lock) and for several processes (sqlite
    locking, ``busy_timeout`` 30 s).

    Args:
        path: the database file (created with its directory).

    Raises:
        UserError: the file cannot be opened or is not a cache database.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, model TEXT, style TEXT, "
                "prompt_version TEXT, api TEXT, text_sha256 TEXT, output TEXT, completion_tokens INTEGER, "
                "finish_reason TEXT, created REAL)")
        except (sqlite3.Error, OSError) as e:
            raise UserError(f"request cache {self.path}: {e}; delete the file (only cached answers are lost) "
                            "or set rephrase.cache_path elsewhere") from e

    def get(self, key: str) -> Optional[Generation]:
        """The cached :class:`~webmill.curate.llm.Generation` for ``key``, or None."""
        with self._lock:
            row = self.conn.execute("SELECT output, completion_tokens, finish_reason FROM generations WHERE key=?",
                                    (key,)).fetchone()
        return Generation(row[0], int(row[1]), row[2]) if row else None

    def put(self, key: str, gen: Generation, *, model: str = "", style: str = "", api: str = "",
            text: str = "", prompt_version: str = PROMPT_VERSION) -> None:
        """Store ``gen`` under ``key`` (committed at once; replaces an existing row)."""
        sha = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() if text else ""
        with self._lock:
            self.conn.execute("INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?)",
                              (key, model, style, prompt_version, api, sha, gen.text, gen.completion_tokens,
                               gen.finish_reason, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self.conn.close()


# --------------------------------------------------------------------------------------------
# the stage

def make_backend(cfg: RephraseConfig):
    """The backend object for ``cfg.backend`` (:mod:`webmill.curate.llm`).

    Raises:
        UserError: missing model name (openai), llama-cpp-python not installed, bad GGUF.
    """
    from webmill.curate import llm

    if cfg.backend == "openai":
        return llm.OpenAIBackend(cfg.base_url, cfg.model, api=cfg.api, api_key_env=cfg.api_key_env,
                                 timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, temperature=cfg.temperature,
                                 top_p=cfg.top_p, max_tokens=cfg.max_tokens)
    return llm.LlamaCppBackend(cfg.model_path, api=cfg.api, n_threads=cfg.n_threads, n_ctx=cfg.n_ctx,
                               temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                               seed=cfg.seed)


@dataclass
class _Outcome:
    gen: Optional[Generation] = None
    cached: bool = False
    error: str = ""


@dataclass
class _Stats:
    c: Counter = field(default_factory=Counter)
    by_style: dict = field(default_factory=dict)
    rejected: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    def style(self, style: str, what: str, n: int = 1) -> None:
        self.by_style.setdefault(style, Counter())[what] += n


def synthetic_id(parent_id: str, style: str) -> str:
    """Id of a synthetic document: sha1 hex (24 chars) of parent id and style (stable)."""
    return hashlib.sha1(f"{parent_id}\0{style}\0rephrase".encode("utf-8", "surrogatepass")).hexdigest()[:24]


class Rephraser:
    """Rephrases document tables: routing, segmentation, cached generation, validation, assembly.

    Args:
        cfg: :class:`RephraseConfig`.
        cache_path: the sqlite request cache file.
        backend: a backend object (``name``, ``generate(prompt, seed)``, ``close()``); default
            :func:`make_backend` (closed by :meth:`close` only when created here).

    Raises:
        UserError: backend problems (see :func:`make_backend`), bad cache file.
    """

    def __init__(self, cfg: RephraseConfig, cache_path: str | Path, backend=None):
        from webmill.filters.language import LanguageFilter

        self.cfg = cfg
        self.cache = RequestCache(cache_path)
        self._own_backend = backend is None
        self.backend = backend if backend is not None else make_backend(cfg)
        self.model = self.backend.name
        self.enc = _encoder()
        self.lid = LanguageFilter(languages="all")
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="rephrase")
        self.stats = _Stats()
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self._circuit_open = False
        self.generation_seconds = 0.0  # wall time spent submitting and collecting requests

    # one segment ------------------------------------------------------------------------
    def _segment(self, style: str, text: str) -> _Outcome:
        key = cache_key(self.model, style, PROMPT_VERSION, self.cfg.api, text)
        gen = self.cache.get(key)
        if gen is not None:
            return _Outcome(gen=gen, cached=True)
        with self._lock:
            if self._circuit_open:
                return _Outcome(error="circuit_open")
        prompt = build_prompt(style, text, self.cfg.api)
        # An answer longer than the style's length bound would be rejected anyway: do not pay for
        # it (base models often ramble on past the rewrite).
        limit = min(self.cfg.max_tokens, int(self.cfg.length_bounds(style)[1] * 1.3 * _ntok(self.enc, text)) + 32)
        try:
            gen = self.backend.generate(prompt, seed=int(key[:8], 16), max_tokens=limit)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - any request failure passes the document through, counted
            if not isinstance(e, LLMRequestError):
                e = LLMRequestError(f"{type(e).__name__}: {e}")
            with self._lock:
                self._consecutive_failures += 1
                if self.cfg.max_consecutive_failures and self._consecutive_failures >= self.cfg.max_consecutive_failures:
                    self._circuit_open = True
            return _Outcome(error=str(e).split(":", 1)[0] or "error")
        with self._lock:
            self._consecutive_failures = 0
        if gen.completion_tokens < 0:
            gen = dataclasses.replace(gen, completion_tokens=_ntok(self.enc, gen.text))
        self.cache.put(key, gen, model=self.model, style=style, api=self.cfg.api, text=text)
        return _Outcome(gen=gen)

    # one table --------------------------------------------------------------------------
    def rephrase_table(self, table: pa.Table, name: str = "<table>") -> pa.Table:
        """Rephrase the routed documents of ``table`` and return the output table.

        Args:
            table: document table with at least ``id`` and ``text``; optional
                ``quality_bucket`` (int), ``language`` (str), and synthetic columns (rows with a
                ``parent_id`` are already synthetic and are passed through untouched).
            name: file name for messages.

        Returns:
            The table with originals (kept or replaced per ``keep_originals``, synthetic
            columns null) and the synthetic rows, each right after its parent. Row order and
            content are deterministic given the cache.

        Raises:
            UserError: missing ``id``/``text`` column, or a backend configuration error.
        """
        for col in ("id", "text"):
            if col not in table.column_names:
                raise UserError(f"{name}: no {col!r} column (columns: {', '.join(table.column_names)}); "
                                "rephrase reads document tables written by `curate finalize`")
        cfg, st = self.cfg, self.stats
        ids = table.column("id").to_pylist()
        texts = table.column("text").to_pylist()
        buckets = (table.column("quality_bucket").to_pylist() if "quality_bucket" in table.column_names
                   else [None] * len(ids))
        langs = table.column("language").to_pylist() if "language" in table.column_names else [None] * len(ids)
        parents = table.column("parent_id").to_pylist() if "parent_id" in table.column_names else [None] * len(ids)
        st.c["documents_in"] += len(ids)

        t_gen = time.perf_counter()
        jobs = []  # (row, style, segments, futures)
        for i, (doc_id, text, bucket, parent) in enumerate(zip(ids, texts, buckets, parents)):
            if parent is not None or not text or not text.strip():
                continue
            styles = route(doc_id or "", bucket, cfg)
            if not styles:
                continue
            st.c["documents_sampled"] += 1
            segments = split_segments(text, cfg.max_segment_tokens, self.enc)
            for style in styles:
                st.style(style, "requested")
                futures = [self.pool.submit(self._segment, style, s) for s in segments]
                jobs.append((i, style, segments, futures))

        synthetic: dict[int, list[tuple[str, str, float]]] = {}
        try:
            for i, style, segments, futures in jobs:
                outs = [f.result() for f in futures]
                st.c["segments"] += len(outs)
                for o in outs:
                    if o.cached:
                        st.c["cache_hits"] += 1
                    elif o.gen is not None:
                        st.c["requests_ok"] += 1
                        st.c["generated_tokens"] += o.gen.completion_tokens
                    elif o.error == "circuit_open":
                        st.c["requests_skipped_server_down"] += 1
                    else:
                        st.c["requests_failed"] += 1
                        st.errors[o.error] += 1
                    if o.gen is not None:
                        st.c["generated_tokens_incl_cache"] += o.gen.completion_tokens
                if any(o.gen is None for o in outs):
                    st.c["rephrase_failed"] += 1
                    st.style(style, "failed")
                    continue
                expected = langs[i] if cfg.check_language else None
                if cfg.check_language and not expected:
                    expected = self.lid.predict(texts[i])[0]
                valid = []
                for seg, o in zip(segments, outs):
                    cleaned = clean_output(o.gen.text, truncated=o.gen.finish_reason == "length")
                    reason = validate_output(seg, cleaned, style, finish_reason=o.gen.finish_reason,
                                             expected_language=expected, lid=self.lid,
                                             bounds=cfg.length_bounds(style), allow_truncated=cfg.allow_truncated or style in cfg.truncated_styles,
                                             min_support=cfg.min_support, max_similarity=cfg.max_similarity)
                    if reason:
                        st.rejected[reason] += 1
                    else:
                        valid.append(cleaned)
                if not valid or len(valid) < cfg.min_valid_fraction * len(segments):
                    st.c["rephrase_rejected"] += 1
                    st.style(style, "rejected")
                    continue
                new_text = "\n\n".join(valid)
                synthetic.setdefault(i, []).append((style, new_text, self.lid.predict(new_text)[1]))
                st.style(style, "rephrased")
                st.c["segments_kept"] += len(valid)
        except BaseException:
            for _, _, _, futures in jobs:
                for f in futures:
                    f.cancel()
            raise
        finally:
            self.generation_seconds += time.perf_counter() - t_gen
        out = self._assemble(table, ids, synthetic)
        st.c["documents_out"] += out.num_rows
        st.c["synthetic_out"] += sum(len(v) for v in synthetic.values())
        return out

    def _assemble(self, table: pa.Table, ids: list, synthetic: dict) -> pa.Table:
        orig = table
        for col in SYNTHETIC_COLUMNS:
            if col not in orig.column_names:
                orig = orig.append_column(col, pa.nulls(orig.num_rows, pa.string()))
        if not synthetic:
            return orig
        rows = [i for i in sorted(synthetic) for _ in synthetic[i]]
        items = [x for i in sorted(synthetic) for x in synthetic[i]]
        syn = orig.take(pa.array(rows, pa.int64()))

        def put(t, name, values, typ):
            return t.set_column(t.column_names.index(name), name, pa.array(values, type=typ))

        syn = put(syn, "id", [synthetic_id(ids[i], s) for i, (s, _, _) in zip(rows, items)], orig.schema.field("id").type)
        syn = put(syn, "text", [x[1] for x in items], orig.schema.field("text").type)
        if "language_score" in syn.column_names:
            syn = put(syn, "language_score", [x[2] for x in items], orig.schema.field("language_score").type)
        syn = put(syn, "synthetic_style", [x[0] for x in items], pa.string())
        syn = put(syn, "parent_id", [ids[i] for i in rows], pa.string())
        syn = put(syn, "synthetic_model", [self.model] * len(rows), pa.string())
        both = pa.concat_tables([orig, syn.cast(orig.schema)])
        order, k = [], orig.num_rows
        for i in range(orig.num_rows):
            if self.cfg.keep_originals or i not in synthetic:
                order.append(i)
            for _ in synthetic.get(i, ()):
                order.append(k)
                k += 1
        return both.take(pa.array(order, pa.int64()))

    def summary(self, seconds: float) -> dict:
        """Statistics so far (the content of ``OUT/stats/rephrase.json``).

        ``seconds`` is the stage's wall time (model loading included); rates (``tokens_per_s``,
        ``documents_per_min`` = sampled documents processed per minute,
        ``synthetic_documents_per_min``) use ``generation_seconds``, the time spent on requests.
        """
        c, cfg = self.stats.c, self.cfg
        tokens, gen_s = c["generated_tokens"], self.generation_seconds
        return {
            "backend": cfg.backend, "model": self.model, "api": cfg.api, "prompt_version": PROMPT_VERSION,
            "documents_in": c["documents_in"], "documents_sampled": c["documents_sampled"],
            "documents_out": c["documents_out"], "synthetic_documents": c["synthetic_out"],
            "rephrase_failed": c["rephrase_failed"], "rephrase_rejected": c["rephrase_rejected"],
            "by_style": {s: {k: v.get(k, 0) for k in ("requested", "rephrased", "rejected", "failed")}
                         for s, v in sorted(self.stats.by_style.items())},
            "segments": c["segments"], "segments_kept": c["segments_kept"], "cache_hits": c["cache_hits"],
            "requests_ok": c["requests_ok"], "requests_failed": c["requests_failed"],
            "requests_skipped_server_down": c["requests_skipped_server_down"],
            "request_errors": dict(self.stats.errors), "rejected_segments": dict(self.stats.rejected),
            "generated_tokens": tokens, "generated_tokens_incl_cache": c["generated_tokens_incl_cache"],
            "seconds": round(seconds, 3), "generation_seconds": round(gen_s, 3),
            "tokens_per_s": round(tokens / gen_s, 3) if gen_s > 0 else 0.0,
            "documents_per_min": round(c["documents_sampled"] * 60 / gen_s, 3) if gen_s > 0 else 0.0,
            "synthetic_documents_per_min": round(c["synthetic_out"] * 60 / gen_s, 3) if gen_s > 0 else 0.0,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        }

    def close(self) -> None:
        """Stop the thread pool, close the cache and (if created here) the backend."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.cache.close()
        if self._own_backend:
            self.backend.close()


def run_rephrase(out: Path, cfg: dict | RephraseConfig, input_subdir: str = "final",
                 output_subdir: str = "rephrased", backend=None) -> dict:
    """Rephrase ``OUT/<input_subdir>/*.parquet`` into ``OUT/<output_subdir>/<same names>.parquet``.

    Args:
        out: the run's output directory OUT.
        cfg: a whole pipeline config (dict; its ``rephrase`` table is used, absent → defaults)
            or a :class:`RephraseConfig`. ``rephrase.enabled`` only matters to ``curate run``.
        input_subdir / output_subdir: directories under OUT.
        backend: optional backend object to reuse (e.g. a loaded model across calls).

    Returns:
        The statistics dict also written to ``OUT/stats/rephrase.json``: documents in/out,
        synthetic documents, counts by style, ``rephrase_failed`` (documents × styles whose
        requests failed; they pass through unchanged), ``rephrase_rejected`` (outputs failing
        validation), cache hits, requests, generated tokens (model tokenizer), seconds,
        tokens/s, synthetic documents/min.

    Raises:
        UserError: no input files, an unreadable input file or one without ``id``/``text``,
            backend configuration errors (no model name, missing llama-cpp-python, bad API key,
            unknown model). Server outages are *not* errors.
    """
    from webmill.curate.outputs import write_json_atomic, write_parquet_atomic

    out = Path(out)
    conf = cfg if isinstance(cfg, RephraseConfig) else RephraseConfig.from_config(cfg)
    src_dir, dst_dir = out / input_subdir, out / output_subdir
    files = sorted(src_dir.glob("*.parquet"))
    if not files:
        raise UserError(f"no Parquet files in {src_dir} (run `curate run`/`curate finalize` first, "
                        "or pass --input-subdir)")
    dst_dir.mkdir(parents=True, exist_ok=True)
    names = {f.name for f in files}
    for stale in dst_dir.glob("*.parquet"):
        if stale.name not in names:
            stale.unlink()
    t0 = time.perf_counter()
    r = Rephraser(conf, Path(conf.cache_path) if conf.cache_path else out / "cache" / "rephrase.sqlite", backend)
    per_file = []
    try:
        for f in files:
            try:
                table = pq.read_table(f)
            except (OSError, pa.ArrowException) as e:
                raise UserError(f"{f}: cannot read Parquet ({e}); re-run the step that wrote it") from e
            before = dict(r.stats.c)
            new = r.rephrase_table(table, str(f))
            write_parquet_atomic(new, dst_dir / f.name)
            per_file.append({"file": f.name, "documents_in": table.num_rows, "documents_out": new.num_rows,
                             "synthetic": r.stats.c["synthetic_out"] - before.get("synthetic_out", 0),
                             "failed": r.stats.c["rephrase_failed"] - before.get("rephrase_failed", 0)})
    finally:
        r.close()
    stats = r.summary(time.perf_counter() - t0)
    stats["files"] = per_file
    write_json_atomic(stats, out / "stats" / "rephrase.json")
    return stats


def rephrase_cmd(
    out: Path = typer.Argument(..., help="Output directory of a run (reads OUT/final, writes OUT/rephrased and "
                               "OUT/stats/rephrase.json)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Pipeline config TOML; its rephrase "
                                          "table sets any RephraseConfig key (see docs/rephrase.md)."),
    backend: Optional[str] = typer.Option(None, help="llama_cpp (embedded Gemma 3 270M) or openai (a server)."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL incl. /v1."),
    model: Optional[str] = typer.Option(None, help="Served model name (openai backend)."),
    api: Optional[str] = typer.Option(None, help="completions (base models) or chat (instruct models)."),
    model_path: Optional[str] = typer.Option(None, help="GGUF file for the llama_cpp backend."),
    fraction: Optional[float] = typer.Option(None, help="Fraction of documents to rephrase (by id hash)."),
    max_tokens: Optional[int] = typer.Option(None, help="Most generated tokens per request."),
    max_segment_tokens: Optional[int] = typer.Option(None, help="Largest segment (cl100k_base tokens)."),
    concurrency: Optional[int] = typer.Option(None, help="Requests in flight."),
    keep_originals: Optional[bool] = typer.Option(None, "--keep-originals/--replace-originals",
                                                  help="Keep originals next to their rephrasings [default: keep]."),
    cache_path: Optional[str] = typer.Option(None, help="sqlite request cache [default: OUT/cache/rephrase.sqlite]."),
    input_subdir: str = typer.Option("final", help="Subdirectory of OUT to read."),
    output_subdir: str = typer.Option("rephrased", help="Subdirectory of OUT to write."),
) -> None:
    """LLM rephrasing (Wikipedia style / Nemotron-CC styles): OUT/final → OUT/rephrased."""
    table: dict = {}
    if config is not None:
        if not config.is_file():
            raise UserError(f"config file not found: {config}")
        try:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"cannot parse config {config}: {e}") from e
        table = dict(data.get("rephrase", {}))
    for key, value in (("backend", backend), ("base_url", base_url), ("model", model), ("api", api),
                       ("model_path", model_path), ("fraction", fraction), ("max_tokens", max_tokens),
                       ("max_segment_tokens", max_segment_tokens), ("concurrency", concurrency),
                       ("keep_originals", keep_originals), ("cache_path", cache_path)):
        if value is not None:
            table[key] = value
    conf = RephraseConfig.from_dict(table)
    s = run_rephrase(out, conf, input_subdir=input_subdir, output_subdir=output_subdir)
    print(f"rephrase ({s['model']}): {s['documents_in']} documents → {s['documents_out']} "
          f"({s['synthetic_documents']} synthetic); failed {s['rephrase_failed']}, rejected "
          f"{s['rephrase_rejected']}, cache hits {s['cache_hits']}/{s['segments']} segments; "
          f"{s['generated_tokens']} tokens in {s['seconds']:.1f} s ({s['tokens_per_s']:.1f} tok/s)")
