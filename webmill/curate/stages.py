"""The stage registry: the one place that lists the pipeline's stages, their order, classes,
config tables and drop reasons.

Everything else reads it: the config defaults and validation (:mod:`webmill.config`), the
per-document driver (:mod:`webmill.curate.documents`), the funnel, the report and the tests.

Per-document stages (:data:`DOCUMENT_STAGES`) run inside one worker per input file, in this
order; a document dropped by a stage is counted under one of that stage's ``reasons`` and the
first failing stage decides. The global steps (:data:`GLOBAL_STEPS`) then run over the whole
output directory.

Adding a heuristic filter: write the class in ``webmill/filters/`` (thresholds as keyword
arguments with their sources, a ``name``, stable ``REASONS``, ``filter(doc)``; no I/O), add one
``Stage(...)`` line to :data:`DOCUMENT_STAGES` with ``kind="rule"``, add its tests. Its config
table ``[filters.<name>]``, its funnel row and its report section follow from this line.

Importing this module imports no filter: classes are named as ``"module:Class"`` strings and
loaded on first use.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webmill.errors import UserError


@dataclass(frozen=True)
class Stage:
    """One per-document stage.

    Attributes:
        name: the key of the stage in stats (``stages``), the funnel and the report.
        kind: ``"record"`` (record selection, no class), ``"url"``, ``"extract"``,
            ``"language"``, ``"rule"`` (a heuristic rule of the FineWeb chain) or ``"decontam"``
            (benchmark decontamination, :class:`webmill.filters.decontam.DecontamFilter`, built
            by :func:`webmill.curate.decontam.load_filter`; reasons ``decontam_<set>``).
        section: config table path (``("filters", "c4")`` is ``[filters.c4]``), or ``None``.
        cls: ``"module:Class"`` built from the table's keys (minus ``enabled``), or ``None``.
        reasons: the stable drop reasons of the stage (for a class: its ``REASONS``).
        prefix: the prefix every reason of this stage starts with, including reasons made from
            config values (``gopher_rep_top_5_gram``); ``""`` when the stage has fixed reasons only.
    """

    name: str
    kind: str
    section: tuple[str, ...] | None = None
    cls: str | None = None
    reasons: tuple[str, ...] = field(default=())
    prefix: str = ""

    def load_class(self):
        """The stage's filter class (imported on first use)."""
        mod, name = self.cls.split(":")
        return getattr(importlib.import_module(mod), name)

    def all_reasons(self) -> tuple[str, ...]:
        """``reasons`` plus the class's ``REASONS`` (in that order, without repeats)."""
        extra = tuple(getattr(self.load_class(), "REASONS", ())) if self.cls else ()
        return tuple(dict.fromkeys(self.reasons + extra))


DOCUMENT_STAGES: tuple[Stage, ...] = (
    Stage("html_or_wet", "record", reasons=("not_response", "http_status", "not_html")),
    Stage("url_filter", "url", ("url_filter",), "webmill.filters.url:URLFilter", prefix="url_"),
    Stage("extract", "extract", ("extract",),
          reasons=("extract_not_html", "extract_skipped_language", "extract_timeout", "extract_empty"),
          prefix="extract_"),
    Stage("language", "language", ("language",), "webmill.filters.language:LanguageFilter", prefix="lang_"),
    # the FineWeb heuristic chain, in the order of datatrove's examples/fineweb.py
    Stage("gopher_repetition", "rule", ("filters", "gopher_repetition"),
          "webmill.filters.gopher:GopherRepetitionFilter", prefix="gopher_rep_"),
    Stage("gopher_quality", "rule", ("filters", "gopher_quality"),
          "webmill.filters.gopher:GopherQualityFilter", prefix="gopher_"),
    Stage("c4", "rule", ("filters", "c4"), "webmill.filters.c4:C4Filter", prefix="c4_"),
    Stage("fineweb", "rule", ("filters", "fineweb"), "webmill.filters.fineweb:FineWebQualityFilter",
          prefix="fineweb_"),
    # benchmark decontamination (off by default): built from [decontaminate] and the n-gram
    # index of the eval sets (webmill.curate.decontam), not from the table's keys alone
    Stage("decontaminate", "decontam", ("decontaminate",), prefix="decontam_"),
)

STAGES: dict[str, Stage] = {s.name: s for s in DOCUMENT_STAGES}
RULE_STAGES: tuple[Stage, ...] = tuple(s for s in DOCUMENT_STAGES if s.kind == "rule")


@dataclass(frozen=True)
class GlobalStep:
    """One step over the whole output directory, after the per-document stages.

    Attributes:
        name: the step's funnel row (``"dedup"``, ...).
        output: the ``OUT`` subdirectory it writes.
        stats: its stats file below ``OUT/stats/`` (``""``: none).
        section: its config table.
    """

    name: str
    output: str
    stats: str
    section: str


GLOBAL_STEPS: tuple[GlobalStep, ...] = (
    GlobalStep("dedup", "deduped", "dedup.json", "dedup"),
    GlobalStep("pii_quality", "final", "final.json", "pii"),
    GlobalStep("rephrase", "rephrased", "rephrase.json", "rephrase"),
    GlobalStep("shards", "shards", "", "tokenize"),
)

# Config tables whose keys are a class's constructor arguments: table path → "module:Class".
CLASS_SECTIONS: dict[tuple[str, ...], str] = {
    **{s.section: s.cls for s in DOCUMENT_STAGES if s.cls},
    ("pii",): "webmill.filters.pii:PIIFilter",
    ("dedup",): "webmill.curate.dedup:DedupConfig",
    ("rephrase",): "webmill.curate.rephrase:RephraseConfig",
    ("annotate",): "webmill.curate.annotate:AnnotateConfig",
}


def class_for(section: tuple[str, ...]):
    """The class configured by config table ``section`` (e.g. ``("filters", "c4")``)."""
    mod, name = CLASS_SECTIONS[section].split(":")
    return getattr(importlib.import_module(mod), name)


def reason_stage(reason: str) -> str:
    """The name of the stage that drops documents with ``reason``; ``"other"`` if none does.

    Exact reasons (``reasons`` and the class's ``REASONS``) win over prefixes; among prefixes the
    longest wins (``gopher_rep_`` before ``gopher_``).
    """
    for s in DOCUMENT_STAGES:
        if reason in s.all_reasons():
            return s.name
    best = max((s for s in DOCUMENT_STAGES if s.prefix and reason.startswith(s.prefix)),
               key=lambda s: len(s.prefix), default=None)
    return best.name if best else "other"


def _table(tables: Mapping[str, Any], name: str) -> dict:
    table = tables.get(name, {})
    if not isinstance(table, Mapping):
        raise UserError(f"[filters.{name}] must be a table, got {table!r}")
    return dict(table)


def build_rules(tables: Mapping[str, Any] | None = None) -> list:
    """Instantiate the enabled heuristic rules in registry order (the FineWeb chain).

    Args:
        tables: the ``[filters]`` config table: ``{"gopher_repetition": {...}, "c4": {...},
            ...}``, or a whole config (its ``filters`` table is used); a missing table means
            all defaults, ``enabled = false`` leaves that rule out. Keys of other tables are
            ignored.

    Returns:
        ``list[BaseFilter]`` in :data:`RULE_STAGES` order.

    Raises:
        UserError: a table is not a table, or holds an unknown key or a bad value (the message
            names ``[filters.<name>] <key>`` and the known keys).
    """
    tables = tables or {}
    if isinstance(tables.get("filters"), Mapping):  # a whole config (no rule is named "filters")
        tables = tables["filters"]
    rules = []
    for stage in RULE_STAGES:
        kwargs = _table(tables, stage.name)
        enabled = kwargs.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise UserError(f"[filters.{stage.name}] enabled must be true or false, got {enabled!r}")
        if not enabled:
            continue
        cls = stage.load_class()
        try:
            rules.append(cls(**kwargs))
        except TypeError as exc:
            known = sorted(inspect.signature(cls.__init__).parameters.keys() - {"self"})
            raise UserError(f"[filters.{stage.name}]: {exc}; known keys: {', '.join(known)}") from None
    return rules


#: The config tables the per-document step reads (:mod:`webmill.curate.documents`,
#: :func:`webmill.curate.pipeline.run_documents`, :mod:`webmill.curate.decontam`): two configs
#: equal on these tables write identical ``documents/``, ``stats/``, ``removed/``, ``examples/``
#: and markers, so ``curate ablate`` runs that step once for both (:mod:`webmill.ablate.plan`).
DOCUMENT_STEP_TABLES: tuple[str, ...] = ("extract", "url_filter", "language", "filters", "decontaminate", "output")
