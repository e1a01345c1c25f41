"""The report page: :func:`render_html`, one function per section of ``report.html``.

The page skeleton, image embedding and escaping come from :mod:`webmill.htmlreport`, shared
with the training report. Every value shown comes from ``stats`` (the content of stats.json).
"""

from __future__ import annotations

from typing import Any

from webmill.curate.report.examples_section import decision
from webmill.htmlreport import esc, img, page

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;display:block;margin:8px 0}.note{color:#777;font-size:13px}.small{font-size:12px;color:#555}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:1.4em}
details{border:1px solid #ddd;border-radius:4px;margin:6px 0;padding:4px 10px}summary{cursor:pointer;font-size:14px}
.ex{border-top:1px solid #eee;padding:6px 0}.ex pre{white-space:pre-wrap;font-size:12px;margin:4px 0;
background:#fafafa;padding:6px;max-height:12em;overflow:auto}.dec{font-size:13px;color:#a33}
"""


def _fmt(v: Any) -> str:
    """A table cell: — for None, thousands separators, 2 decimals below 10⁶, text escaped."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return esc(v)


def _table(headers: list[str], rows: list[list], numeric: set[int] | None = None) -> str:
    """A table; columns in ``numeric`` (default: all but the first) are right-aligned."""
    numeric = numeric if numeric is not None else set(range(1, len(headers)))
    h = "".join(f"<th>{esc(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{_fmt(c)}</td>' if i in numeric else f"<td>{_fmt(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


class _Page:
    """Helpers bound to one report: plot images and skip notes."""

    def __init__(self, stats: dict, plots: dict[str, bytes]):
        self.stats, self.plots, self.skipped = stats, plots, stats.get("skipped", {})

    def img(self, name: str, alt: str) -> str:
        return img(name, self.plots[name], alt) if name in self.plots else ""

    def skip_note(self, key: str) -> str:
        return f'<p class="note">Skipped: {esc(self.skipped[key])}.</p>' if key in self.skipped else ""


def _header(p: _Page) -> list[str]:
    stats, t = p.stats, p.stats["totals"]
    cards = [("input files", t["files"]), ("records", t["records"]), ("documents kept", t["kept"]),
             ("record errors", t["errors"]), ("failed inputs", len(stats["failed"]))]
    if stats.get("funnel"):
        cards.append(("final documents", stats["funnel"][-1]["documents_out"]))
    if stats.get("tokens"):
        cards.append(("tokens", stats["tokens"]["total"]))
    return [f"<h1>webmill dataset report</h1><p class=\"small\">{esc(stats['out'])} · {esc(stats['created'])}</p>",
            '<div class="cards">' + "".join(f'<div class="card"><b>{_fmt(v)}</b>{esc(k)}</div>'
                                            for k, v in cards) + "</div>"]


def _funnel(p: _Page) -> list[str]:
    rows = []
    for r in p.stats.get("funnel", []):
        reasons = ", ".join(f"{k}={v:,}" for k, v in sorted(r["dropped"].items(), key=lambda kv: -kv[1]))
        if r.get("unexplained"):
            reasons += (", " if reasons else "") + f"record errors/other={r['unexplained']:,}"
        if r.get("added"):
            what = "synthetic documents added" if r["stage"] == "rephrase" else "mixing repeats (+) / subsampling (−)"
            reasons += (", " if reasons else "") + f"{what}={r['added']:,}"
        rows.append([r["stage"], r["documents_in"], r["documents_out"],
                     r["documents_in"] + r.get("added", 0) - r["documents_out"],
                     r.get("characters_in"), r.get("characters_out"), r.get("tokens_in"), r.get("tokens_out"),
                     reasons])
    parts = ["<h2 id=\"funnel\">Funnel</h2><p class=\"small\">Documents, characters and tokens entering "
             "and leaving each stage; every drop reason is listed with its stage. Characters and tokens are "
             "shown where the run recorded or stored the text (— otherwise).</p>",
             _table(["stage", "docs in", "docs out", "dropped", "chars in", "chars out", "tokens in",
                     "tokens out", "drop reasons"], rows, numeric=set(range(1, 8)))]
    if p.stats.get("tokens_estimated"):
        parts.append('<p class="note">Token counts of the large document tables are estimated from a sample.</p>')
    return parts + [p.skip_note("tokens_per_stage"),
                    p.img("funnel", "funnel bar chart") + p.img("drop_reasons", "drop reasons")]


def _files(p: _Page) -> list[str]:
    files, t = p.stats["files"], p.stats["totals"]
    parts = ["<h2 id=\"files\">Input files</h2>",
             _table(["file", "records", "HTML/WET", "kept", "dropped", "errors", "warnings", "read errors", "seconds"],
                    [[f["stem"], f["records"], f["html_or_wet"], f["kept"], f["dropped"], f["errors"],
                      f["warnings"], f["read_errors"], f["seconds_total"]] for f in files]
                    + [["total", t["records"], sum(f["html_or_wet"] for f in files), t["kept"],
                        t["dropped_total"], t["errors"], t["warnings"], t["read_errors"], t["seconds_total"]]])]
    if p.stats["failed"]:
        parts.append("<h3>Failed inputs</h3>" + _table(["input", "reason"],
                                                       [[f["input"], f["reason"]] for f in p.stats["failed"]],
                                                       numeric=set()))
    else:
        parts.append('<p class="note">No failed inputs.</p>')
    return parts


def _documents(p: _Page) -> list[str]:
    parts = ["<h2 id=\"documents\">Output documents</h2>"]
    if "documents_table" in p.stats:
        parts.append(f'<p class="small">From OUT/{esc(p.stats["documents_table"])}/ '
                     "(the last document table of the run).</p>")
    parts.append("<h3>Languages</h3>" + p.skip_note("languages") + p.img("languages", "languages"))
    parts.append("<h3>Registered domains</h3>" + p.skip_note("domains") + p.img("domains", "top domains"))
    parts.append("<h3>Document length</h3>" + p.skip_note("lengths"))
    if p.stats.get("lengths"):
        parts.append(_table(["measure", "documents", "sum", "mean", "p10", "median", "p90", "max"],
                            [[k, v.get("count"), v.get("sum"), v.get("mean"), v.get("p10"), v.get("median"),
                              v.get("p90"), v.get("max")] for k, v in p.stats["lengths"].items()]))
    parts.append(p.skip_note("token_lengths") + p.img("lengths", "document length histograms"))
    return parts


def _pct(x: float | None) -> str | None:
    return None if x is None else f"{100 * x:.1f}%"


def _edge(x: float | None) -> str | None:
    return None if x is None else f"{x:.4f}"


def _quality(p: _Page) -> list[str]:
    """Always a heading: mode and what it kept, model, histogram and buckets table (or the skip note)."""
    parts = ["<h2 id=\"quality\">Quality</h2>" + p.skip_note("quality")]
    q = p.stats.get("quality")
    if not q:
        return parts
    mode = q.get("mode")
    rule = {"buckets": "every document kept, scored and bucketed (annotate only)",
            "threshold": f"kept documents scoring at least {_fmt(q.get('threshold'))}",
            "top_fraction": f"kept the top {_fmt(q.get('top_fraction'))} of documents by score"}.get(mode, "")
    model = f'; model {esc(q["model_path"])}' if q.get("model_path") else ""
    parts.append(f'<p class="small">mode <b>{_fmt(mode)}</b>{": " + rule if rule else ""}: '
                 f'{_fmt(q.get("documents_in"))} documents scored, {_fmt(q.get("documents_out"))} kept, '
                 f'{_fmt(q.get("documents_dropped"))} dropped (reason quality){model}. Buckets hold about equal '
                 "shares of the words (token-weighted percentiles of the scores, Nemotron-CC); tied scores, or "
                 "one document holding more than a bucket's share of the words, leave buckets empty.</p>")
    parts.append(p.img("quality", "quality score histogram"))
    rows = q.get("buckets") or []
    if rows:
        words = "words" in rows[0]
        headers = ["bucket", "lower edge", "upper edge", "documents", "share of documents"]
        headers += ["words", "share of words"] if words else []
        parts.append(_table(headers, [[r["bucket"], _edge(r["lower_edge"]), _edge(r["upper_edge"]), r["documents"],
                                       _pct(r["share_documents"])]
                                      + ([r["words"], _pct(r["share_words"])] if words else []) for r in rows],
                            numeric=set(range(len(headers)))))
        if not words:
            parts.append('<p class="note">Words per bucket: not recorded by this run (final.json quality has no '
                         "bucket_words).</p>")
    return parts


def _example(ex: dict) -> str:
    """One example document: URL (text, not a link), language, length, decision, first characters."""
    lang = f' · {esc(ex["language"])}' if ex.get("language") else ""
    if ex.get("language_score") is not None:
        lang += f' ({ex["language_score"]:.2f})'
    dec = decision(ex)
    more = "…" if (ex.get("n_chars") or 0) > len(ex.get("text") or "") else ""
    return (f'<div class="ex"><div class="small"><code>{esc(ex.get("url") or ex.get("id"))}</code>{lang} · '
            f'{_fmt(ex.get("n_chars"))} characters</div>'
            + (f'<div class="dec">{esc(dec)}</div>' if dec else "")
            + (f'<pre>{esc(ex["text"])}{more}</pre>' if ex.get("text")
               else '<p class="note">No text: dropped before extraction.</p>') + "</div>")


def _examples(p: _Page) -> list[str]:
    """Per drop reason (funnel order): the count and its stored examples in a ``<details>``; the
    most dropped reason whose examples have text is open."""
    parts = ["<h2 id=\"examples\">Examples per drop reason</h2>" + p.skip_note("examples")]
    ex = p.stats.get("examples")
    if not ex:
        return parts
    parts.append('<p class="small">A deterministic sample per reason (the documents with the smallest xxh64 '
                 "of their id); more with <code>curate show OUT --reason REASON --n N</code>. Text: the first "
                 "300 characters after extraction.</p>")
    listing = p.stats.get("drop_reasons") or [{"reason": r, "stage": v[0].get("stage"), "dropped": None}
                                               for r, v in ex.items()]
    with_text = [r for r in listing if any(d.get("text") for d in ex.get(r["reason"], []))]
    opened = max(with_text, key=lambda r: r["dropped"] or 0)["reason"] if with_text else None
    for r in listing:
        docs = ex.get(r["reason"])
        if not docs:
            continue
        summary = (f'<b>{esc(r["reason"])}</b> · {esc(r["stage"])} · {_fmt(r["dropped"])} dropped · '
                   f'{len(docs)} shown')
        parts.append(f'<details{" open" if r["reason"] == opened else ""}><summary>{summary}</summary>'
                     + "".join(_example(d) for d in docs) + "</details>")
    rest = [f'{esc(r["reason"])} ({_fmt(r["dropped"])})' for r in listing if not ex.get(r["reason"])]
    if rest:
        parts.append(f'<p class="note">No examples stored for: {", ".join(rest)} (records dropped before a '
                     "document existed, or a run made before examples were sampled).</p>")
    return parts


def _decontam(p: _Page) -> list[str]:
    """Only for runs with the (opt-in) decontamination stage."""
    parts = []
    if p.stats.get("decontaminate"):
        parts.append("<h2 id=\"decontaminate\">Decontamination</h2>")
        d = p.stats["decontaminate"]
        what = ("documents hitting a set were dropped (reason decontam_&lt;set&gt;, first set in config order)"
                if d.get("action") == "remove" else "documents hitting a set were kept and flagged (column decontam_sets)")
        parts.append(f'<p class="small">{_fmt(d.get("ngram"))}-word n-grams shared with each eval set; {what}. '
                     "A document may hit several sets.</p>")
        parts.append(_table(["eval set", "items", "n-grams indexed", "items too short", "bad lines",
                             "documents hit", "n-grams matched"],
                            [[s["name"], s.get("items"), s.get("ngrams_indexed"), s.get("items_skipped"),
                              s.get("bad_lines"), s["documents_hit"], s["ngrams_matched"]] for s in d["sets"]]))
    return parts


def _dedup(p: _Page) -> list[str]:
    parts = ["<h2 id=\"dedup\">Deduplication</h2>" + p.skip_note("dedup")]
    if p.stats.get("dedup"):
        d = p.stats["dedup"]
        threshold = (d.get("threshold") if d.get("threshold") is not None
                     else (f"≈ {d['threshold_estimate']:.2f}" if d.get("threshold_estimate") else None))
        parts.append(_table(["documents in", "documents out", "removed", "removed fraction", "exact removed",
                             "near removed", "near-dup components", "bands × rows", "threshold"],
                            [[d["documents_in"], d["documents_out"], d["documents_removed"], d["removed_fraction"],
                              d["exact_removed"], d["near_removed"], d["near_duplicate_components"],
                              f"{d['bands']} × {d['rows']}" if d.get("bands") else None, threshold]],
                            numeric=set(range(9))))
        parts.append(p.img("dedup", "dedup components and S-curve"))
    return parts


def _pii(p: _Page) -> list[str]:
    parts = ["<h2 id=\"pii\">PII</h2>" + p.skip_note("pii")]
    if "pii" in p.stats:
        parts.append(_table(["type", "replaced"], list(map(list, p.stats["pii"].items())))
                     if p.stats["pii"] else '<p class="note">No PII found.</p>')
        parts.append(p.img("pii", "PII counts"))
    return parts


def _rephrase(p: _Page) -> list[str]:
    parts = ["<h2 id=\"rephrase\">Rephrasing</h2>" + p.skip_note("rephrase")]
    if p.stats.get("rephrase"):
        rp = p.stats["rephrase"]
        info = ", ".join(f"{k} {_fmt(rp[k])}" for k in ("backend", "model", "documents_in", "synthetic_documents",
                                                        "documents_out", "generated_tokens", "tokens_per_s")
                         if k in rp)
        parts.append(f'<p class="small">From {esc(rp["source"])}{": " + info if info else ""}.</p>')
        kinds = ["requested", "rephrased", "rejected", "failed"]
        parts.append(_table(["style"] + kinds, [[st] + [v.get(k) for k in kinds] for st, v in rp["by_style"].items()])
                     + p.img("rephrase", "rephrase counts"))
    return parts


def _tokens(p: _Page) -> list[str]:
    parts = ["<h2 id=\"tokens\">Token shards</h2>" + p.skip_note("tokens")]
    if p.stats.get("tokens"):
        tk = p.stats["tokens"]
        parts.append(f'<p class="small">tokenizer {_fmt(tk["tokenizer"])} (vocab {_fmt(tk["vocab_size"])}), '
                     f'{_fmt(tk["files"])} shard files.</p>')
        rows = [[f"split {k}", v["num_documents"], v["num_tokens"]] for k, v in tk["splits"].items()]
        rows += [[f"source {k}", v.get("num_documents"), v.get("num_tokens")] for k, v in tk["sources"].items()]
        rows.append(["total", tk["documents"], tk["total"]])
        parts.append(_table(["", "documents", "tokens"], rows) + p.img("tokens", "tokens per split"))
    return parts


def _throughput(p: _Page) -> list[str]:
    parts = ["<h2 id=\"throughput\">Throughput</h2><p class=\"small\">Documents entering a stage divided by "
             "its seconds, summed over input files (per worker, not wall clock).</p>"]
    if p.stats.get("throughput"):
        parts.append(_table(["stage", "documents", "seconds", "docs/s"],
                            [[r["stage"], r["documents"], r["seconds"], r["docs_per_s"]]
                             for r in p.stats["throughput"]]))
        parts.append(p.img("throughput", "throughput"))
    return parts


SECTIONS = (_header, _funnel, _examples, _files, _documents, _quality, _decontam, _dedup, _pii, _rephrase, _tokens,
            _throughput)


def render_html(stats: dict, plots: dict[str, bytes]) -> str:
    """The self-contained report page (str) for ``stats`` and its ``plots`` (PNG bytes by name)."""
    p = _Page(stats, plots)
    parts = [part for section in SECTIONS for part in section(p)]
    parts.append('<p class="note">Numbers: stats.json beside this page.</p>')
    return page(f"webmill report: {stats['out']}", _CSS, "\n".join(x for x in parts if x))
