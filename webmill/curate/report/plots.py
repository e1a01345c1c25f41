"""The report's plots: one function per plot (``stats`` dict of :func:`collect_stats` → PNG bytes,
or None when the plot's section is absent), listed in :data:`PLOTS`.

Plots are bare matplotlib Figures rendered with the Agg canvas (no pyplot state, no display),
with fixed margins in inches (cheaper than constrained layout). A plot whose section was
skipped is not drawn.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from webmill.curate.report.numbers import s_curve
from webmill.curate.stages import GLOBAL_STEPS
from webmill.htmlreport import png_bytes

TOP_LANGUAGES = 20
_STEP_NAMES = {s.name for s in GLOBAL_STEPS}


def _figure(width: float = 9.0, height: float = 3.6, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(1, ncols) if ncols > 1 else fig.subplots()
    _margins(fig, left_in=0.75)
    return fig, axes


def _margins(fig, left_in: float, right_in: float = 0.25, bottom_in: float = 0.55, top_in: float = 0.35) -> None:
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=min(left_in / w, 0.6), right=1 - right_in / w, bottom=min(bottom_in / h, 0.4),
                        top=max(1 - top_in / h, 0.6), wspace=0.3)


def _barh(ax, labels: list[str], values: list[float], title: str, xlabel: str, log: bool = False) -> None:
    y = np.arange(len(labels))
    _margins(ax.figure, left_in=0.3 + 0.068 * max((len(x) for x in labels), default=4))
    ax.barh(y, values, color="#4477aa")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    if log and any(v > 0 for v in values):
        ax.set_xscale("log")
    for yi, v in zip(y, values):
        ax.text(v, yi, f" {v:,.0f}" if float(v).is_integer() else f" {v:,.1f}", va="center", fontsize=7)
    ax.margins(x=0.15)


def _barh_plot(items: list, height_per_bar: float, title: str, xlabel: str, log: bool = False) -> bytes:
    fig, ax = _figure(9, height_per_bar * len(items) + 1.2)
    _barh(ax, [k for k, _ in items], [v for _, v in items], title, xlabel, log=log)
    return png_bytes(fig)


def _hist_ax(ax, h: dict, title: str, xlabel: str) -> None:
    if not h.get("count"):
        ax.text(0.5, 0.5, "no documents", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
        return
    edges = np.asarray(h["histogram"]["edges"], dtype=np.float64)
    counts = np.asarray(h["histogram"]["counts"])
    left = np.maximum(edges[:-1], 1.0)
    ax.bar(left, counts, width=np.maximum(edges[1:] - left, 1e-9), align="edge", color="#66aa55", edgecolor="white")
    ax.set_xscale("log")
    ax.axvline(max(h["median"], 1.0), color="#cc3311", lw=1, label=f"median {h['median']:,.0f}")
    ax.legend(fontsize=7)
    ax.set_title(f"{title} (n={h['count']:,})", fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("documents", fontsize=9)


def _funnel_plot(stats: dict) -> bytes | None:
    fun = stats.get("funnel", [])
    if not fun:
        return None
    return _barh_plot([(r["stage"], r["documents_out"]) for r in fun], 0.35, "documents left after each stage",
                      "documents")


def _drop_reasons_plot(stats: dict) -> bytes | None:
    """Per-document drop reasons plus those of the global steps (duplicates, quality, ...)."""
    extra: Counter = Counter()
    for r in stats.get("funnel", []):
        if r["stage"] in _STEP_NAMES:
            extra.update(r["dropped"])
    all_drops = Counter(stats["totals"]["dropped"]) + extra
    if not all_drops:
        return None
    return _barh_plot(sorted(all_drops.items(), key=lambda kv: -kv[1]), 0.22, "documents dropped by reason",
                      "documents")


def _languages_plot(stats: dict) -> bytes | None:
    if not stats.get("languages"):
        return None
    return _barh_plot(list(stats["languages"].items())[:TOP_LANGUAGES], 0.25,
                      f"language of the output documents ({stats.get('documents_table')})", "documents")


def _domains_plot(stats: dict) -> bytes | None:
    if not stats.get("domains", {}).get("top"):
        return None
    return _barh_plot(stats["domains"]["top"], 0.22,
                      f"top registered domains ({stats['domains']['distinct']:,} distinct)", "documents")


def _lengths_plot(stats: dict) -> bytes | None:
    if not stats.get("lengths"):
        return None
    ls = stats["lengths"]
    keys = [k for k in ("characters", "words", "tokens") if k in ls]
    fig, axes = _figure(4.2 * len(keys), 3.2, ncols=len(keys))
    fig.subplots_adjust(wspace=0.4)
    for ax, k in zip(np.atleast_1d(axes), keys):
        _hist_ax(ax, ls[k], f"document length: {k}", f"{k} per document (log)")
    return png_bytes(fig)


def _quality_plot(stats: dict) -> bytes | None:
    if not stats.get("quality"):
        return None
    q = stats["quality"]
    fig, (a1, a2) = _figure(9, 3.2, ncols=2)
    h = q.get("score_histogram") or []
    e = np.asarray(q.get("score_histogram_edges") or np.linspace(0, 1, len(h) + 1))
    a1.bar(e[:-1], h, width=np.diff(e), align="edge", color="#aa7744", edgecolor="white")
    for edge in q.get("bucket_edges") or []:
        a1.axvline(edge, color="black", lw=0.8, ls="--")
    a1.set_title("quality score (dashed: bucket edges)", fontsize=10)
    a1.set_xlabel("score", fontsize=9)
    a1.set_ylabel("documents", fontsize=9)
    sizes = q.get("bucket_sizes") or []
    a2.bar(np.arange(len(sizes)), sizes, color="#aa7744")
    a2.set_xticks(np.arange(0, len(sizes), 1 if len(sizes) <= 12 else 2))
    a2.tick_params(axis="x", labelsize=8)
    a2.set_title("documents per quality bucket", fontsize=10)
    a2.set_xlabel("bucket (0 = lowest)", fontsize=9)
    return png_bytes(fig)


def _dedup_plot(stats: dict) -> bytes | None:
    """Near-duplicate component sizes, and the LSH S-curve with its (1/b)^(1/r) threshold."""
    if not stats.get("dedup"):
        return None
    d = stats["dedup"]
    fig, (a1, a2) = _figure(9, 3.2, ncols=2)
    hist = d.get("component_size_histogram") or {}
    keys = sorted(hist, key=lambda k: int("".join(ch for ch in k.split("-")[0] if ch.isdigit()) or 0))
    a1.bar(keys, [hist[k] for k in keys], color="#7755aa")
    a1.tick_params(axis="x", labelsize=7)
    a1.set_ylim(bottom=0)
    if not any(hist.values()):
        a1.text(0.5, 0.5, "no near-duplicate components", ha="center", va="center", transform=a1.transAxes)
    a1.set_title(f"near-dup components; removed {100 * d['removed_fraction']:.1f}% "
                 f"(exact {d['exact_removed']:,}, near {d['near_removed']:,})", fontsize=9)
    a1.set_xlabel("documents per component", fontsize=9)
    a1.set_ylabel("components", fontsize=9)
    if d.get("bands") and d.get("rows"):
        j = np.linspace(0, 1, 201)
        a2.plot(j, s_curve(j, d["bands"], d["rows"]), color="#7755aa")
        t = d.get("threshold_estimate")
        a2.axvline(t, color="black", lw=0.8, ls="--", label=f"(1/b)^(1/r) = {t:.2f}")
        a2.legend(fontsize=7, loc="upper left")
        a2.set_title(f"P(candidate) = 1−(1−J^{d['rows']})^{d['bands']}", fontsize=10)
        a2.set_xlabel("Jaccard similarity J", fontsize=9)
        a2.set_ylabel("probability", fontsize=9)
    else:
        a2.text(0.5, 0.5, "MinHash off", ha="center", va="center", transform=a2.transAxes)
    return png_bytes(fig)


def _pii_plot(stats: dict) -> bytes | None:
    items = [(k, v) for k, v in stats.get("pii", {}).items() if v]
    if not items:
        return None
    return _barh_plot(items, 0.3, "PII replaced, by type", "occurrences")


def _rephrase_plot(stats: dict) -> bytes | None:
    if not (stats.get("rephrase") and stats["rephrase"]["by_style"]):
        return None
    by = stats["rephrase"]["by_style"]
    kinds = [k for k in ("requested", "rephrased", "rejected", "failed") if any(k in v for v in by.values())]
    fig, ax = _figure(9, 0.3 * len(by) * max(1, len(kinds) / 2) + 1.4)
    _margins(fig, left_in=0.3 + 0.068 * max(len(k) for k in by))
    y = np.arange(len(by))
    h = 0.8 / len(kinds)
    colors = {"requested": "#bbbbbb", "rephrased": "#228833", "rejected": "#ccbb44", "failed": "#ee6677"}
    for i, k in enumerate(kinds):
        ax.barh(y + i * h, [v.get(k, 0) for v in by.values()], height=h, color=colors[k], label=k)
    ax.set_yticks(y + h * (len(kinds) - 1) / 2, list(by), fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    ax.set_title("rephrasing by style", fontsize=10)
    ax.set_xlabel("documents", fontsize=9)
    return png_bytes(fig)


def _tokens_plot(stats: dict) -> bytes | None:
    if not stats.get("tokens"):
        return None
    t = stats["tokens"]
    fig, (a1, a2) = _figure(9, 3.0, ncols=2)
    sp = t["splits"]
    a1.bar(list(sp.keys()), [v["num_tokens"] for v in sp.values()], color="#228833")
    a1.set_title(f"tokens per split ({t['tokenizer']})", fontsize=10)
    a1.set_ylabel("tokens", fontsize=9)
    src = t.get("sources") or {}
    a2.bar(list(src.keys()), [v.get("num_tokens", 0) for v in src.values()], color="#228833")
    a2.set_title("tokens per source", fontsize=10)
    return png_bytes(fig)


def _throughput_plot(stats: dict) -> bytes | None:
    thr = [r for r in stats.get("throughput", []) if r.get("docs_per_s")]
    if not thr:
        return None
    return _barh_plot([(r["stage"], r["docs_per_s"]) for r in thr], 0.3,
                      "throughput per stage (documents entering / seconds summed over files)",
                      "documents/s (log)", log=True)


#: The plots in page order: file name (without ``.png``) → drawing function.
PLOTS: dict[str, Callable[[dict], bytes | None]] = {
    "funnel": _funnel_plot, "drop_reasons": _drop_reasons_plot, "languages": _languages_plot,
    "domains": _domains_plot, "lengths": _lengths_plot, "quality": _quality_plot, "dedup": _dedup_plot,
    "pii": _pii_plot, "rephrase": _rephrase_plot, "tokens": _tokens_plot, "throughput": _throughput_plot,
}


def make_plots(stats: dict) -> dict[str, bytes]:
    """Render the report's plots from :func:`collect_stats` output.

    Returns:
        ``{name: PNG bytes}`` (names without ``.png``); a plot whose section was skipped is absent.
    """
    return {name: png for name, draw in PLOTS.items() if (png := draw(stats)) is not None}
