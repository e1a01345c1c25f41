"""Settings of ``curate annotate``: :class:`AnnotateConfig` (the ``[annotate]`` config table).

Every key, its default, type and allowed range is declared here; :meth:`AnnotateConfig.from_dict`
rejects unknown keys and wrong types with a :class:`~webmill.errors.UserError` naming
``[annotate] <key>``, and ``__post_init__`` checks ranges. The pipeline config registry
(:data:`webmill.curate.stages.CLASS_SECTIONS`) refers to this class as
``webmill.curate.annotate:AnnotateConfig``. The backend keys mean what they mean in
:class:`webmill.curate.rephrase.RephraseConfig` (the same backends serve both commands).
"""

from __future__ import annotations

from dataclasses import dataclass

from webmill.curate.rephrase.config import BackendSettings
from webmill.errors import UserError

#: ``max_tokens = 0`` means this many tokens per api: a chat answer is a short justification and
#: a ``Score: N`` line (~150 words); a completion answer is the digit after ``Score:``.
AUTO_MAX_TOKENS = {"chat": 300, "completions": 4}


@dataclass
class AnnotateConfig(BackendSettings):
    """All settings of ``curate annotate`` (the keys of an ``[annotate]`` config table).

    Attributes:
        The backend keys of :class:`webmill.curate.rephrase.config.BackendSettings` (the
        same backends and request cache as rephrasing; ``api = "completions"`` gets a few-shot
        prompt ending in ``Score:``, ``"chat"`` the rubric and a justification ending in
        ``Score: N``; ``cache_path`` empty → ``OUT/cache/annotate.sqlite``; when the circuit
        opens after ``max_consecutive_failures``, the remaining documents get rows with error
        ``circuit_open``), and:
        rubric: ``"edu"`` (webmill's additive 0–5 educational-value rubric) or the path of a
            plain-text/markdown file whose text replaces the rubric (the answer format stays
            webmill's: an integer 0–5).
        n: most documents annotated (int ≥ 0; the ``n`` smallest id hashes over the whole
            input; 0 = no cap).
        fraction: share of documents eligible (float in [0, 1], by id hash; applied before ``n``).
        stratify: ``""`` or ``"domain"`` (with ``n``: round-robin over domains, so the sample
            covers as many domains as possible).
        seed: seed of the sampling hash (int).
        max_doc_chars: characters of each document sent to the model (int ≥ 100; longer
            documents are cut at a word boundary; FineWeb-Edu's annotation prompt truncates too).
        temperature: sampling temperature (0.0 = greedy: repeatable scores).
        max_tokens: most generated tokens per request; 0 → :data:`AUTO_MAX_TOKENS` of ``api``.
    """

    rubric: str = "edu"
    n: int = 0
    fraction: float = 1.0
    stratify: str = ""
    seed: int = 0
    max_doc_chars: int = 3000
    temperature: float = 0.0
    max_tokens: int = 0

    def __post_init__(self):
        def bad(key, msg):
            raise UserError(f"config [annotate] {key}: {msg}")

        self.check_backend(bad)
        if self.backend == "openai" and not self.model:
            bad("model", f"is empty; the openai backend needs the model name served at {self.base_url} "
                "(GET <base_url>/models lists them)")
        if self.backend == "openai" and not self.base_url:
            bad("base_url", "is empty; give the server URL, e.g. http://127.0.0.1:8000/v1")
        if not self.rubric:
            bad("rubric", "is empty; use 'edu' (built in) or the path of a rubric text file")
        if self.stratify not in ("", "domain"):
            bad("stratify", f"must be '' (none) or 'domain', got {self.stratify!r}")
        if not 0.0 <= self.fraction <= 1.0:
            bad("fraction", f"must be in [0, 1], got {self.fraction}")
        if self.max_doc_chars < 100:
            bad("max_doc_chars", f"must be >= 100, got {self.max_doc_chars}")
        for key in ("n", "max_tokens"):
            if getattr(self, key) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.temperature <= 2.0:
            bad("temperature", f"must be in [0, 2], got {self.temperature}")

    @property
    def token_limit(self) -> int:
        """Generated-token limit per request: ``max_tokens``, or :data:`AUTO_MAX_TOKENS` of ``api``."""
        return self.max_tokens or AUTO_MAX_TOKENS[self.api]

    @classmethod
    def from_dict(cls, table: dict | None) -> "AnnotateConfig":
        """Build from an ``[annotate]`` table (dict; ``enabled`` is ignored).

        Raises:
            UserError: unknown key (lists the known ones), a value of the wrong type, or a value
                out of range (names ``[annotate] <key>``).
        """
        from webmill.config import dataclass_from_table

        return dataclass_from_table(cls, table, "annotate")

    @classmethod
    def from_config(cls, cfg: dict) -> "AnnotateConfig":
        """From a whole pipeline config (uses its ``annotate`` table; absent → defaults)."""
        return cls.from_dict(cfg.get("annotate") if isinstance(cfg, dict) else None)
