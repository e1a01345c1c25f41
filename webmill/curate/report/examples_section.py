"""Example documents per drop reason: the report's ``examples`` section, and the reason list
that ``curate show`` (:mod:`.show`) shares with it.

The examples are the run's deterministic sample (:mod:`webmill.curate.examples`: per reason the
documents with the smallest xxh64 of their id, merged over every ``OUT/examples/**.parquet``).
Reasons are ordered as the funnel is: per-document stages in registry order
(:data:`~webmill.curate.stages.DOCUMENT_STAGES`, a reason's stage from
:func:`~webmill.curate.stages.reason_stage`), then the global steps in
:data:`~webmill.curate.stages.GLOBAL_STEPS` order (dedup, PII/quality); within a stage, most
dropped first. The dropped counts come from the run's stats files
(:func:`webmill.curate.funnel.collect_funnel`), so listing reasons reads no document table.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from webmill.curate.examples import read_examples
from webmill.curate.report.rundata import RunData
from webmill.curate.stages import DOCUMENT_STAGES, GLOBAL_STEPS, reason_stage

#: examples per reason kept in stats.json (the page shows them all)
REPORT_EXAMPLES = 3
#: characters of each example's text kept in stats.json and printed by ``curate show``
TEXT_CHARS = 300
#: fields of one example in stats.json
EXAMPLE_FIELDS = ("id", "url", "text", "n_chars", "language", "language_score", "drop_value", "drop_threshold",
                  "drop_detail", "stage")
NO_EXAMPLES = ("the run kept no examples (no OUT/examples/: `[output] examples_per_reason = 0`, "
               "or a run made before examples were sampled)")

#: stages that finalize's examples and removed rows name, within the ``pii_quality`` step
_STAGE_ALIASES = {"pii": "pii_quality", "quality": "pii_quality"}
_STAGE_RANK = {name: i for i, name in enumerate([s.name for s in DOCUMENT_STAGES] + [s.name for s in GLOBAL_STEPS])}


def _global_counts(funnel: dict) -> dict[str, tuple[str, int]]:
    """Drops of the global steps: dedup's exact/near removals (named as ``OUT/removed/dedup``
    and the dedup examples name them) and ``final.json``'s ``dropped`` (non-zero only)."""
    from webmill.curate.dedup.keep import REASON_EXACT, REASON_NEAR

    out: dict[str, tuple[str, int]] = {}
    d = funnel.get("dedup")
    if isinstance(d, dict):
        for reason, part in ((REASON_EXACT, "exact"), (REASON_NEAR, "minhash")):
            n = int((d.get(part) or {}).get("documents_removed", 0) or 0)
            if n:
                out[reason] = ("dedup", n)
    f = funnel.get("final")
    if isinstance(f, dict):
        for reason, n in (f.get("dropped") or {}).items():
            if n:
                out[str(reason)] = ("pii_quality", int(n))
    return out


def drop_reasons(funnel: dict, example_stages: dict[str, str] | None = None) -> dict[str, tuple[str, int | None]]:
    """Every drop reason of a run with its stage and dropped count, in funnel order.

    Args:
        funnel: :func:`webmill.curate.funnel.collect_funnel` of the run.
        example_stages: ``{reason: stage}`` of the stored examples; reasons only found there
            get a count of None.

    Returns:
        ``{reason: (stage, documents dropped or None)}``, ordered by stage (registry order,
        unknown stages last), then count (descending), then name.
    """
    found: dict[str, tuple[str, int | None]] = {}
    for reason, n in (funnel.get("dropped") or {}).items():
        if n:
            found[reason] = (reason_stage(reason), int(n))
    found.update(_global_counts(funnel))
    for reason, stage in (example_stages or {}).items():
        if reason_stage(reason) == "other":  # a global step's reason: its examples name the stage
            found[reason] = (stage, found.get(reason, (stage, None))[1])
    return dict(sorted(found.items(), key=lambda kv: (_rank(kv[1][0]), -(kv[1][1] or 0), kv[0])))


def _rank(stage: str) -> int:
    return _STAGE_RANK.get(_STAGE_ALIASES.get(stage, stage), len(_STAGE_RANK))


def _clean(v: Any) -> Any:
    """JSON-safe scalar: NaN/inf → None, floats rounded to 6 digits."""
    if isinstance(v, float):
        return None if not math.isfinite(v) else round(v, 6)
    return v


def example_record(row: dict, chars: int = TEXT_CHARS) -> dict:
    """One example row (:data:`webmill.curate.examples.EXAMPLE_SCHEMA`, or a ``removed/`` row)
    as stats.json stores it: :data:`EXAMPLE_FIELDS`, text cut to ``chars`` characters."""
    rec = {k: _clean(row.get(k)) for k in EXAMPLE_FIELDS}
    text = row.get("text") or ""
    rec["text"] = text[:chars]
    if rec["n_chars"] is None:
        rec["n_chars"] = len(text)
    rec["url"] = rec["url"] or ""
    return rec


def decision(ex: dict) -> str:
    """What decided the drop, one line: ``drop_detail`` when recorded, else ``value v against
    threshold t``, else ``""``."""
    if ex.get("drop_detail"):
        return str(ex["drop_detail"])
    v, t = ex.get("drop_value"), ex.get("drop_threshold")
    if v is not None and t is not None:
        return f"value {v:.6g} against threshold {t:.6g}"
    if v is not None:
        return f"value {v:.6g}"
    return ""


def examples_by_reason(table: pa.Table, chars: int = TEXT_CHARS) -> dict[str, list[dict]]:
    """``{reason: [example_record, ...]}`` of an examples table (table order kept)."""
    out: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        out.setdefault(row["reason"], []).append(example_record(row, chars))
    return out


def _read(run: RunData, n: int) -> pa.Table:
    from webmill.errors import UserError

    try:
        return read_examples(run.st, n=n)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"cannot read the examples in {run.st.uri('examples')}: {e}; delete that directory "
                        "and re-run `curate run ... --force` to sample them again") from e


def examples_section(run: RunData) -> tuple[dict | None, list[dict]]:
    """The ``examples`` and ``drop_reasons`` of stats.json.

    Returns:
        ``(examples, drop_reasons)``: ``examples`` is ``{reason: [{id, url, text (first
        :data:`TEXT_CHARS` characters), n_chars, language, language_score, drop_value,
        drop_threshold, drop_detail, stage}]}`` with at most :data:`REPORT_EXAMPLES` per reason,
        or None (then ``skipped["examples"]`` says why) when ``OUT/examples/`` holds no rows;
        ``drop_reasons`` is ``[{reason, stage, dropped, examples}]`` for every reason of the run
        in :func:`drop_reasons` order (``dropped`` None for a reason only the examples name).

    Raises:
        UserError: an examples file cannot be read (names ``OUT/examples``).
    """
    table = _read(run, REPORT_EXAMPLES)
    by = examples_by_reason(table)
    order = drop_reasons(run.funnel, {r: v[0]["stage"] for r, v in by.items()})
    listing = [{"reason": r, "stage": stage, "dropped": n, "examples": len(by.get(r, []))}
               for r, (stage, n) in order.items()]
    if not by:
        run.skipped["examples"] = NO_EXAMPLES if not run.st.isdir("examples") else \
            "OUT/examples/ holds no example (no document was dropped, or `[output] examples_per_reason = 0`)"
        return None, listing
    return {r: by[r] for r in order if r in by}, listing
