"""The report's funnel section: documents, characters and tokens entering and leaving each stage,
with every drop reason listed under its stage.

The rows are those of :func:`webmill.curate.funnel.collect_funnel` (registry order). Drop
reasons are mapped to stages by :func:`webmill.curate.stages.reason_stage`. Each row kind has
one builder: ``records``; a per-document stage (any name in
:data:`~webmill.curate.stages.STAGES`); ``documents`` (kept after the per-document stages; it
also lists reasons of stages the run did not count); and one builder per global step in
:data:`_STEP_ROWS` (a registry step without one gets a plain in/out row).

Invariant of every row: ``documents_in + added − documents_out == sum(dropped) + unexplained``.
"""

from __future__ import annotations

from collections import Counter

from webmill.curate.funnel import step_stats_key
from webmill.curate.report.rundata import RunData
from webmill.curate.stages import GLOBAL_STEPS, STAGES, reason_stage

_STEPS = {s.name: s for s in GLOBAL_STEPS}


def _table_io(run: RunData, output: str) -> dict:
    """Characters and tokens of the table a step reads (the last one before ``output``) and of
    ``output``."""
    src = run.last_table(before=output)
    return {"characters_in": run.table_chars(src), "characters_out": run.table_chars(output),
            "tokens_in": run.table_tokens(src), "tokens_out": run.table_tokens(output)}


def _dedup_row(run: RunData, n: int, prev: int) -> dict:
    """Reasons named as ``OUT/removed/dedup`` and the dedup examples name them (``dedup_exact``,
    ``dedup_near``), so ``curate show OUT --reason dedup_exact`` finds what the funnel lists."""
    from webmill.curate.dedup.keep import REASON_EXACT, REASON_NEAR

    d = run.funnel.get(step_stats_key(_STEPS["dedup"].stats), {})
    exact = (d.get("exact") or {}).get("documents_removed", 0)
    near = (d.get("minhash") or {}).get("documents_removed", 0)
    return {"stage": "dedup", "documents_in": d.get("documents_in", prev), "documents_out": n,
            "dropped": {k: v for k, v in ((REASON_EXACT, exact), (REASON_NEAR, near)) if v},
            **_table_io(run, _STEPS["dedup"].output)}


def _pii_quality_row(run: RunData, n: int, prev: int) -> dict:
    step = _STEPS["pii_quality"]
    f = run.funnel.get(step_stats_key(step.stats), {})
    return {"stage": step.name, "documents_in": f.get("documents_in", prev), "documents_out": n,
            "dropped": {k: v for k, v in f.get("dropped", {}).items() if v}, **_table_io(run, step.output)}


def _rephrase_row(run: RunData, n: int | None, prev: int) -> dict:
    step = _STEPS["rephrase"]
    r = run.funnel.get(step_stats_key(step.stats))
    r = r if isinstance(r, dict) else {}
    n_in, n_out = r.get("documents_in", prev), r.get("documents_out", prev)
    added = r.get("synthetic_documents", 0)
    row = {"stage": step.name, "documents_in": n_in, "documents_out": n_out, "dropped": {}, "added": added,
           **_table_io(run, step.output)}
    if n_in + added - n_out:
        row["unexplained"] = n_in + added - n_out
    return row


def _shards_row(run: RunData, n: int, prev: int) -> dict:
    m = run.manifest or {}
    skipped_empty = m.get("skipped_empty_documents", 0)
    n_in = m.get("input_documents", prev)
    src = run.last_table()
    row = {"stage": "shards", "documents_in": n_in, "documents_out": n,
           "dropped": {"empty_after_tokenize": skipped_empty} if skipped_empty else {},
           "characters_in": run.table_chars(src), "tokens_in": run.table_tokens(src),
           "tokens_out": sum(run.funnel.get("tokens", {}).values()),
           "note": "shard tokens include one EOT per document"}
    if n - (n_in - skipped_empty):  # --mix repeats (> 0) or subsamples (< 0) train documents
        row["added"] = n - (n_in - skipped_empty)
    return row


#: One row builder per global step: ``(run, documents_out, documents_in_default) -> row``.
_STEP_ROWS = {"dedup": _dedup_row, "pii_quality": _pii_quality_row, "rephrase": _rephrase_row,
              "shards": _shards_row}


def _plain_step_row(run: RunData, name: str, n: int, prev: int) -> dict:
    row = {"stage": name, "documents_in": prev, "documents_out": n, "dropped": {}}
    if prev - n:
        row["unexplained"] = prev - n
    return row


def _with_gap(row: dict) -> dict:
    gap = row["documents_in"] - row["documents_out"] - sum(row["dropped"].values())
    if gap:
        row["unexplained"] = gap  # record errors (exceptions) or reasons of no stage
    return row


def _rows_of(run: RunData) -> list[tuple[str, int | None]]:
    """The funnel's ``(stage, documents_out)`` rows; a rephrase stats file always gets a row
    (its builder reads the counts from the file itself)."""
    rows = list(run.funnel["stages"])
    rephrase = _STEPS["rephrase"]
    if step_stats_key(rephrase.stats) in run.funnel and all(name != rephrase.name for name, _ in rows):
        later = [s.name for s in GLOBAL_STEPS[GLOBAL_STEPS.index(rephrase) + 1:]]
        at = next((i for i, (name, _) in enumerate(rows) if name in later), len(rows))
        rows.insert(at, (rephrase.name, None))
    return rows


def funnel_section(run: RunData, totals: dict) -> list[dict]:
    """The funnel rows of ``stats.json`` (see ``docs/report.md``).

    Args:
        run: the loaded run; ``totals``: the totals section (``records``, ``dropped``,
            ``characters_extracted``, ``characters_kept``).

    Returns:
        ``[{stage, documents_in, documents_out, dropped {reason: n}, unexplained?, added?,
        characters_in?, characters_out?, tokens_in?, tokens_out?}]``.
    """
    dropped: Counter = Counter()
    for s in run.files:
        dropped.update(s.get("dropped", {}))
    by_stage: dict[str, Counter] = {}
    for reason, n in dropped.items():
        by_stage.setdefault(reason_stage(reason), Counter())[reason] += n
    rows = _rows_of(run)
    counts = dict(rows)
    prev = counts.get("records", totals["records"])
    fun: list[dict] = []
    assigned: set[str] = set()
    last_doc_stage = None
    for name, n in rows:
        if name == "records":
            fun.append({"stage": "records", "documents_in": n, "documents_out": n, "dropped": {}})
            continue
        if name in STAGES:
            assigned.add(name)
            row = last_doc_stage = _with_gap({"stage": name, "documents_in": prev, "documents_out": n,
                                              "dropped": dict(by_stage.get(name, {}))})
        elif name == "documents":
            other = {r: c for st, cnt in by_stage.items() if st not in assigned for r, c in cnt.items()}
            row = _with_gap({"stage": "documents", "documents_in": prev, "documents_out": n, "dropped": other})
            row["characters_out"] = run.table_chars("documents")
            row["tokens_out"] = run.table_tokens("documents")
        elif name in _STEP_ROWS:
            row = _STEP_ROWS[name](run, n, prev)
        else:
            row = _plain_step_row(run, name, n, prev)
        fun.append(row)
        prev = row["documents_out"]
    for row in fun:
        kind = STAGES[row["stage"]].kind if row["stage"] in STAGES else None
        if kind == "extract":  # the per-document stages record characters only after extraction
            row["characters_out"] = totals["characters_extracted"]
        if kind == "language":
            row["characters_in"] = totals["characters_extracted"]
    if last_doc_stage is not None:
        last_doc_stage["characters_out"] = totals["characters_kept"]
        last_doc_stage["tokens_out"] = run.table_tokens("documents")
    return fun
