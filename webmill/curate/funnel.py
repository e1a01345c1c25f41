"""The curation funnel: documents left after each stage, summed over a run's stats files.

The rows and their order come from the stage registry (:mod:`webmill.curate.stages`): first
``records``, then every per-document stage of :data:`~webmill.curate.stages.DOCUMENT_STAGES`
that the run counted, then ``documents`` (kept by the per-document stages), then each global
step of :data:`~webmill.curate.stages.GLOBAL_STEPS` that left its output: a step with a stats
file (``OUT/stats/dedup.json``, ...) counts that file's ``documents_out``; a step without one
(the shards) counts the documents of its ``manifest.json``.

Every read goes through :class:`webmill.storage.Storage`, so ``OUT`` may be any fsspec URL.
"""

from __future__ import annotations

import os
from collections import Counter

from webmill.curate.stages import DOCUMENT_STAGES, GLOBAL_STEPS
from webmill.storage import Storage, as_storage


def load_file_stats(out: str | os.PathLike | Storage) -> list[dict]:
    """Per-input stats dicts from ``OUT/stats/*.json`` sorted by file name.

    Global step files (``dedup.json``, ``final.json``, ...) are left out: a per-input file has
    the keys ``records`` and ``stem``. Temp files of a killed writer are not read.

    Raises:
        json.JSONDecodeError: a stats file is not JSON (``curate stats`` names the file first).
    """
    st = as_storage(out)
    stats = []
    for name in st.list("stats", suffix=".json"):
        d = st.read_json(f"stats/{name}")
        if isinstance(d, dict) and "records" in d and "stem" in d:
            stats.append(d)
    return stats


def step_stats_key(stats_file: str) -> str:
    """The key under which :func:`collect_funnel` returns a global step's stats (file stem)."""
    return stats_file.removesuffix(".json")


def collect_funnel(out: str | os.PathLike | Storage) -> dict:
    """Sum the per-file stats and the global steps into one funnel.

    Returns:
        ``{"stages": [(name, documents), ...], "dropped": {reason: n}, "records": n,
        "errors": n, "files": n, "tokens": {split: n}, "<stats stem>": {...}}``: the rows in
        registry order (stages the run did not count are omitted); each global step's stats
        dict under its file's stem (``"dedup"``, ``"final"``, ``"rephrase"``); ``tokens`` only
        when ``OUT/shards/manifest.json`` exists.
    """
    st = as_storage(out)
    files = load_file_stats(st)
    stages: Counter = Counter()
    dropped: Counter = Counter()
    for s in files:
        stages.update(s.get("stages", {}))
        dropped.update(s.get("dropped", {}))
    rows = [("records", stages["records"])]
    rows += [(s.name, stages[s.name]) for s in DOCUMENT_STAGES if s.name in stages]
    rows.append(("documents", sum(s.get("kept", 0) for s in files)))
    result = {"files": len(files), "records": sum(s.get("records", 0) for s in files),
              "errors": sum(s.get("errors", 0) for s in files), "dropped": dict(dropped)}
    for step in GLOBAL_STEPS:
        if step.stats:
            rel = f"stats/{step.stats}"
            if not st.exists(rel):
                continue
            d = st.read_json(rel)
            if not isinstance(d, dict):
                continue  # `curate stats` names the damaged file
            n_out = d.get("documents_out", d.get("docs_out"))
            if n_out is not None:
                rows.append((step.name, int(n_out)))
            result[step_stats_key(step.stats)] = d
        elif st.exists(f"{step.output}/manifest.json"):
            m = st.read_json(f"{step.output}/manifest.json")
            splits = m.get("splits", {})
            result["tokens"] = {k: v.get("num_tokens", 0) for k, v in splits.items()}
            rows.append((step.name, sum(v.get("num_documents", 0) for v in splits.values())))
    result["stages"] = rows
    return result


def print_funnel(out: str | os.PathLike | Storage, console=None) -> dict:
    """Print the funnel as a rich table (records → kept per stage) and return it."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    f = collect_funnel(out)
    table = Table(title=f"webmill funnel: {as_storage(out).uri()}")
    table.add_column("stage")
    table.add_column("documents", justify="right")
    table.add_column("% of HTML/WET", justify="right")
    base = dict(f["stages"]).get("html_or_wet") or 0
    for name, n in f["stages"]:
        pct = f"{100 * n / base:.1f}" if base and name != "records" else ""
        table.add_row(name, f"{n:,}", pct)
    console.print(table)
    top = sorted(f["dropped"].items(), key=lambda kv: -kv[1])
    console.print("dropped by reason: " + ", ".join(f"{k}={v}" for k, v in top))
    console.print(f"files={f['files']} records={f['records']:,} record errors={f['errors']}")
    if "tokens" in f:
        console.print("tokens: " + ", ".join(f"{k}={v:,}" for k, v in f["tokens"].items()))
    return f
