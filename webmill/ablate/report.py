"""``ABLATION/results.json`` and ``ABLATION/report.html`` of a data ablation.

results.json (``format = "webmill-ablation"``, version 1)::

    settings       the command's settings (inputs, tokens, model, seed, eval points, hold-out)
    budget         tokens (asked), tokens_per_step, max_steps, ckpt_every, eval_steps, train_tokens
    eval           the common eval set: source (heldout | text), data, documents, bytes,
                   documents_available (held out and kept by every recipe, before --eval-bytes)
    recipes[]      name, config, config_hash, shared_document_step_with (the recipe whose
                   per-document step it used; itself when it ran it), final_subdir, documents
                   (kept), heldout_documents, train_documents, train_bytes, train_tokens,
                   tokenizer, epochs (budget / training tokens), params, funnel (stage, out),
                   evals[]: step, tokens_seen, loss, bpb, eval_tokens, eval_bytes, tasks {name:
                   {acc, acc_norm}}
    table[]        one row per recipe at its last checkpoint: name, bpb, loss, tasks, documents,
                   train_tokens, epochs

No wall times or dates are in it, so a rerun that does no new work writes the same bytes.
The page reuses :mod:`webmill.htmlreport` (one self-contained page, base64 PNGs), as the
training report does.
"""

from __future__ import annotations

import json

from webmill.htmlreport import BASE_CSS, esc, img, page, png_bytes
from webmill.storage import Storage

FORMAT, VERSION = "webmill-ablation", 1
COLORS = ("#4477aa", "#cc3311", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")


def _funnel(st: Storage, name: str) -> list[dict]:
    rel = f"recipes/{name}/report/stats.json"
    if not st.isfile(rel):
        return []
    try:
        stats = json.loads(st.read_text(rel))
    except json.JSONDecodeError:
        return []
    return [{"stage": s["stage"], "documents_out": s.get("documents_out")} for s in stats.get("funnel", [])]


def build_results(st: Storage, recipes, shared: dict, curated: dict, eval_rec: dict, manifests: dict,
                  trained: dict, evals: dict, budget, settings: dict) -> dict:
    """The results dict (module docstring) from the records of :mod:`webmill.ablate.run`."""
    rows, table = [], []
    for r in recipes:
        split = eval_rec["recipes"][r.name]
        train_tokens = manifests[r.name]["splits"]["train"]["num_tokens"]
        points = []
        for e in evals[r.name]:
            points.append({"step": e["step"], "tokens_seen": e["step"] * trained[r.name]["tokens_per_step"],
                           "loss": e["loss"], "bpb": e["bpb"], "eval_tokens": e["tokens"], "eval_bytes": e["bytes"],
                           "tasks": {t["task"]: {"acc": t["acc"], "acc_norm": t["acc_norm"]} for t in e["tasks"]}})
        epochs = budget.train_tokens / train_tokens if train_tokens else None
        rows.append({"name": r.name, "config": r.config_path, "config_hash": r.config_hash,
                     "shared_document_step_with": shared[r.name], "final_subdir": curated[r.name]["final_subdir"],
                     "documents": split["documents"], "heldout_documents": split["heldout_documents"],
                     "train_documents": split["train_documents"], "train_bytes": split["train_bytes"],
                     "train_tokens": train_tokens, "tokenizer": manifests[r.name]["tokenizer"]["name"],
                     "epochs": epochs, "params": trained[r.name]["params"], "funnel": _funnel(st, r.name),
                     "evals": points})
        last = points[-1] if points else {}
        table.append({"name": r.name, "bpb": last.get("bpb"), "loss": last.get("loss"), "tasks": last.get("tasks", {}),
                      "documents": split["documents"], "train_tokens": train_tokens, "epochs": epochs})
    return {"format": FORMAT, "version": VERSION, "settings": settings,
            "budget": {"tokens": budget.tokens, "tokens_per_step": budget.tokens_per_step,
                       "max_steps": budget.max_steps, "ckpt_every": budget.ckpt_every,
                       "eval_steps": budget.eval_steps, "train_tokens": budget.train_tokens},
            "eval": {k: eval_rec.get(k) for k in ("source", "data", "documents", "bytes", "documents_available")},
            "recipes": rows, "table": table}


def _curve(results: dict, key: str, title: str, ylabel: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.3), dpi=100, layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(results["recipes"]):
        pts = [(p["tokens_seen"], p[key]) for p in r["evals"] if p.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", color=COLORS[i % len(COLORS)], ms=4, lw=1.5, label=r["name"])
    ax.set_xlabel("training tokens seen")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return png_bytes(fig)


def _f(v, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return esc(v)


_CSS = BASE_CSS + "th,td{text-align:right}th:first-child,td:first-child{text-align:left}.note{color:#555;font-size:13px}"


def render(results: dict) -> str:
    """The HTML page of ``results`` (self-contained)."""
    b, ev = results["budget"], results["eval"]
    tasks = sorted({t for row in results["table"] for t in row["tasks"]})
    head = "".join(f"<th>{esc(t)} acc</th><th>{esc(t)} acc_norm</th>" for t in tasks)
    final = "".join(
        f"<tr><td>{esc(row['name'])}</td><td><b>{_f(row['bpb'])}</b></td><td>{_f(row['loss'])}</td>"
        + "".join(f"<td>{_f(row['tasks'].get(t, {}).get('acc'), 3)}</td>"
                  f"<td>{_f(row['tasks'].get(t, {}).get('acc_norm'), 3)}</td>" for t in tasks)
        + f"<td>{_f(row['documents'])}</td><td>{_f(row['train_tokens'])}</td><td>{_f(row['epochs'], 2)}</td></tr>"
        for row in results["table"])
    recipes = "".join(
        f"<tr><td>{esc(r['name'])}</td><td>{esc(r['config'])}</td><td>{esc(r['shared_document_step_with'])}</td>"
        f"<td>{_f(r['documents'])}</td><td>{_f(r['heldout_documents'])}</td><td>{_f(r['train_documents'])}</td>"
        f"<td>{_f(r['train_bytes'])}</td><td>{_f(r['train_tokens'])}</td><td>{esc(r['tokenizer'])}</td>"
        f"<td>{_f(r['params'])}</td></tr>" for r in results["recipes"])
    stages = [s["stage"] for s in (results["recipes"][0]["funnel"] if results["recipes"] else [])]
    funnel = ""
    if stages:
        cols = "".join(f"<th>{esc(r['name'])}</th>" for r in results["recipes"])
        by = [{s["stage"]: s["documents_out"] for s in r["funnel"]} for r in results["recipes"]]
        funnel = ("<h2>Funnel (documents after each stage)</h2><table><tr><th>stage</th>" + cols + "</tr>"
                  + "".join(f"<tr><td>{esc(s)}</td>" + "".join(f"<td>{_f(m.get(s))}</td>" for m in by) + "</tr>"
                            for s in stages) + "</table>")
    curves = (img("bpb", _curve(results, "bpb", "bits per byte on the common eval set", "bits per byte"), "bpb curves")
              + img("loss", _curve(results, "loss", "loss on the common eval set", "nats per token"), "loss curves"))
    body = (f"<h1>webmill data ablation</h1>"
            f"<p>{len(results['recipes'])} recipes, each trained from the same initialisation (seed "
            f"{results['settings']['seed']}) on {b['train_tokens']:,} tokens ({b['max_steps']} steps × "
            f"{b['tokens_per_step']:,}); evaluated at steps {', '.join(map(str, b['eval_steps']))} on the same "
            f"{ev['documents']} documents, {ev['bytes']:,} bytes ({esc(ev['source'])}).</p>"
            f"<h2>Final checkpoint</h2><table><tr><th>recipe</th><th>bits per byte</th><th>loss</th>{head}"
            f"<th>documents kept</th><th>training tokens</th><th>epochs</th></tr>{final}</table>"
            f"<p class='note'>Lower bits per byte is better; it compares across tokenizers. Differences smaller "
            f"than the spread between checkpoints are noise at this budget.</p>"
            f"{curves}<h2>Recipes</h2><table><tr><th>recipe</th><th>config</th><th>per-document step of</th>"
            f"<th>kept</th><th>held out</th><th>train docs</th><th>train bytes</th><th>train tokens</th>"
            f"<th>tokenizer</th><th>params</th></tr>{recipes}</table>{funnel}")
    return page("webmill data ablation", _CSS, body)


def write_report(st: Storage, results: dict) -> str:
    """Write ``ABLATION/report.html``; returns its local path or URI."""
    st.write_text("report.html", render(results))
    local = st.local_path("report.html")
    return str(local) if local is not None else st.uri("report.html")
