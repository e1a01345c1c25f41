"""``train report RUN_DIR``: training curves of a pretraining run as PNGs and one HTML page.

Reads ``RUN_DIR/metrics.jsonl`` (one JSON object per event, written by
:class:`webmill.train.metrics.MetricsLogger`: ``{"type": "train", "step", "loss", "lr",
"grad_norm", "ms", "tokens_per_s", "mfu", "tokens"}``, ``{"type": "val", "step", "val_loss",
"val_tokens"}``, ``{"type": "sample", "step", "prompt", "text"}``) and writes
``RUN_DIR/report/{loss,lr,throughput,grad_norm}.png``, ``summary.json`` and ``report.html``
(plots embedded as base64 PNG data URIs, so the page opens offline). ``RUN_DIR`` may be a local
path or an fsspec URL (``s3://bucket/runs/gpt``): every read and write goes through
:class:`webmill.storage.Storage`.

A resumed run appends to the same file; for a step logged twice the last record wins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from webmill.errors import UserError
from webmill.htmlreport import BASE_CSS, esc, img, page, png_bytes
from webmill.storage import Storage, as_storage


def read_metrics(run_dir: str | os.PathLike | Storage) -> dict[str, list[dict]]:
    """Parse ``RUN_DIR/metrics.jsonl`` into records by type.

    Returns:
        ``{"train": [...], "val": [...], "sample": [...]}``, each sorted by ``step`` (int), one
        record per (type, step) for train/val — the last one logged wins (resumed runs).
        ``tokens_per_s`` is also accepted under the older names ``tok_per_s`` / ``tok_s``.

    Raises:
        UserError: the file is missing, a line is not JSON, or it holds no train/val records.
    """
    run = as_storage(run_dir)
    path = run.uri("metrics.jsonl")
    if not run.isfile("metrics.jsonl"):
        raise UserError(f"{path} not found; give the --out directory of `train pretrain` (it writes metrics.jsonl)")
    by_type: dict[str, dict] = {"train": {}, "val": {}}
    samples: list[dict] = []
    with run.open("metrics.jsonl", "r") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                if i > 1 and not line.endswith("\n"):
                    continue  # a run killed mid-write leaves a partial last line
                raise UserError(f"{path} line {i} is not valid JSON ({e}); fix or delete that line") from e
            if not isinstance(r, dict) or "step" not in r:
                raise UserError(f"{path} line {i}: expected a JSON object with a 'step' key")
            kind = r.get("type") or ("val" if "val_loss" in r else "train")
            if kind == "train" and "tokens_per_s" not in r:
                for alt in ("tok_per_s", "tok_s"):
                    if alt in r:
                        r["tokens_per_s"] = r[alt]
            if kind in by_type:
                by_type[kind][int(r["step"])] = r
            elif kind == "sample":
                samples.append(r)
    if not by_type["train"] and not by_type["val"]:
        raise UserError(f"{path} holds no train or val records yet; run some steps first")
    return {"train": [by_type["train"][k] for k in sorted(by_type["train"])],
            "val": [by_type["val"][k] for k in sorted(by_type["val"])],
            "sample": sorted(samples, key=lambda r: r["step"])}


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if not pts:
        return np.zeros(0), np.zeros(0)
    a = np.asarray(pts, dtype=np.float64)
    return a[:, 0], a[:, 1]


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (same length as ``y``)."""
    if window <= 1 or len(y) < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def summarize(metrics: dict[str, list[dict]]) -> dict:
    """Headline numbers of a run: steps, last/min losses, median throughput (JSON-serialisable)."""
    tr, va = metrics["train"], metrics["val"]
    s: dict[str, Any] = {"train_steps": len(tr), "last_step": max([r["step"] for r in tr + va] or [0])}
    if tr:
        s["last_loss"] = tr[-1].get("loss")
        s["min_loss"] = min(r["loss"] for r in tr if isinstance(r.get("loss"), (int, float)))
        tps = [r["tokens_per_s"] for r in tr[1:] or tr if isinstance(r.get("tokens_per_s"), (int, float))]
        s["median_tokens_per_s"] = float(np.median(tps)) if tps else None
        ms = [r["ms"] for r in tr[1:] or tr if isinstance(r.get("ms"), (int, float))]
        s["median_ms_per_step"] = float(np.median(ms)) if ms else None
        s["tokens_seen"] = tr[-1].get("tokens")
        mfu = [r["mfu"] for r in tr if isinstance(r.get("mfu"), (int, float))]
        s["median_mfu"] = float(np.median(mfu)) if mfu else None
    if va:
        s["last_val_loss"] = va[-1].get("val_loss")
        best = min(va, key=lambda r: r.get("val_loss", float("inf")))
        s["best_val_loss"] = best.get("val_loss")
        s["best_val_step"] = best["step"]
    return s


def _plot(name: str, metrics: dict) -> bytes | None:
    from matplotlib.figure import Figure

    tr, va = metrics["train"], metrics["val"]
    fig = Figure(figsize=(8, 3.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    if name == "loss":
        x, y = _series(tr, "loss")
        xv, yv = _series(va, "val_loss")
        if not len(x) and not len(xv):
            return None
        if len(x):
            w = max(1, len(y) // 50)
            ax.plot(x, y, color="#4477aa", alpha=0.35 if w > 1 else 1.0, lw=0.8, label="train loss")
            if w > 1:
                ax.plot(x, _smooth(y, w), color="#4477aa", lw=1.5, label=f"train (mean of {w})")
        if len(xv):
            ax.plot(xv, yv, "o-", color="#cc3311", ms=3, lw=1.2, label="val loss")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title("loss")
        ax.legend(fontsize=8)
    else:
        key, title, ylabel = {"lr": ("lr", "learning rate", "lr"),
                              "throughput": ("tokens_per_s", "training throughput", "tokens/s"),
                              "grad_norm": ("grad_norm", "gradient norm (before clipping)", "L2 norm")}[name]
        x, y = _series(tr, key)
        if not len(x):
            return None
        ax.plot(x, y, color="#228833", lw=1.0)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    return png_bytes(fig)


_CSS = BASE_CSS + "th,td{text-align:left;vertical-align:top}"


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return esc(v)


def write_train_report(run_dir: str | os.PathLike | Storage) -> Path | str:
    """Write ``RUN_DIR/report/report.html`` (self-contained), ``summary.json`` and the curve PNGs.

    Args:
        run_dir: the ``--out`` directory of ``train pretrain`` (holds ``metrics.jsonl``): a local
            path or an fsspec URL.

    Returns:
        ``report.html``: a :class:`~pathlib.Path` for a local run, else its URL (str). Each file
        is published atomically (:class:`webmill.storage.Storage`).

    Raises:
        UserError: ``metrics.jsonl`` is missing, damaged or empty (see :func:`read_metrics`), or
            ``RUN_DIR/report`` cannot be written.
    """
    run = as_storage(run_dir)
    metrics = read_metrics(run)
    summary = summarize(metrics)
    plots = {n: p for n in ("loss", "lr", "throughput", "grad_norm") if (p := _plot(n, metrics)) is not None}
    config = None
    if run.isfile("config.json"):
        try:
            config = json.loads(run.read_text("config.json"))
        except json.JSONDecodeError:
            config = None
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in summary.items())
    imgs = "".join(img(n, p, n) for n, p in plots.items())
    samples = metrics["sample"][-6:]
    sample_html = ("<h2>Last samples</h2><table><tr><th>step</th><th>prompt</th><th>text</th></tr>"
                   + "".join(f"<tr><td>{r['step']}</td><td>{esc(r.get('prompt', ''))}</td>"
                             f"<td>{esc(r.get('text', ''))}</td></tr>" for r in samples)
                   + "</table>") if samples else ""
    model = ""
    if config and isinstance(config.get("model"), dict):
        model = "<h2>Model</h2><p><code>" + esc(json.dumps(config["model"])) + "</code></p>"
    where = str(Path(run_dir)) if run.is_local and not isinstance(run_dir, Storage) else run.uri()
    html_page = page(f"webmill training report: {where}", _CSS,
                     f"<h1>webmill training report</h1><p>{esc(where)}</p><table>{rows}</table>"
                     f"{imgs}{model}{sample_html}")
    out = run.sub("report")
    try:
        out.makedirs()
        for name, data in plots.items():
            out.write_bytes(f"{name}.png", data)
        out.write_text("summary.json", json.dumps(summary, indent=2) + "\n")
        out.write_text("report.html", html_page)
    except OSError as e:
        raise UserError(f"cannot write the training report into {out.uri()}: {e.strerror or e}") from e
    local = out.local_path("report.html")
    return local if local is not None else out.uri("report.html")

