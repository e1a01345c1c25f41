"""The numbers of the report (the content of ``stats.json``): :func:`collect_stats`, with one
function per section.

Counts are documents, ``characters`` are Unicode code points, ``tokens`` are tokenizer tokens
(shards include one EOT per document), seconds are wall-clock seconds summed over input files.
A section whose input is absent is left out and ``skipped[section]`` says why.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import numpy as np

from webmill.curate.report.decontam_section import decontam_section
from webmill.curate.report.examples_section import examples_section
from webmill.curate.report.funnel_section import funnel_section
from webmill.curate.report.inputs import hosts, read_json, read_jsonl, table_column
from webmill.curate.report.numbers import describe, registered_domains, s_curve
from webmill.curate.report.quality_section import quality_section
from webmill.curate.report.rundata import RunData, load_run
from webmill.curate.report.tokens import shard_num_tokens
from webmill.curate.stages import DOCUMENT_STAGES
from webmill.storage import Storage, as_storage

STATS_FORMAT = "webmill-report-stats"
STATS_VERSION = 1
TOP_DOMAINS = 25
NO_MANIFEST = "no OUT/shards/manifest.json (run with --no-tokenize?)"
REPHRASE_KEYS = ("documents_in", "documents_out", "synthetic_documents", "rephrase_failed", "rephrase_rejected",
                 "backend", "model", "generated_tokens", "seconds", "tokens_per_s", "synthetic_documents_per_min")
BY_STYLE_KEYS = ("requested", "rephrased", "rejected", "failed")


def totals_section(files: list[dict]) -> dict:
    """Sums over the per-file stats; ``records == kept + dropped_total + errors``."""
    dropped: Counter = Counter()
    chars: Counter = Counter()
    secs: Counter = Counter()
    for s in files:
        dropped.update(s.get("dropped", {}))
        chars.update(s.get("chars", {}))
        secs.update(s.get("seconds", {}))
    return {
        "files": len(files),
        "records": sum(s["records"] for s in files),
        "kept": sum(s["kept"] for s in files),
        "errors": sum(s["errors"] for s in files),
        "dropped_total": sum(dropped.values()),
        "dropped": dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))),
        "characters_extracted": int(chars.get("extracted", 0)),
        "characters_kept": int(chars.get("kept", 0)),
        "seconds_total": round(sum(s.get("seconds_total", 0.0) for s in files), 4),
        "seconds": {k: round(v, 4) for k, v in sorted(secs.items())},
        "warnings": sum(len(s.get("warnings", [])) for s in files),
        "read_errors": sum(len(s.get("read_errors", [])) for s in files),
    }


def files_section(files: list[dict]) -> list[dict]:
    """One row per input file."""
    return [{
        "stem": s["stem"], "input": s.get("input", ""), "records": s["records"], "kept": s["kept"],
        "dropped": sum(s.get("dropped", {}).values()), "errors": s["errors"],
        "html_or_wet": s.get("stages", {}).get("html_or_wet", 0),
        "seconds_total": s.get("seconds_total", 0.0), "warnings": len(s.get("warnings", [])),
        "read_errors": len(s.get("read_errors", [])),
    } for s in files]


def failed_section(st: Storage) -> list[dict]:
    """``[{input, reason}]`` from ``OUT/failed.jsonl`` ([] when absent)."""
    if not st.exists("failed.jsonl"):
        return []
    return [{"input": r.get("input", ""), "reason": r.get("reason", "")} for r in read_jsonl(st, "failed.jsonl")]


def throughput_section(run: RunData, totals: dict) -> list[dict]:
    """Documents entering each stage / its seconds summed over files (work per worker).

    The first registry stage (record selection) is timed as ``read``; ``write`` is the kept
    documents; ``dedup`` and ``pii_quality`` come from their stats files.
    """
    st: Counter = Counter()
    secs: Counter = Counter()  # unrounded, unlike totals["seconds"]
    for s in run.files:
        st.update(s.get("stages", {}))
        secs.update(s.get("seconds", {}))
    timed = [s.name for s in DOCUMENT_STAGES[1:]]
    entering = {"read": totals["records"], "write": totals["kept"]}
    prev_name = DOCUMENT_STAGES[0].name
    for name in timed:
        if name in st or name in secs:
            entering[name] = st.get(prev_name, 0)
            prev_name = name if name in st else prev_name
    thr = []
    for name in ["read"] + timed + ["write"]:
        if name in secs:
            sec = float(secs[name])
            docs = int(entering.get(name, 0))
            thr.append({"stage": name, "documents": docs, "seconds": round(sec, 4),
                        "docs_per_s": round(docs / sec, 2) if sec > 0 else None})
    d = run.funnel.get("dedup")
    if d is not None:
        sec = sum(v for v in (d.get("seconds") or {}).values() if isinstance(v, (int, float)))
        if sec:
            thr.append({"stage": "dedup", "documents": d.get("documents_in", 0), "seconds": round(sec, 3),
                        "docs_per_s": round(d.get("documents_in", 0) / sec, 2)})
    f = run.funnel.get("final")
    if f is not None and isinstance(f.get("seconds"), (int, float)) and f["seconds"]:
        thr.append({"stage": "pii_quality", "documents": f["documents_in"], "seconds": f["seconds"],
                    "docs_per_s": round(f["documents_in"] / f["seconds"], 2)})
    return thr


def documents_section(run: RunData) -> dict:
    """``documents_table``, ``languages``, ``domains`` and ``lengths`` of the last document table."""
    last = run.last_table()
    if last is None:
        for key in ("languages", "domains", "lengths"):
            run.skipped[key] = "no document table (OUT/documents, OUT/deduped, OUT/final) holds Parquet files"
        return {}
    files = run.tables[last]
    langs = Counter(x or "unknown" for x in table_column(run.st, files, "language"))
    dom = registered_domains(hosts(run.st, files))
    c, w, _ = run.lengths[last]
    res = {"documents_table": last,
           "languages": dict(sorted(langs.items(), key=lambda kv: (-kv[1], kv[0]))),
           "domains": {"distinct": len(dom), "documents": sum(dom.values()),
                       "top": [[k, v] for k, v in sorted(dom.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DOMAINS]]},
           "lengths": {"characters": describe(c), "words": describe(w)}}
    if run.manifest is not None:
        n_tok, _ = shard_num_tokens(run.st, run.manifest)
        res["lengths"]["tokens"] = describe(n_tok)
        res["lengths"]["tokens"]["source"] = "shards num_tokens (includes EOT)"
    else:
        run.skipped["token_lengths"] = NO_MANIFEST
    return res


def pii_section(run: RunData) -> dict | None:
    """``{type: replacements}`` of final.json's ``pii_counts`` (most first); None when absent."""
    final = run.funnel.get("final")
    if final is None:
        run.skipped["pii"] = "no OUT/stats/final.json (run with --no-pii and no quality stage?)"
        return None
    return dict(sorted(final.get("pii_counts", {}).items(), key=lambda kv: (-kv[1], kv[0])))


def dedup_section(run: RunData) -> dict | None:
    """Removed fraction, exact/near removals, component sizes and the S-curve of dedup.json."""
    d = run.funnel.get("dedup")
    if d is None:
        run.skipped["dedup"] = "no OUT/stats/dedup.json (run with --no-dedup?)"
        return None
    mh = d.get("minhash") or {}
    n_in = d.get("documents_in", 0)
    bands, rows = mh.get("bands"), mh.get("rows")
    dd = {"documents_in": n_in, "documents_out": d.get("documents_out"),
          "documents_removed": d.get("documents_removed", 0),
          "removed_fraction": round(d.get("documents_removed", 0) / n_in, 6) if n_in else 0.0,
          "exact_removed": (d.get("exact") or {}).get("documents_removed", 0),
          "exact_groups": (d.get("exact") or {}).get("duplicate_groups", 0),
          "near_removed": mh.get("documents_removed", 0),
          "near_duplicate_components": mh.get("near_duplicate_components", 0),
          "component_size_histogram": mh.get("component_size_histogram", {}),
          "bands": bands, "rows": rows, "threshold": mh.get("threshold"),
          "minhash_enabled": mh.get("enabled", bool(bands))}
    if bands and rows:
        js = np.linspace(0, 1, 21)
        dd["s_curve"] = [[round(float(j), 2), round(float(p), 6)] for j, p in zip(js, s_curve(js, bands, rows))]
        dd["threshold_estimate"] = round((1 / bands) ** (1 / rows), 4)
    return dd


def rephrase_section(run: RunData) -> dict | None:
    """Rephrasing counts per style from ``OUT/stats/rephrase.json``, else a ``synthetic_style``
    column of the last table (then only ``rephrased`` per style); None when it did not run.

    Raises:
        UserError: rephrase.json is not a JSON object.
    """
    from webmill.errors import UserError

    rel = "stats/rephrase.json"
    if run.st.exists(rel):
        r = read_json(run.st, rel)
        if not isinstance(r, dict):
            raise UserError(f"{run.st.uri(rel)} is not a JSON object; re-run `curate rephrase`")
        by: dict[str, dict] = {}
        for style, v in (r.get("by_style") or {}).items():
            if isinstance(v, dict):
                by[str(style)] = {k: int(v.get(k, 0) or 0) for k in BY_STYLE_KEYS}
            elif isinstance(v, (int, float)):
                by[str(style)] = {"rephrased": int(v)}
        return {"source": "stats/rephrase.json", "by_style": by, **{k: r[k] for k in REPHRASE_KEYS if k in r}}
    files = run.tables["rephrased"] or run.tables["final"]
    styles = [s for s in table_column(run.st, files, "synthetic_style") if s]
    if styles:
        return {"source": "synthetic_style column",
                "by_style": {k: {"rephrased": n} for k, n in Counter(styles).most_common()}}
    run.skipped["rephrase"] = "no OUT/stats/rephrase.json and no synthetic_style column (rephrasing did not run)"
    return None


def tokens_section(run: RunData) -> dict | None:
    """Tokens and documents per split and per source from the shard manifest."""
    m = run.manifest
    if m is None:
        run.skipped["tokens"] = NO_MANIFEST
        return None
    splits = {k: {"num_tokens": v.get("num_tokens", 0), "num_documents": v.get("num_documents", 0),
                  "sources": v.get("sources", {})} for k, v in m.get("splits", {}).items()}
    tok = m.get("tokenizer") or {}
    return {"tokenizer": tok.get("name"), "vocab_size": tok.get("vocab_size"),
            "total": sum(v["num_tokens"] for v in splits.values()),
            "documents": sum(v["num_documents"] for v in splits.values()),
            "files": len(m.get("files", [])), "splits": splits, "sources": m.get("sources", {})}


def collect_stats(out: str | os.PathLike | Storage) -> dict:
    """Gather every number of the report of run directory ``out`` (the content of stats.json).

    Args:
        out: output directory of ``curate run`` (local path, fsspec URL or Storage); must hold
            ``stats/<stem>.json`` files.

    Returns:
        A JSON-serialisable dict; see ``docs/report.md`` for its keys.

    Raises:
        UserError: ``out`` has no per-file stats, or one of its JSON/Parquet files is damaged.
    """
    st = as_storage(out)
    run = load_run(st)
    res: dict[str, Any] = {"format": STATS_FORMAT, "version": STATS_VERSION, "out": st.uri(),
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    totals = res["totals"] = totals_section(run.files)
    res["files"] = files_section(run.files)
    res["failed"] = failed_section(st)
    res["funnel"] = funnel_section(run, totals)
    res["tokens_estimated"] = run.tokens_estimated
    res["throughput"] = throughput_section(run, totals)
    res.update(documents_section(run))
    pii = pii_section(run)
    if pii is not None:
        res["pii"] = pii
    for key, section in (("quality", quality_section), ("decontaminate", decontam_section), ("dedup", dedup_section),
                         ("rephrase", rephrase_section), ("tokens", tokens_section)):
        value = section(run)
        if value:
            res[key] = value
    examples, res["drop_reasons"] = examples_section(run)
    if examples:
        res["examples"] = examples
    res["skipped"] = run.skipped
    return res
