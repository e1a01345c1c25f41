"""The curation funnel: documents left after each stage, summed over a run's stats files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def load_file_stats(out: Path) -> list[dict]:
    """Per-input stats dicts from ``OUT/stats/*.json`` (global step files excluded), sorted."""
    stats = []
    for p in sorted((Path(out) / "stats").glob("*.json")):
        d = json.loads(p.read_text())
        if "records" in d and "stem" in d:
            stats.append(d)
    return stats


def collect_funnel(out: Path) -> dict:
    """Sum the per-file stats and the global steps into one funnel.

    Returns ``{"stages": [(name, documents), ...], "dropped": {reason: n}, "records": n,
    "errors": n, "files": n, "tokens": {...}}``; stages missing from the run are omitted.
    """
    out = Path(out)
    files = load_file_stats(out)
    stages: Counter = Counter()
    dropped: Counter = Counter()
    for s in files:
        stages.update(s.get("stages", {}))
        dropped.update(s.get("dropped", {}))
    order = ["records", "html_or_wet", "url_filter", "extract", "language", "gopher_repetition",
             "gopher_quality", "c4", "fineweb"]
    rows = [(name, stages[name]) for name in order if name in stages or name == "records"]
    kept = sum(s.get("kept", 0) for s in files)
    rows.append(("documents", kept))
    result = {"files": len(files), "records": sum(s.get("records", 0) for s in files),
              "errors": sum(s.get("errors", 0) for s in files), "dropped": dict(dropped)}
    dd = out / "stats" / "dedup.json"
    if dd.exists():
        d = json.loads(dd.read_text())
        n_out = d.get("documents_out", d.get("docs_out"))
        if n_out is not None:
            rows.append(("dedup", int(n_out)))
        result["dedup"] = d
    fin = out / "stats" / "final.json"
    if fin.exists():
        f = json.loads(fin.read_text())
        rows.append(("pii_quality", int(f["documents_out"])))
        result["final"] = f
    man = out / "shards" / "manifest.json"
    if man.exists():
        m = json.loads(man.read_text())
        result["tokens"] = {k: v.get("num_tokens", 0) for k, v in m.get("splits", {}).items()}
        rows.append(("shards", sum(v.get("num_documents", 0) for v in m.get("splits", {}).values())))
    result["stages"] = rows
    return result


def print_funnel(out: Path, console=None) -> dict:
    """Print the funnel as a rich table (records → kept per stage) and return it."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    f = collect_funnel(out)
    table = Table(title=f"webmill funnel: {out}")
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
