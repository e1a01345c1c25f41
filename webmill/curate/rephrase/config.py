"""Settings of the rephrasing stage: :class:`RephraseConfig` (the ``[rephrase]`` config table).

Every key, its default, type and allowed range is declared here; :meth:`RephraseConfig.from_dict`
rejects unknown keys and wrong types with a :class:`~webmill.errors.UserError` naming the key.
The pipeline config registry refers to this class as ``webmill.curate.rephrase:RephraseConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass

from webmill.curate.rephrase.prompts import LENGTH_BOUNDS, STYLES
from webmill.errors import UserError


@dataclass
class BackendSettings:
    """The LLM backend settings shared by ``[rephrase]`` (:class:`RephraseConfig`) and
    ``[annotate]`` (:class:`webmill.curate.annotate.AnnotateConfig`): the same backends
    (:mod:`webmill.curate.rephrase.llm`) and request cache serve both commands.

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
        concurrency: requests in flight (int ≥ 1; llama_cpp runs one at a time anyway).
        timeout_s: per-request timeout (seconds, > 0).
        max_retries: retries per request after the first try (exponential backoff, the client's).
        max_consecutive_failures: after this many failed requests in a row, stop sending (the
            server is down); the remaining documents are counted as failed (0 = never stop).
        cache_path: sqlite request cache (a local file); empty → ``OUT/cache/<command>.sqlite``
            (``$WEBMILL_CACHE/<command>/`` when OUT is a URL).
    """

    backend: str = "llama_cpp"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api: str = "completions"
    api_key_env: str = "OPENAI_API_KEY"
    model_path: str = ""
    n_threads: int = 1
    n_ctx: int = 2048
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 3
    max_consecutive_failures: int = 20
    cache_path: str = ""

    def check_backend(self, bad) -> None:
        """Range checks of the fields above; ``bad(key, message)`` raises the section's
        :class:`~webmill.errors.UserError`."""
        if self.backend not in ("openai", "llama_cpp"):
            bad("backend", f"must be 'openai' or 'llama_cpp', got {self.backend!r}")
        if self.api not in ("completions", "chat"):
            bad("api", f"must be 'completions' (base models) or 'chat' (instruct models), got {self.api!r}")
        for key in ("concurrency", "n_threads", "n_ctx"):
            if getattr(self, key) < 1:
                bad(key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("max_retries", "max_consecutive_failures"):
            if getattr(self, key) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)}")
        if self.timeout_s <= 0:
            bad("timeout_s", f"must be > 0, got {self.timeout_s}")


@dataclass
class RephraseConfig(BackendSettings):
    """All settings of the rephrasing stage (the keys of a ``[rephrase]`` config table).

    Attributes:
        The backend keys of :class:`BackendSettings`, and:
        low_styles / high_styles: styles for ``quality_bucket < bucket_threshold`` / ``>=``.
        bucket_threshold: first "high" bucket (int; 10 of 20 buckets).
        default_style: style when the table has no ``quality_bucket`` (or it is null).
        styles_per_document: ``"one"`` (one style per document, by id hash) or ``"all"``.
        fraction: fraction of documents rephrased (float in [0, 1], by id hash).
        seed: seed of the sampling/style hashes (int).
        max_segment_tokens: largest segment in cl100k_base tokens (int ≥ 16).
        temperature, top_p: sampling parameters.
        max_tokens: most generated tokens per request (the model's tokens).
        keep_originals: keep the original next to its synthetic versions (False → replaced;
            originals without a synthetic version are always kept).
        min_length_ratio / max_length_ratio: bounds of output/input characters; 0 → the
            style's default (:data:`webmill.curate.rephrase.prompts.LENGTH_BOUNDS`).
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

    low_styles: tuple = ("wikipedia",)
    high_styles: tuple = ("qa", "distill", "extract_knowledge", "knowledge_list")
    bucket_threshold: int = 10
    default_style: str = "wikipedia"
    styles_per_document: str = "one"
    fraction: float = 1.0
    seed: int = 0
    max_segment_tokens: int = 512
    temperature: float = 0.5
    top_p: float = 0.9
    max_tokens: int = 768
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

        self.check_backend(bad)
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
        if self.max_tokens < 1:
            bad("max_tokens", f"must be >= 1, got {self.max_tokens}")
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
        from webmill.config import dataclass_from_table

        return dataclass_from_table(cls, table, "rephrase")

    @classmethod
    def from_config(cls, cfg: dict) -> "RephraseConfig":
        """From a whole pipeline config (uses its ``rephrase`` table; absent → defaults)."""
        return cls.from_dict(cfg.get("rephrase") if isinstance(cfg, dict) else None)

    def length_bounds(self, style: str) -> tuple[float, float]:
        """(min, max) output/input character ratio for ``style``."""
        lo, hi = LENGTH_BOUNDS[style]
        return (self.min_length_ratio or lo, self.max_length_ratio or hi)
