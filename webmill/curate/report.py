"""``curate stats OUT``: the dataset statistics report of a curation run.

Reads what ``curate run`` left in ``OUT`` (``stats/*.json``, ``documents/``, ``deduped/``,
``final/``, ``shards/``, ``failed.jsonl``) and writes:

- ``OUT/report/report.html``: one self-contained page; every plot is embedded as a base64 PNG
  ``data:`` URI, so the page opens offline and can be mailed as one file;
- ``OUT/report/stats.json``: the numbers behind the page (format ``webmill-report-stats`` v1);
- ``OUT/report/*.png``: the same plots as files (matplotlib, Agg backend).

Every section is skipped, with a note saying why, when its input is absent (a run with
``--no-dedup``, ``--no-pii``, ``--no-tokenize`` ...). The layout of ``stats.json`` is documented
in ``docs/report.md``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import typer

from webmill.errors import UserError

STATS_FORMAT = "webmill-report-stats"
STATS_VERSION = 1
#: Above this many characters in one document table, token counts are estimated from a sample.
MAX_TOKENIZE_CHARS = 200_000_000
TOP_DOMAINS = 25
TOP_LANGUAGES = 20

# Per-document stages in pipeline order, and the drop-reason prefixes that belong to each.
# A reason matches the first stage whose prefix list contains a prefix of it.
_STAGE_REASONS: list[tuple[str, tuple[str, ...]]] = [
    ("html_or_wet", ("not_response", "http_", "not_html")),
    ("url_filter", ("url_",)),
    ("extract", ("extract_",)),
    ("language", ("lang_",)),
    ("gopher_repetition", ("gopher_rep_",)),
    ("gopher_quality", ("gopher_",)),
    ("c4", ("c4_",)),
    ("fineweb", ("fineweb_",)),
]
_PER_DOC_STAGES = [name for name, _ in _STAGE_REASONS]


# ---------------------------------------------------------------------------------------------
# reading inputs
# ---------------------------------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    """Parse one JSON file; a damaged file raises UserError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); delete it and re-run the step that writes it "
                        "(`curate run ... --force` for per-file stats)") from e
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from e


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {i} is not valid JSON ({e}); fix or delete that line") from e
    return rows


def _parquet_files(d: Path) -> list[Path]:
    return sorted(d.glob("*.parquet")) if d.is_dir() else []


def _table_column(files: list[Path], column: str) -> list:
    """Values of one column over a directory's Parquet files ([] when the column is absent)."""
    import pyarrow.parquet as pq

    values: list = []
    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for damaged files
            raise UserError(f"{f} is not a readable Parquet file ({e}); re-run the step that wrote it") from e
        if column in pf.schema_arrow.names:
            values.extend(pf.read(columns=[column]).column(column).to_pylist())
    return values


def _text_lengths(files: list[Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-document (characters, whitespace words) as int64 arrays plus the ids, over files."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    chars, words, ids = [], [], []
    for f in files:
        try:
            t = pq.read_table(f, columns=["id", "text"])
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{f}: cannot read columns id, text ({e}); is it a webmill document table?") from e
        text = t.column("text")
        chars.append(pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64))
        n_words = pc.list_value_length(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(text)))
        w = n_words.to_numpy(zero_copy_only=False).astype(np.int64)
        w[chars[-1] == 0] = 0
        words.append(w)
        ids.extend(t.column("id").cast("string").to_pylist())
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))
    return cat(chars), cat(words), ids


def _encoding_for(manifest: dict | None):
    """The run's tokenizer (from the shard manifest), or None when it cannot be loaded offline."""
    if not manifest:
        return None
    tok = manifest.get("tokenizer") or {}
    try:
        from webmill.tokenize.encoding import get_encoding, tokenizer_info

        enc = get_encoding(tok.get("name", ""))
        want = tok.get("ranks_sha256")
        if want and tokenizer_info(enc).get("ranks_sha256") != want:
            return None
        return enc
    except (UserError, ImportError, OSError, ValueError):
        return None


def _count_tokens(enc, files: list[Path], total_chars: int) -> tuple[dict[str, int], bool]:
    """Tokens per document id (no EOT) for a document table; estimated from a sample when big.

    Returns ``({id: tokens}, estimated)``. When ``total_chars > MAX_TOKENIZE_CHARS`` the first
    documents up to that many characters are encoded and the rest get
    ``round(chars × tokens/char of the sample)``.
    """
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    budget = MAX_TOKENIZE_CHARS
    estimated = total_chars > MAX_TOKENIZE_CHARS
    pending: list[tuple[str, int]] = []  # (id, chars) beyond the budget
    seen_chars = seen_tokens = 0
    for f in files:
        t = pq.read_table(f, columns=["id", "text"])
        ids = t.column("id").cast("string").to_pylist()
        texts = t.column("text").to_pylist()
        batch_ids, batch = [], []
        for i, s in zip(ids, texts):
            s = s or ""
            if budget > 0:
                batch_ids.append(i)
                batch.append(s)
                budget -= len(s)
            else:
                pending.append((i, len(s)))
        if batch:
            for i, s, toks in zip(batch_ids, batch, enc.encode_ordinary_batch(batch)):
                counts[i] = len(toks)
                seen_chars += len(s)
                seen_tokens += len(toks)
    ratio = seen_tokens / seen_chars if seen_chars else 0.25
    for i, n in pending:
        counts[i] = int(round(n * ratio))
    return counts, estimated


def _shard_num_tokens(shard_dir: Path, manifest: dict) -> tuple[np.ndarray, dict[str, int]]:
    """``num_tokens`` of every shard row (int64) and per-source token sums from the rows."""
    import pyarrow.parquet as pq

    arrays, per_source = [], Counter()
    for entry in manifest.get("files", []):
        p = shard_dir / entry["path"]
        if not p.exists():
            raise UserError(f"{shard_dir / 'manifest.json'} lists {entry['path']} but {p} is missing; "
                            f"re-run `curate tokenize` or `curate check-shards {shard_dir}`")
        pf = pq.ParquetFile(p)
        cols = [c for c in ("num_tokens", "source") if c in pf.schema_arrow.names]
        t = pf.read(columns=cols)
        n = t.column("num_tokens").to_numpy().astype(np.int64)
        arrays.append(n)
        if "source" in cols:
            for s, k in zip(t.column("source").to_pylist(), n.tolist()):
                per_source[s or "web"] += k
    return (np.concatenate(arrays) if arrays else np.zeros(0, np.int64)), dict(per_source)


# ---------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------

def _reason_stage(reason: str) -> str:
    for stage, prefixes in _STAGE_REASONS:
        if reason.startswith(prefixes):
            return stage
    return "other"


def _describe(x: np.ndarray, bins: int = 30, log: bool = True) -> dict:
    """Summary and histogram of a non-negative integer array (log-spaced bins by default)."""
    if len(x) == 0:
        return {"count": 0}
    x = np.asarray(x, dtype=np.float64)
    hi = max(float(x.max()), 1.0)
    if log:
        lo = max(float(x.min()), 1.0)
        edges = np.unique(np.round(np.logspace(math.log10(lo), math.log10(hi + 1), bins + 1)))
        if len(edges) < 2:
            edges = np.array([lo, hi + 1])
        if x.min() < lo:  # empty documents get their own [0, 1) bin
            edges = np.concatenate([[0.0], edges])
    else:
        edges = np.linspace(0, hi + 1, bins + 1)
    counts, edges = np.histogram(x, bins=edges)
    return {"count": int(len(x)), "sum": int(x.sum()), "mean": round(float(x.mean()), 2),
            "min": int(x.min()), "median": float(np.median(x)), "p10": float(np.percentile(x, 10)),
            "p90": float(np.percentile(x, 90)), "max": int(x.max()),
            "histogram": {"edges": [float(e) for e in edges], "counts": counts.tolist()}}


def _registered_domains(hosts: Iterable[str]) -> Counter:
    """Count registered domains (``example.co.uk``) with tldextract's bundled suffix list."""
    import tldextract

    ext = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    per_host = Counter(h for h in hosts if h)
    out: Counter = Counter()
    for host, n in per_host.items():
        r = ext(host)
        reg = getattr(r, "top_domain_under_public_suffix", None)
        if reg is None:
            reg = r.registered_domain
        out[reg or r.domain or host] += n
    return out


def _hosts(files: list[Path]) -> list[str]:
    from urllib.parse import urlsplit

    hosts = _table_column(files, "domain")
    if hosts:
        return [h or "" for h in hosts]
    result = []
    for u in _table_column(files, "url"):
        try:
            result.append((urlsplit(u).hostname or "").removeprefix("www.") if u else "")
        except ValueError:
            result.append("")
    return result


def s_curve(j: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH candidate probability P = 1 − (1 − J^rows)^bands for Jaccard similarities ``j`` (float64)."""
    j = np.asarray(j, dtype=np.float64)
    return 1.0 - (1.0 - j ** rows) ** bands


def collect_stats(out: Path) -> dict:
    """Gather every number of the report of run directory ``out`` (the content of stats.json).

    Args:
        out: output directory of ``curate run`` (must hold ``stats/<stem>.json`` files).

    Returns:
        A JSON-serialisable dict; see ``docs/report.md`` for its keys. Counts are documents,
        ``characters`` are Unicode code points, ``tokens`` are tokenizer tokens (shards include
        one EOT per document), seconds are wall-clock seconds summed over input files.

    Raises:
        UserError: ``out`` has no per-file stats, or one of its JSON/Parquet files is damaged.
    """
    from webmill.curate.funnel import collect_funnel, load_file_stats

    out = Path(out)
    stats_dir = out / "stats"
    if not stats_dir.is_dir():
        raise UserError(f"{out} has no stats/ directory; run `curate run INPUTS -o {out}` first")
    for p in sorted(stats_dir.glob("*.json")):
        _read_json(p)  # named error for a damaged file before the funnel reads them all
    files = load_file_stats(out)
    if not files:
        raise UserError(f"{stats_dir} holds no per-file stats (<stem>.json with records/kept); "
                        f"run `curate run INPUTS -o {out}` first")
    for s in files:
        missing = [k for k in ("records", "kept", "errors", "dropped") if k not in s]
        if missing:
            raise UserError(f"{stats_dir / (s['stem'] + '.json')} lacks keys {missing}; "
                            "re-run `curate run ... --force` to rewrite it")
    funnel = collect_funnel(out)
    skipped: dict[str, str] = {}
    res: dict[str, Any] = {"format": STATS_FORMAT, "version": STATS_VERSION, "out": str(out),
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    # ---- totals and per-file table -----------------------------------------------------------
    dropped: Counter = Counter()
    chars: Counter = Counter()
    secs: Counter = Counter()
    for s in files:
        dropped.update(s.get("dropped", {}))
        chars.update(s.get("chars", {}))
        secs.update(s.get("seconds", {}))
    totals = {
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
    res["totals"] = totals
    res["files"] = [{
        "stem": s["stem"], "input": s.get("input", ""), "records": s["records"], "kept": s["kept"],
        "dropped": sum(s.get("dropped", {}).values()), "errors": s["errors"],
        "html_or_wet": s.get("stages", {}).get("html_or_wet", 0),
        "seconds_total": s.get("seconds_total", 0.0), "warnings": len(s.get("warnings", [])),
        "read_errors": len(s.get("read_errors", [])),
    } for s in files]
    failed_path = out / "failed.jsonl"
    res["failed"] = ([{"input": r.get("input", ""), "reason": r.get("reason", "")} for r in _read_jsonl(failed_path)]
                     if failed_path.exists() else [])

    # ---- document tables ---------------------------------------------------------------------
    tables = {name: _parquet_files(out / name) for name in ("documents", "deduped", "final", "rephrased")}
    manifest_path = out / "shards" / "manifest.json"
    manifest = _read_json(manifest_path) if manifest_path.exists() else None
    enc = _encoding_for(manifest)
    lengths: dict[str, tuple] = {}
    for name, fs in tables.items():
        if fs:
            lengths[name] = _text_lengths(fs)
    doc_tokens: dict[str, dict[str, int]] = {}
    tokens_estimated = False
    if enc is not None:
        if "documents" in lengths:
            doc_tokens["documents"], est = _count_tokens(enc, tables["documents"], int(lengths["documents"][0].sum()))
            tokens_estimated |= est
        for name in ("final", "rephrased"):
            if name in lengths:
                doc_tokens[name], est = _count_tokens(enc, tables[name], int(lengths[name][0].sum()))
                tokens_estimated |= est
    elif manifest is None:
        skipped["tokens_per_stage"] = "no OUT/shards/manifest.json: the run's tokenizer is unknown"
    else:
        skipped["tokens_per_stage"] = (f"tokenizer {manifest.get('tokenizer', {}).get('name')!r} of the shards "
                                       "cannot be loaded offline here")

    def table_chars(name: str) -> int | None:
        return int(lengths[name][0].sum()) if name in lengths else None

    def table_tokens(name: str) -> int | None:
        if name == "deduped" and "documents" in doc_tokens and name in lengths:
            m = doc_tokens["documents"]
            return int(sum(m.get(i, 0) for i in lengths[name][2]))
        if name in doc_tokens:
            return int(sum(doc_tokens[name].values()))
        return None

    # ---- funnel ------------------------------------------------------------------------------
    by_stage: dict[str, Counter] = {}
    for reason, n in dropped.items():
        by_stage.setdefault(_reason_stage(reason), Counter())[reason] += n
    rows = list(funnel["stages"])
    if (out / "stats" / "rephrase.json").exists():  # between PII/quality and the shards
        at = next((i for i, (n, _) in enumerate(rows) if n == "shards"), len(rows))
        rows.insert(at, ("rephrase", None))
    counts = dict(rows)
    fun: list[dict] = []
    last_doc_stage = None
    prev = counts.get("records", totals["records"])
    assigned: set[str] = set()
    for name, n in rows:
        if name == "records":
            fun.append({"stage": "records", "documents_in": n, "documents_out": n, "dropped": {}})
            continue
        if name in _PER_DOC_STAGES:
            reasons = dict(by_stage.get(name, {}))
            assigned.add(name)
            row = {"stage": name, "documents_in": prev, "documents_out": n, "dropped": reasons}
            gap = prev - n - sum(reasons.values())
            if gap:
                row["unexplained"] = gap  # record errors (exceptions) or unmatched reasons
            fun.append(row)
            last_doc_stage = row
            prev = n
        elif name == "documents":
            row = {"stage": "documents", "documents_in": prev, "documents_out": n, "dropped": {}}
            other = {r: c for st, cnt in by_stage.items() if st not in assigned for r, c in cnt.items()}
            row["dropped"] = other
            if prev - n - sum(other.values()):
                row["unexplained"] = prev - n - sum(other.values())
            row["characters_out"] = table_chars("documents")
            row["tokens_out"] = table_tokens("documents")
            fun.append(row)
            prev = n
        elif name == "dedup":
            d = funnel.get("dedup", {})
            exact = (d.get("exact") or {}).get("documents_removed", 0)
            near = (d.get("minhash") or {}).get("documents_removed", 0)
            fun.append({"stage": "dedup", "documents_in": d.get("documents_in", prev), "documents_out": n,
                        "dropped": {k: v for k, v in (("exact_duplicate", exact), ("near_duplicate", near)) if v},
                        "characters_in": table_chars("documents"), "characters_out": table_chars("deduped"),
                        "tokens_in": table_tokens("documents"), "tokens_out": table_tokens("deduped")})
            prev = n
        elif name == "pii_quality":
            f = funnel.get("final", {})
            src = "deduped" if tables["deduped"] else "documents"
            fun.append({"stage": "pii_quality", "documents_in": f.get("documents_in", prev), "documents_out": n,
                        "dropped": {k: v for k, v in f.get("dropped", {}).items() if v},
                        "characters_in": table_chars(src), "characters_out": table_chars("final"),
                        "tokens_in": table_tokens(src), "tokens_out": table_tokens("final")})
            prev = n
        elif name == "rephrase":
            r = _read_json(out / "stats" / "rephrase.json")
            r = r if isinstance(r, dict) else {}
            src_r = "final" if tables["final"] else ("deduped" if tables["deduped"] else "documents")
            n_in, n_out, added = r.get("documents_in", prev), r.get("documents_out", prev), r.get("synthetic_documents", 0)
            row = {"stage": "rephrase", "documents_in": n_in, "documents_out": n_out, "dropped": {}, "added": added,
                   "characters_in": table_chars(src_r), "characters_out": table_chars("rephrased"),
                   "tokens_in": table_tokens(src_r), "tokens_out": table_tokens("rephrased")}
            if n_in + added - n_out:
                row["unexplained"] = n_in + added - n_out
            fun.append(row)
            prev = n_out
        elif name == "shards":
            src = next((t for t in ("rephrased", "final", "deduped", "documents") if tables[t]), None)
            skipped_empty = (manifest or {}).get("skipped_empty_documents", 0)
            n_in = (manifest or {}).get("input_documents", prev)
            row = {"stage": "shards", "documents_in": n_in, "documents_out": n,
                   "dropped": {"empty_after_tokenize": skipped_empty} if skipped_empty else {},
                   "characters_in": table_chars(src) if src else None,
                   "tokens_in": table_tokens(src) if src else None,
                   "tokens_out": sum(funnel.get("tokens", {}).values()),
                   "note": "shard tokens include one EOT per document"}
            if n - (n_in - skipped_empty):  # --mix repeats (> 0) or subsamples (< 0) train documents
                row["added"] = n - (n_in - skipped_empty)
            fun.append(row)
            prev = n
    for row in fun:
        if row["stage"] == "extract":
            row["characters_out"] = totals["characters_extracted"]
        if row["stage"] == "language":
            row["characters_in"] = totals["characters_extracted"]
    if last_doc_stage is not None:
        last_doc_stage["characters_out"] = totals["characters_kept"]
        last_doc_stage["tokens_out"] = table_tokens("documents")
    res["funnel"] = fun
    res["tokens_estimated"] = tokens_estimated

    # ---- throughput per stage ----------------------------------------------------------------
    st = Counter()
    for s in files:
        st.update(s.get("stages", {}))
    entering = {"read": totals["records"], "write": totals["kept"]}
    prev_name = "html_or_wet"
    for name in _PER_DOC_STAGES[1:]:
        if name in st or name in secs:
            entering[name] = st.get(prev_name, 0)
            prev_name = name if name in st else prev_name
    thr = []
    for name in ["read"] + _PER_DOC_STAGES[1:] + ["write"]:
        if name in secs:
            sec = float(secs[name])
            docs = int(entering.get(name, 0))
            thr.append({"stage": name, "documents": docs, "seconds": round(sec, 4),
                        "docs_per_s": round(docs / sec, 2) if sec > 0 else None})
    if "dedup" in funnel:
        d = funnel["dedup"]
        sec = sum(v for v in (d.get("seconds") or {}).values() if isinstance(v, (int, float)))
        if sec:
            thr.append({"stage": "dedup", "documents": d.get("documents_in", 0), "seconds": round(sec, 3),
                        "docs_per_s": round(d.get("documents_in", 0) / sec, 2)})
    if "final" in funnel and isinstance(funnel["final"].get("seconds"), (int, float)) and funnel["final"]["seconds"]:
        f = funnel["final"]
        thr.append({"stage": "pii_quality", "documents": f["documents_in"], "seconds": f["seconds"],
                    "docs_per_s": round(f["documents_in"] / f["seconds"], 2)})
    res["throughput"] = thr

    # ---- languages, domains, lengths of the output documents ---------------------------------
    last = next((t for t in ("rephrased", "final", "deduped", "documents") if tables[t]), None)
    if last is None:
        for key in ("languages", "domains", "lengths"):
            skipped[key] = "no document table (OUT/documents, OUT/deduped, OUT/final) holds Parquet files"
    else:
        res["documents_table"] = last
        langs = Counter(x or "unknown" for x in _table_column(tables[last], "language"))
        res["languages"] = dict(sorted(langs.items(), key=lambda kv: (-kv[1], kv[0])))
        dom = _registered_domains(_hosts(tables[last]))
        res["domains"] = {"distinct": len(dom), "documents": sum(dom.values()),
                          "top": [[k, v] for k, v in sorted(dom.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DOMAINS]]}
        c, w, _ = lengths[last]
        res["lengths"] = {"characters": _describe(c), "words": _describe(w)}
        if manifest is not None:
            n_tok, per_source_rows = _shard_num_tokens(out / "shards", manifest)
            res["lengths"]["tokens"] = _describe(n_tok)
            res["lengths"]["tokens"]["source"] = "shards num_tokens (includes EOT)"
        else:
            skipped["token_lengths"] = "no OUT/shards/manifest.json (run with --no-tokenize?)"

    # ---- quality, dedup, PII, rephrase -------------------------------------------------------
    final = funnel.get("final")
    if final is None:
        skipped["pii"] = skipped["quality"] = "no OUT/stats/final.json (run with --no-pii and no quality stage?)"
    else:
        res["pii"] = dict(sorted(final.get("pii_counts", {}).items(), key=lambda kv: (-kv[1], kv[0])))
        q = final.get("quality")
        if q:
            res["quality"] = {k: q.get(k) for k in ("mode", "documents_in", "documents_out", "bucket_edges",
                                                    "bucket_sizes", "score_histogram")}
            res["quality"]["score_histogram_edges"] = np.linspace(0, 1, len(q.get("score_histogram", [])) + 1).round(3).tolist()
        else:
            skipped["quality"] = "quality scoring did not run (final.json has no quality section)"
    d = funnel.get("dedup")
    if d is None:
        skipped["dedup"] = "no OUT/stats/dedup.json (run with --no-dedup?)"
    else:
        mh = d.get("minhash") or {}
        n_in = d.get("documents_in", 0)
        bands, rows_ = mh.get("bands"), mh.get("rows")
        dd = {"documents_in": n_in, "documents_out": d.get("documents_out"),
              "documents_removed": d.get("documents_removed", 0),
              "removed_fraction": round(d.get("documents_removed", 0) / n_in, 6) if n_in else 0.0,
              "exact_removed": (d.get("exact") or {}).get("documents_removed", 0),
              "exact_groups": (d.get("exact") or {}).get("duplicate_groups", 0),
              "near_removed": mh.get("documents_removed", 0),
              "near_duplicate_components": mh.get("near_duplicate_components", 0),
              "component_size_histogram": mh.get("component_size_histogram", {}),
              "bands": bands, "rows": rows_, "threshold": mh.get("threshold"),
              "minhash_enabled": mh.get("enabled", bool(bands))}
        if bands and rows_:
            js = np.linspace(0, 1, 21)
            dd["s_curve"] = [[round(float(j), 2), round(float(p), 6)] for j, p in zip(js, s_curve(js, bands, rows_))]
            dd["threshold_estimate"] = round((1 / bands) ** (1 / rows_), 4)
        res["dedup"] = dd
    rephrase = _rephrase_counts(out, tables["rephrased"] or tables["final"])
    if rephrase:
        res["rephrase"] = rephrase
    else:
        skipped["rephrase"] = "no OUT/stats/rephrase.json and no synthetic_style column (rephrasing did not run)"

    # ---- tokens per split / source -----------------------------------------------------------
    if manifest is None:
        skipped["tokens"] = "no OUT/shards/manifest.json (run with --no-tokenize?)"
    else:
        splits = {k: {"num_tokens": v.get("num_tokens", 0), "num_documents": v.get("num_documents", 0),
                      "sources": v.get("sources", {})} for k, v in manifest.get("splits", {}).items()}
        res["tokens"] = {"tokenizer": (manifest.get("tokenizer") or {}).get("name"),
                         "vocab_size": (manifest.get("tokenizer") or {}).get("vocab_size"),
                         "total": sum(v["num_tokens"] for v in splits.values()),
                         "documents": sum(v["num_documents"] for v in splits.values()),
                         "files": len(manifest.get("files", [])),
                         "splits": splits, "sources": manifest.get("sources", {})}
    res["skipped"] = skipped
    return res


def _rephrase_counts(out: Path, files: list[Path]) -> dict | None:
    """Rephrasing counts per style from OUT/stats/rephrase.json, else a ``synthetic_style`` column.

    Returns ``{"source", "by_style": {style: {"requested", "rephrased", "rejected", "failed"}}, ...}``
    (only ``rephrased`` when read from the column) or None when rephrasing did not run.
    """
    p = out / "stats" / "rephrase.json"
    if p.exists():
        r = _read_json(p)
        if not isinstance(r, dict):
            raise UserError(f"{p} is not a JSON object; re-run `curate rephrase`")
        by: dict[str, dict] = {}
        for style, v in (r.get("by_style") or {}).items():
            if isinstance(v, dict):
                by[str(style)] = {k: int(v.get(k, 0) or 0) for k in ("requested", "rephrased", "rejected", "failed")}
            elif isinstance(v, (int, float)):
                by[str(style)] = {"rephrased": int(v)}
        keys = ("documents_in", "documents_out", "synthetic_documents", "rephrase_failed", "rephrase_rejected",
                "backend", "model", "generated_tokens", "seconds", "tokens_per_s", "synthetic_documents_per_min")
        return {"source": "stats/rephrase.json", "by_style": by, **{k: r[k] for k in keys if k in r}}
    styles = [s for s in _table_column(files, "synthetic_style") if s]
    if styles:
        return {"source": "synthetic_style column",
                "by_style": {k: {"rephrased": n} for k, n in Counter(styles).most_common()}}
    return None


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------

def _figure(width: float = 9.0, height: float = 3.6, ncols: int = 1):
    """A bare Agg-rendered Figure with fixed margins in inches (cheaper than constrained layout)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(1, ncols) if ncols > 1 else fig.subplots()
    _margins(fig, left_in=0.75)
    return fig, axes


def _margins(fig, left_in: float, right_in: float = 0.25, bottom_in: float = 0.55, top_in: float = 0.35) -> None:
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=min(left_in / w, 0.6), right=1 - right_in / w, bottom=min(bottom_in / h, 0.4),
                        top=max(1 - top_in / h, 0.6), wspace=0.3)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # a bare Figure renders with the Agg canvas
    return buf.getvalue()


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


def make_plots(stats: dict) -> dict[str, bytes]:
    """Render the report's plots from :func:`collect_stats` output.

    Returns:
        ``{name: PNG bytes}`` (names without ``.png``); a plot whose section was skipped is absent.
    """
    plots: dict[str, bytes] = {}
    fun = stats.get("funnel", [])
    if fun:
        fig, ax = _figure(9, 0.35 * len(fun) + 1.2)
        _barh(ax, [r["stage"] for r in fun], [r["documents_out"] for r in fun],
              "documents left after each stage", "documents")
        plots["funnel"] = _png(fig)
    drops = stats["totals"]["dropped"]
    extra = Counter()
    for r in fun:
        if r["stage"] in ("dedup", "pii_quality", "shards"):
            extra.update(r["dropped"])
    all_drops = Counter(drops) + extra
    if all_drops:
        items = sorted(all_drops.items(), key=lambda kv: -kv[1])
        fig, ax = _figure(9, 0.22 * len(items) + 1.2)
        _barh(ax, [k for k, _ in items], [v for _, v in items], "documents dropped by reason", "documents")
        plots["drop_reasons"] = _png(fig)
    if stats.get("languages"):
        items = list(stats["languages"].items())[:TOP_LANGUAGES]
        fig, ax = _figure(9, 0.25 * len(items) + 1.2)
        _barh(ax, [k for k, _ in items], [v for _, v in items],
              f"language of the output documents ({stats.get('documents_table')})", "documents")
        plots["languages"] = _png(fig)
    if stats.get("domains", {}).get("top"):
        items = stats["domains"]["top"]
        fig, ax = _figure(9, 0.22 * len(items) + 1.2)
        _barh(ax, [k for k, _ in items], [v for _, v in items],
              f"top registered domains ({stats['domains']['distinct']:,} distinct)", "documents")
        plots["domains"] = _png(fig)
    if stats.get("lengths"):
        ls = stats["lengths"]
        keys = [k for k in ("characters", "words", "tokens") if k in ls]
        fig, axes = _figure(4.2 * len(keys), 3.2, ncols=len(keys))
        fig.subplots_adjust(wspace=0.4)
        axes = np.atleast_1d(axes)
        for ax, k in zip(axes, keys):
            _hist_ax(ax, ls[k], f"document length: {k}", f"{k} per document (log)")
        plots["lengths"] = _png(fig)
    if stats.get("quality"):
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
        step = 1 if len(sizes) <= 12 else 2
        a2.set_xticks(np.arange(0, len(sizes), step))
        a2.tick_params(axis="x", labelsize=8)
        a2.set_title("documents per quality bucket", fontsize=10)
        a2.set_xlabel("bucket (0 = lowest)", fontsize=9)
        plots["quality"] = _png(fig)
    if stats.get("dedup"):
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
        plots["dedup"] = _png(fig)
    if any(stats.get("pii", {}).values()):
        items = [(k, v) for k, v in stats["pii"].items() if v]
        fig, ax = _figure(9, 0.3 * len(items) + 1.2)
        _barh(ax, [k for k, _ in items], [v for _, v in items], "PII replaced, by type", "occurrences")
        plots["pii"] = _png(fig)
    if stats.get("rephrase") and stats["rephrase"]["by_style"]:
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
        plots["rephrase"] = _png(fig)
    if stats.get("tokens"):
        t = stats["tokens"]
        fig, (a1, a2) = _figure(9, 3.0, ncols=2)
        sp = t["splits"]
        a1.bar(list(sp.keys()), [v["num_tokens"] for v in sp.values()], color="#228833")
        a1.set_title(f"tokens per split ({t['tokenizer']})", fontsize=10)
        a1.set_ylabel("tokens", fontsize=9)
        src = t.get("sources") or {}
        a2.bar(list(src.keys()), [v.get("num_tokens", 0) for v in src.values()], color="#228833")
        a2.set_title("tokens per source", fontsize=10)
        plots["tokens"] = _png(fig)
    thr = [r for r in stats.get("throughput", []) if r.get("docs_per_s")]
    if thr:
        fig, ax = _figure(9, 0.3 * len(thr) + 1.2)
        _barh(ax, [r["stage"] for r in thr], [r["docs_per_s"] for r in thr],
              "throughput per stage (documents entering / seconds summed over files)", "documents/s (log)",
              log=True)
        plots["throughput"] = _png(fig)
    return plots


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;display:block;margin:8px 0}.note{color:#777;font-size:13px}.small{font-size:12px;color:#555}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:1.4em}
"""

# Sets data-images-ok="<decoded>/<total>" on <body> once the page has loaded (checked by tests).
IMAGES_CHECK_SCRIPT = """window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}
document.body.setAttribute('data-images-ok',ok+'/'+im.length);});"""


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list], numeric: set[int] | None = None) -> str:
    numeric = numeric if numeric is not None else set(range(1, len(headers)))
    h = "".join(f"<th>{html.escape(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{_fmt(c)}</td>' if i in numeric else f"<td>{_fmt(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _img(plots: dict[str, bytes], name: str, alt: str) -> str:
    if name not in plots:
        return ""
    b64 = base64.b64encode(plots[name]).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}" data-name="{name}">'


def render_html(stats: dict, plots: dict[str, bytes]) -> str:
    """The self-contained report page (str) for ``stats`` and its ``plots`` (PNG bytes by name)."""
    t = stats["totals"]
    skipped = stats.get("skipped", {})
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>webmill report: "
             f"{html.escape(stats['out'])}</title><style>{_CSS}</style><script>{IMAGES_CHECK_SCRIPT}</script></head><body>",
             f"<h1>webmill dataset report</h1><p class=\"small\">{html.escape(stats['out'])} · "
             f"{html.escape(stats['created'])}</p>"]
    cards = [("input files", t["files"]), ("records", t["records"]), ("documents kept", t["kept"]),
             ("record errors", t["errors"]), ("failed inputs", len(stats["failed"]))]
    fun = stats.get("funnel", [])
    if fun:
        cards.append(("final documents", fun[-1]["documents_out"]))
    if stats.get("tokens"):
        cards.append(("tokens", stats["tokens"]["total"]))
    parts.append('<div class="cards">' + "".join(f'<div class="card"><b>{_fmt(v)}</b>{html.escape(k)}</div>'
                                                  for k, v in cards) + "</div>")

    def skip_note(key: str) -> str:
        return f'<p class="note">Skipped: {html.escape(skipped[key])}.</p>' if key in skipped else ""

    # funnel
    parts.append("<h2 id=\"funnel\">Funnel</h2><p class=\"small\">Documents, characters and tokens entering "
                 "and leaving each stage; every drop reason is listed with its stage. Characters and tokens are "
                 "shown where the run recorded or stored the text (— otherwise).</p>")
    rows = []
    for r in fun:
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
    parts.append(_table(["stage", "docs in", "docs out", "dropped", "chars in", "chars out", "tokens in",
                         "tokens out", "drop reasons"], rows, numeric=set(range(1, 8))))
    if stats.get("tokens_estimated"):
        parts.append('<p class="note">Token counts of the large document tables are estimated from a sample.</p>')
    parts.append(skip_note("tokens_per_stage"))
    parts.append(_img(plots, "funnel", "funnel bar chart") + _img(plots, "drop_reasons", "drop reasons"))

    # files
    parts.append("<h2 id=\"files\">Input files</h2>")
    parts.append(_table(["file", "records", "HTML/WET", "kept", "dropped", "errors", "warnings", "read errors",
                         "seconds"],
                        [[f["stem"], f["records"], f["html_or_wet"], f["kept"], f["dropped"], f["errors"],
                          f["warnings"], f["read_errors"], f["seconds_total"]] for f in stats["files"]]
                        + [["total", t["records"], sum(f["html_or_wet"] for f in stats["files"]), t["kept"],
                            t["dropped_total"], t["errors"], t["warnings"], t["read_errors"], t["seconds_total"]]]))
    if stats["failed"]:
        parts.append("<h3>Failed inputs</h3>" + _table(["input", "reason"],
                                                       [[f["input"], f["reason"]] for f in stats["failed"]],
                                                       numeric=set()))
    else:
        parts.append('<p class="note">No failed inputs.</p>')

    # output documents
    parts.append(f"<h2 id=\"documents\">Output documents</h2>")
    if "documents_table" in stats:
        parts.append(f'<p class="small">From OUT/{html.escape(stats["documents_table"])}/ '
                     "(the last document table of the run).</p>")
    parts.append("<h3>Languages</h3>" + skip_note("languages") + _img(plots, "languages", "languages"))
    parts.append("<h3>Registered domains</h3>" + skip_note("domains") + _img(plots, "domains", "top domains"))
    parts.append("<h3>Document length</h3>" + skip_note("lengths"))
    if stats.get("lengths"):
        ls = stats["lengths"]
        parts.append(_table(["measure", "documents", "sum", "mean", "p10", "median", "p90", "max"],
                            [[k, v.get("count"), v.get("sum"), v.get("mean"), v.get("p10"), v.get("median"),
                              v.get("p90"), v.get("max")] for k, v in ls.items()]))
    parts.append(skip_note("token_lengths") + _img(plots, "lengths", "document length histograms"))

    # quality / dedup / PII / rephrase
    parts.append("<h2 id=\"quality\">Quality</h2>" + skip_note("quality"))
    if stats.get("quality"):
        q = stats["quality"]
        parts.append(f'<p class="small">mode {_fmt(q.get("mode"))}: {_fmt(q.get("documents_in"))} → '
                     f'{_fmt(q.get("documents_out"))} documents; bucket edges '
                     f'{", ".join(f"{e:.3f}" for e in q.get("bucket_edges") or [])}</p>')
        parts.append(_img(plots, "quality", "quality score histogram"))
    parts.append("<h2 id=\"dedup\">Deduplication</h2>" + skip_note("dedup"))
    if stats.get("dedup"):
        d = stats["dedup"]
        parts.append(_table(["documents in", "documents out", "removed", "removed fraction", "exact removed",
                             "near removed", "near-dup components", "bands × rows", "threshold"],
                            [[d["documents_in"], d["documents_out"], d["documents_removed"], d["removed_fraction"],
                              d["exact_removed"], d["near_removed"], d["near_duplicate_components"],
                              f"{d['bands']} × {d['rows']}" if d.get("bands") else None,
                              d.get("threshold") if d.get("threshold") is not None
                              else (f"≈ {d['threshold_estimate']:.2f}" if d.get("threshold_estimate")
                                    else None)]],
                            numeric=set(range(9))))
        parts.append(_img(plots, "dedup", "dedup components and S-curve"))
    parts.append("<h2 id=\"pii\">PII</h2>" + skip_note("pii"))
    if "pii" in stats:
        parts.append(_table(["type", "replaced"], list(map(list, stats["pii"].items())))
                     if stats["pii"] else '<p class="note">No PII found.</p>')
        parts.append(_img(plots, "pii", "PII counts"))
    parts.append("<h2 id=\"rephrase\">Rephrasing</h2>" + skip_note("rephrase"))
    if stats.get("rephrase"):
        rp = stats["rephrase"]
        info = ", ".join(f"{k} {_fmt(rp[k])}" for k in ("backend", "model", "documents_in", "synthetic_documents",
                                                        "documents_out", "generated_tokens", "tokens_per_s")
                         if k in rp)
        parts.append(f'<p class="small">From {html.escape(rp["source"])}{": " + info if info else ""}.</p>')
        kinds = ["requested", "rephrased", "rejected", "failed"]
        parts.append(_table(["style"] + kinds, [[st] + [v.get(k) for k in kinds] for st, v in rp["by_style"].items()])
                     + _img(plots, "rephrase", "rephrase counts"))

    # tokens
    parts.append("<h2 id=\"tokens\">Token shards</h2>" + skip_note("tokens"))
    if stats.get("tokens"):
        tk = stats["tokens"]
        parts.append(f'<p class="small">tokenizer {_fmt(tk["tokenizer"])} (vocab {_fmt(tk["vocab_size"])}), '
                     f'{_fmt(tk["files"])} shard files.</p>')
        rows = [[f"split {k}", v["num_documents"], v["num_tokens"]] for k, v in tk["splits"].items()]
        rows += [[f"source {k}", v.get("num_documents"), v.get("num_tokens")] for k, v in tk["sources"].items()]
        rows.append(["total", tk["documents"], tk["total"]])
        parts.append(_table(["", "documents", "tokens"], rows) + _img(plots, "tokens", "tokens per split"))

    # throughput
    parts.append("<h2 id=\"throughput\">Throughput</h2><p class=\"small\">Documents entering a stage divided by "
                 "its seconds, summed over input files (per worker, not wall clock).</p>")
    if stats.get("throughput"):
        parts.append(_table(["stage", "documents", "seconds", "docs/s"],
                            [[r["stage"], r["documents"], r["seconds"], r["docs_per_s"]] for r in stats["throughput"]]))
        parts.append(_img(plots, "throughput", "throughput"))
    parts.append('<p class="note">Numbers: stats.json beside this page.</p></body></html>')
    return "\n".join(p for p in parts if p)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(out: Path) -> Path:
    """Write ``OUT/report/report.html``, ``stats.json`` and the plot PNGs of run directory ``out``.

    Args:
        out: output directory of ``curate run``.

    Returns:
        Path of ``report.html``. Files are written atomically (temp file + rename); PNGs of plots
        that a re-run no longer draws are deleted.

    Raises:
        UserError: ``out`` holds no per-file stats, an input file is damaged, or ``OUT/report``
            cannot be written.
    """
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"{out} is not a directory; give the output directory of `curate run`")
    stats = collect_stats(out)
    plots = make_plots(stats)
    rep = out / "report"
    try:
        rep.mkdir(parents=True, exist_ok=True)
        for old in rep.glob("*.png"):
            if old.stem not in plots:
                old.unlink()
        for name, data in plots.items():
            _atomic_write(rep / f"{name}.png", data)
        stats["plots"] = sorted(f"{n}.png" for n in plots)
        _atomic_write(rep / "stats.json", (json.dumps(stats, indent=2) + "\n").encode("utf-8"))
        page = rep / "report.html"
        _atomic_write(page, render_html(stats, plots).encode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot write the report into {rep}: {e.strerror or e}") from e
    return page


def stats_cmd(out: Path = typer.Argument(..., help="Output directory of `curate run`.")) -> None:
    """Write the dataset report: OUT/report/report.html (self-contained), stats.json and PNG plots."""
    page = write_report(out)
    typer.echo(f"report: {page}")
