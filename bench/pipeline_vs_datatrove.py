"""webmill's per-document stages vs datatrove's FineWeb first stage, on the same WARC files.

Usage (project venv; the datatrove side runs in ``bench/.venv-datatrove``, see README.md)::

    .venv/bin/python bench/make_corpus.py                      # bench/out/corpus (2 large WARCs)
    .venv/bin/python bench/pipeline_vs_datatrove.py            # 3 alternating pairs + analysis
    .venv/bin/python bench/pipeline_vs_datatrove.py --pairs 5 --wait-s 600 --max-load 4
    .venv/bin/python bench/pipeline_vs_datatrove.py --diagnose-only --corpus bench/out/corpus-diag
    .venv/bin/python bench/pipeline_vs_datatrove.py --rules-only   # rule chains on the same texts
    .venv/bin/python bench/pipeline_vs_datatrove.py --extract-speed  # the two extractors alone + profile
    .venv/bin/python bench/pipeline_vs_datatrove.py --corpus C "--webmill-args=--profile fast --no-quality" \
        --baseline-tree /tmp/start "--baseline-args=--no-quality"    # the fast path vs datatrove and vs a commit
    .venv/bin/python bench/pipeline_vs_datatrove.py --profile-webmill --profile-config examples/fast.toml

Over 500 lines because it is one benchmark with five modes (timed pairs, diagnosis, rules only,
extraction speed, cProfile) that share the corpus table and the run helpers; splitting the modes
into modules is left for when one of them grows.

A = datatrove (``bench/datatrove_fineweb.py``: WarcReader → URLFilter → Trafilatura(favour_precision,
timeout=1) → LanguageFilter(en, 0.65) → GopherRepetition → GopherQuality → C4Quality(
filter_no_terminal_punct=False) → FineWebQuality → JsonlWriter; LocalPipelineExecutor with one
task per file and ``--workers`` processes).
B = ``curate run FILES -o OUT --no-dedup --no-pii --no-tokenize --no-report --workers N
-c bench.toml`` (defaults = FineWeb's chain, trafilatura, 1 s extraction timeout; bench.toml sets
``extract.http_status = []``: every response is extracted, as datatrove's WarcReader does).

Each run is a fresh process tree timed from outside (wall seconds, start-up included for both).
Pairs alternate the order (AB, BA, AB, ...); before each pair the script waits up to
``--wait-s`` for the 1-minute load to drop under ``--max-load``. docs/s = HTML documents in the
corpus (``response`` records whose HTTP Content-Type contains ``html``, the same denominator for
both) / wall seconds; ratio = webmill docs/s / datatrove docs/s per pair, median reported.

Agreement: Jaccard of the kept document sets (keyed by WARC-Record-ID, every copy counted) and
of the kept URL sets (copies collapse), also restricted to status-200 records.

Disagreement analysis (``--diagnose``, on by default, untimed): one more run of each with
datatrove's exclusion writers (+ id logs after the reader and the extractor) and webmill's
``write_removed``, then for every document kept by one side only, the other side's reason.
Use ``--diag-corpus`` to diagnose on a smaller corpus (the copies are identical, so a 1-copy
corpus gives the same per-copy picture, apart from load-dependent extraction timeouts).

Results: printed, and written to ``bench/out/vs-datatrove/results.json``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (BENCH, CORPUS_DIR, CURATE, DATATROVE_PY, OUT_ROOT, PROJECT_PY, REPO,  # noqa: E402
                    LoadSampler, loadavg, pip_versions, read_manifest, strip_bench_from_path,
                    wait_for_quiet)

strip_bench_from_path()
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import pyarrow.parquet as pq  # noqa: E402

from webmill.curate.readers import document_id, iter_records  # noqa: E402

RESULTS_DIR = OUT_ROOT / "vs-datatrove"


# ---------------------------------------------------------------------------------------------
# The corpus as webmill's reader sees it: record id → (our id, url, type, status, content type)

def record_table(files: list[Path]) -> dict[str, dict]:
    """Our document id → {rid, url, rec_type, status, ctype} for every record of ``files``."""
    table = {}
    for f in files:
        errors: list = []
        for rec in iter_records(str(f), errors):
            did = document_id(f.name, rec.record_id)
            table[did] = {"rid": rec.record_id, "url": rec.url, "rec_type": rec.rec_type,
                          "status": rec.http_status, "ctype": rec.content_type}
    return table


def pre_document_reason(info: dict) -> str:
    """Why webmill drops a record before it becomes a document (mirrors FileProcessor._one)."""
    if info["rec_type"] not in ("response", "conversion"):
        return "not_response"
    if info["rec_type"] == "response" and info["status"] != 200:
        return "http_status"
    if info["rec_type"] == "response" and "html" not in info["ctype"]:
        return "not_html"
    return "?"


# ---------------------------------------------------------------------------------------------
# Runs

DT_START_WAIT = 60.0  # set from --dt-start-wait


def run_datatrove(corpus: Path, out: Path, workers: int, diagnose: bool = False,
                  timeout: float = 1.0) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [str(DATATROVE_PY), str(BENCH / "datatrove_fineweb.py"), str(corpus), str(out),
           "--workers", str(workers), "--timeout", str(timeout),
           "--start-wait", str(DT_START_WAIT)] + (["--exclusions"] if diagnose else [])
    return _timed(cmd, out / "run.log")


WEBMILL_FAST = False  # set from --webmill-fast
WEBMILL_EXTRACTOR: str | None = None  # set from --webmill-extractor (None: the config's)
WEBMILL_ARGS: list[str] = []  # set from --webmill-args (e.g. "--profile fast")


def run_webmill(corpus: Path, out: Path, workers: int, diagnose: bool = False,
                timeout: float = 1.0, tree: Path | None = None, args: list[str] | None = None) -> dict:
    """``curate run`` of the corpus; ``tree``: run the ``webmill`` package of that directory
    instead (an unpacked earlier commit: PYTHONPATH and working directory), with ``args``
    instead of ``--webmill-args``."""
    shutil.rmtree(out, ignore_errors=True)
    files = sorted(str(p.resolve()) for p in corpus.glob("*.warc.gz"))
    cmd = [str(CURATE), "run", *files, "-o", str((out / "curate").resolve()), "--no-dedup", "--no-pii",
           "--no-tokenize", "--no-report", "--workers", str(workers),
           *(WEBMILL_ARGS if args is None else args)]
    out.mkdir(parents=True)
    # the equivalent of datatrove's stage: every HTTP status is extracted (its WarcReader does
    # not look at the status), the same per-document extraction timeout
    (out / "bench.toml").write_text(f"[output]\nwrite_removed = {str(diagnose).lower()}\n"
                                    f"[extract]\ntimeout_s = {float(timeout)}\nhttp_status = []\n"
                                    f"fast = {str(WEBMILL_FAST).lower()}\n"
                                    + (f"extractor = \"{WEBMILL_EXTRACTOR}\"\n" if WEBMILL_EXTRACTOR else ""))
    cmd += ["-c", str((out / "bench.toml").resolve())]
    return _timed(cmd, out / "run.log", tree)


def _timed(cmd: list[str], log: Path, tree: Path | None = None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with open(log, "w") as lf, LoadSampler() as ls:
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env,
                            cwd=str(tree or REPO)).returncode
        wall = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"command failed ({rc}): {' '.join(cmd)}\n{tail}")
    return {"wall_s": wall, "load_mean": ls.mean, "load_max": ls.max}


# ---------------------------------------------------------------------------------------------
# Kept sets

def kept_datatrove(out: Path) -> dict[str, str]:
    """Our document id → url for every document datatrove wrote."""
    kept = {}
    for f in sorted((out / "output").glob("*.jsonl*")):
        with gzip.open(f, "rt", encoding="utf-8") if f.suffix == ".gz" else open(f, encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                base = Path(d["metadata"]["file_path"]).name
                kept[document_id(base, d["id"])] = d["metadata"].get("url", "")
    return kept


def kept_webmill(out: Path) -> dict[str, str]:
    kept = {}
    for f in sorted((out / "curate" / "documents").glob("*.parquet")):
        t = pq.read_table(f, columns=["id", "url"])
        kept.update(zip(t.column("id").to_pylist(), t.column("url").to_pylist()))
    return kept


def datatrove_stats(out: Path) -> dict:
    """A few counters from datatrove's merged stats.json (documents read, extraction timeouts)."""
    p = out / "logs" / "stats.json"
    if not p.is_file():
        return {}

    def total(v):
        return v.get("total", 0) if isinstance(v, dict) else (v or 0)

    res = {}
    for step in json.loads(p.read_text()):
        name, st = step.get("name", ""), step.get("stats", {})
        if "Warc" in name:
            res["read"] = total(st.get("documents"))
        if "Trafilatura" in name:
            res["extracted"] = total(st.get("forwarded"))
            res["timeouts"] = total(st.get("timeout"))
            res["extract_s"] = round(total(step.get("time_stats")), 1)
    return res


def webmill_stats(out: Path) -> dict:
    res = Counter()
    for f in (out / "curate" / "stats").glob("*.json"):
        s = json.loads(f.read_text())
        if "stages" not in s:
            continue
        res["html_or_wet"] += s["stages"].get("html_or_wet", 0)
        res["extracted"] += s["stages"].get("extract", 0)
        res["timeouts"] += s["dropped"].get("extract_timeout", 0)
        res["seconds_total"] += s.get("seconds_total", 0)
        res["extract_s"] += s.get("seconds", {}).get("extract", 0)
        for k, v in s.get("seconds", {}).items():  # the per-stage profile (worker-seconds)
            res[f"s_{k}"] += v
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def agreement(dt: dict[str, str], wm: dict[str, str], table: dict) -> dict:
    ok200 = {k for k, v in table.items() if v["status"] == 200 or v["rec_type"] == "conversion"}
    return {
        "kept_datatrove": len(dt), "kept_webmill": len(wm), "both": len(dt.keys() & wm.keys()),
        "jaccard_docs": jaccard(dt, wm),
        "jaccard_urls": jaccard(dt.values(), wm.values()),
        "jaccard_docs_200": jaccard(dt.keys() & ok200, wm.keys() & ok200),
        "kept_datatrove_non200": len(dt.keys() - ok200),
    }


# ---------------------------------------------------------------------------------------------
# Disagreement analysis

def webmill_removed(out: Path) -> dict[str, str]:
    reasons = {}
    for f in (out / "curate" / "removed").rglob("*.parquet"):
        t = pq.read_table(f, columns=["id", "reason"])
        reasons.update(zip(t.column("id").to_pylist(), t.column("reason").to_pylist()))
    return reasons


def datatrove_dropped(out: Path, table: dict) -> tuple[dict[str, str], set, set]:
    """(our id → "step:reason" for filter drops, ids read, ids left after extraction)."""
    rid_to_id = {v["rid"]: k for k, v in table.items()}

    def ids_in(folder: Path) -> set:
        s = set()
        for f in folder.glob("*.txt"):
            s.update(rid_to_id.get(x, x) for x in f.read_text().split("\n") if x)
        return s

    reasons = {}
    for step_dir in sorted((out / "excluded").glob("*")):
        for f in step_dir.glob("*.jsonl*"):
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                for line in fh:
                    d = json.loads(line)
                    base = Path(d["metadata"]["file_path"]).name
                    reasons[document_id(base, d["id"])] = (f"{step_dir.name}:"
                                                           f"{d['metadata'].get('filter_reason', '-')}")
    return reasons, ids_in(out / "ids" / "0_read"), ids_in(out / "ids" / "1_extracted")


def analyse(dt_out: Path, wm_out: Path, table: dict, examples: int = 3) -> dict:
    dt, wm = kept_datatrove(dt_out), kept_webmill(wm_out)
    wm_reasons = webmill_removed(wm_out)
    dt_reasons, dt_read, dt_extracted = datatrove_dropped(dt_out, table)
    only_dt = Counter()
    only_dt_ex: dict[str, list] = {}
    for k in dt.keys() - wm.keys():
        info = table.get(k, {})
        r = wm_reasons.get(k) or (pre_document_reason(info) if info else "unknown id")
        only_dt[r] += 1
        only_dt_ex.setdefault(r, []).append(info.get("url", dt[k]))
    only_wm = Counter()
    only_wm_ex: dict[str, list] = {}
    for k in wm.keys() - dt.keys():
        if k in dt_reasons:
            r = dt_reasons[k]
        elif k not in dt_read:
            r = "reader skipped (payload type / charset)"
        elif k not in dt_extracted:
            r = "extractor: timeout, error or empty"
        else:
            r = "unknown"
        only_wm[r] += 1
        only_wm_ex.setdefault(r, []).append(wm[k])

    def ex(d):  # distinct example URLs per reason
        return {r: sorted(set(v))[:examples] for r, v in d.items()}

    return {**agreement(dt, wm, table),
            "kept_by_datatrove_only": dict(only_dt.most_common()),
            "kept_by_webmill_only": dict(only_wm.most_common()),
            "examples_datatrove_only": ex(only_dt_ex), "examples_webmill_only": ex(only_wm_ex),
            "datatrove": datatrove_stats(dt_out), "webmill": webmill_stats(wm_out)}


# ---------------------------------------------------------------------------------------------
# Rules only: the same texts through both rule chains (separates rule from extractor differences)

RULE_NAMES = ("gopher_repetition", "gopher_quality", "c4", "fineweb")


def build_rule_texts(path: Path) -> None:
    """Extract (webmill's trafilatura settings, in this process) every status-200 HTML response
    of the shared WARC/ARC files, label it with lid.176 and write the English ones (score ≥
    0.65) as JSONL: id, url, text, language_score."""
    from common import WARC_DIR
    from webmill.curate.extract import decode_html, extract_text
    from webmill.filters.language import LanguageFilter

    lid = LanguageFilter()
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fo:
        for f in sorted(WARC_DIR.iterdir()):
            if not f.name.endswith((".warc.gz", ".arc.gz")) or ".wet" in f.name:
                continue
            for rec in iter_records(str(f), []):
                if rec.rec_type != "response" or rec.http_status != 200 or "html" not in rec.content_type:
                    continue
                text = extract_text(decode_html(rec.read_payload(), rec.charset)).strip()
                if not text:
                    continue
                lang, score = lid.predict(text)
                if lang == "en" and score >= 0.65:
                    fo.write(json.dumps({"id": document_id(f.name, rec.record_id), "url": rec.url,
                                         "text": text, "language_score": score}) + "\n")
                    n += 1
    print(f"rule texts: {n} English documents → {path}", file=sys.stderr)


def rules_compare(texts: Path, out_dir: Path) -> dict:
    from webmill.config import load_config
    from webmill.curate.stages import build_rules
    from webmill.filters.base import Document

    docs = [json.loads(x) for x in texts.read_text(encoding="utf-8").split("\n") if x]
    rules = dict(zip(RULE_NAMES, build_rules(load_config())))
    t0 = time.perf_counter()
    ours = {}
    for d in docs:
        res = {}
        for name, rule in rules.items():
            keep, why = rule.filter(Document(text=d["text"], url=d["url"], id=d["id"], metadata={"language": "en"}))
            res[name] = None if keep else why
        doc = Document(text=d["text"], url=d["url"], id=d["id"], metadata={"language": "en"})
        chain = None
        for name, rule in rules.items():
            keep, why = rule.filter(doc)
            if not keep:
                chain = f"{name}:{why}"
                break
        ours[d["id"]] = {"rules": res, "chain": chain}
    ours_s = time.perf_counter() - t0
    dt_out = out_dir / "rules-datatrove.jsonl"
    t0 = time.perf_counter()
    subprocess.run([str(DATATROVE_PY), str(BENCH / "datatrove_fineweb.py"), "--rules-only", str(texts),
                    str(dt_out)], check=True)
    dt_s = time.perf_counter() - t0
    theirs = {d["id"]: d for d in map(json.loads, dt_out.read_text().split("\n")[:-1])}
    per_rule = {}
    for name in RULE_NAMES:
        c = Counter()
        for k, o in ours.items():
            a, b = o["rules"][name], theirs[k]["rules"][name]
            if a is None and b is None:
                c["both keep"] += 1
            elif a is not None and b is not None:
                c["both drop"] += 1
            elif a is not None:
                c[f"webmill only drops: {a}"] += 1
            else:
                c[f"datatrove only drops: {b}"] += 1
        per_rule[name] = dict(c.most_common())
    kept_o = {k for k, o in ours.items() if o["chain"] is None}
    kept_t = {k for k, t in theirs.items() if t["chain"] is None}
    diff = Counter()
    for k in kept_o ^ kept_t:
        diff[f"webmill {ours[k]['chain'] or 'keeps'} / datatrove {theirs[k]['chain'] or 'keeps'}"] += 1
    return {"texts": texts.name, "documents": len(docs), "kept_webmill": len(kept_o), "kept_datatrove": len(kept_t),
            "jaccard": jaccard(kept_o, kept_t), "per_rule": per_rule,
            "chain_disagreements": dict(diff.most_common()),
            "seconds_webmill_1core": round(ours_s, 2), "seconds_datatrove_1core_incl_startup": round(dt_s, 2)}


# ---------------------------------------------------------------------------------------------
# Extraction alone: trafilatura 2.3.1 (webmill's settings) vs datatrove's Trafilatura (1.11)

def build_html_set(path: Path) -> None:
    """Every status-200 HTML response of the shared WARC/ARC files, decoded with webmill's
    decode_html, as JSONL (id, url, html): the same str goes to both extractors."""
    from common import WARC_DIR
    from webmill.curate.extract import decode_html

    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fo:
        for f in sorted(WARC_DIR.iterdir()):
            if not f.name.endswith((".warc.gz", ".arc.gz")) or ".wet" in f.name:
                continue
            for rec in iter_records(str(f), []):
                if rec.rec_type == "response" and rec.http_status == 200 and "html" in rec.content_type:
                    html = decode_html(rec.read_payload(), rec.charset)
                    fo.write(json.dumps({"id": document_id(f.name, rec.record_id), "url": rec.url,
                                         "html": html}, ensure_ascii=False) + "\n")
                    n += 1
    print(f"HTML set: {n} pages → {path}", file=sys.stderr)


def _extract_worker(inp: Path, out: Path, profile: Path | None) -> None:
    """Our side of --extract-speed (run in a subprocess of the project venv)."""
    from trafilatura.meta import reset_caches

    from webmill.curate.extract import extract_text

    extract_text("<html><body><p>warm up</p></body></html>")
    reset_caches()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    with open(inp, encoding="utf-8") as fi, open(out, "w", encoding="utf-8") as fo:
        for line in fi:
            d = json.loads(line)
            t = time.perf_counter()
            if prof:
                prof.enable()
            text = extract_text(d["html"])
            if prof:
                prof.disable()
            fo.write(json.dumps({"id": d["id"], "seconds": time.perf_counter() - t, "text": text}) + "\n")
    if prof:
        prof.dump_stats(str(profile))


def extract_speed(html: Path, out_dir: Path, rounds: int) -> dict:
    rows = {"webmill": [], "datatrove": []}
    outs = {}
    for i in range(rounds):
        for side in (("webmill", "datatrove") if i % 2 == 0 else ("datatrove", "webmill")):
            o = out_dir / f"extract-{side}.jsonl"
            if side == "webmill":
                cmd = [str(PROJECT_PY), str(Path(__file__).resolve()), "--_extract-worker", str(html), str(o)]
            else:
                cmd = [str(DATATROVE_PY), str(BENCH / "datatrove_fineweb.py"), "--extract-speed", str(html), str(o)]
            la = loadavg()[0]
            subprocess.run(cmd, check=True)
            res = [json.loads(x) for x in o.read_text().split("\n") if x]
            rows[side].append({"seconds": sum(r["seconds"] for r in res), "load": la})
            outs[side] = {r["id"]: r for r in res}
            print(f"  extract round {i + 1} {side}: {rows[side][-1]['seconds']:.1f} s (load {la:.1f})",
                  file=sys.stderr, flush=True)
    # One profiled pass of ours.
    prof = out_dir / "extract-webmill.prof"
    subprocess.run([str(PROJECT_PY), str(Path(__file__).resolve()), "--_extract-worker", str(html),
                    str(out_dir / "extract-webmill-prof.jsonl"), str(prof)], check=True)
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(str(prof), stream=buf).sort_stats("cumulative").print_stats(25)
    w, d = outs["webmill"], outs["datatrove"]
    same = sum(1 for k in w if w[k]["text"].strip() == (d.get(k, {}).get("text") or "").strip())
    empty_w = sum(1 for k in w if not w[k]["text"].strip())
    empty_d = sum(1 for k in d if not (d[k]["text"] or "").strip())
    per_doc_ratio = statistics.median(d[k]["seconds"] / w[k]["seconds"] for k in w if w[k]["seconds"] > 0)
    sec_w = statistics.median(r["seconds"] for r in rows["webmill"])
    sec_d = statistics.median(r["seconds"] for r in rows["datatrove"])
    return {"pages": len(w), "rounds": rows, "median_seconds_webmill": sec_w, "median_seconds_datatrove": sec_d,
            "ratio_total": sec_d / sec_w, "median_per_page_ratio": per_doc_ratio,
            "identical_text": same, "empty_webmill": empty_w, "empty_datatrove": empty_d,
            "profile_top": buf.getvalue()}


# ---------------------------------------------------------------------------------------------

def profile_webmill(corpus: Path, out_dir: Path, timeout: float, extra_toml: str = "") -> dict:
    """cProfile of webmill's per-document step on the corpus' first file, in this process (one
    :class:`FileProcessor`, no Ray): the stats' per-stage seconds, the CPU seconds of this
    process and of the extraction child (``RUSAGE_CHILDREN`` after it exits), and the top
    functions by own time. Config: the benchmark's (``http_status = []``, ``timeout``), the
    ``--webmill-extractor``, then ``extra_toml`` (e.g. the fast profile's file)."""
    import cProfile
    import io
    import pstats
    import resource

    from webmill.config import load_config
    from webmill.curate.documents import FileProcessor

    f = sorted(corpus.glob("*.warc.gz"))[0]
    over = {"extract": {"timeout_s": float(timeout), "http_status": []}}
    if WEBMILL_EXTRACTOR:
        over["extract"]["extractor"] = WEBMILL_EXTRACTOR
    cfg = load_config(extra_toml or None, over)
    out = out_dir / "profile-webmill"
    shutil.rmtree(out, ignore_errors=True)
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    fp = FileProcessor(cfg, out)
    t_init = time.perf_counter() - t0
    prof = cProfile.Profile()
    t1 = time.perf_counter()
    prof.enable()
    stats = fp.process(str(f))
    prof.disable()
    wall = time.perf_counter() - t1
    fp.close()
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    prof.dump_stats(str(out_dir / "webmill-documents.prof"))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
    return {"file": f.name, "init_s": round(t_init, 2), "process_wall_s": round(wall, 2),
            "cpu_self_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 2),
            "cpu_children_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2),
            "kept": stats["kept"], "stages_s": stats["seconds"], "top_tottime": buf.getvalue()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_extract-worker":
        _extract_worker(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS_DIR, help="corpus from make_corpus.py")
    ap.add_argument("--pairs", type=int, default=3, help="alternating A/B pairs [3]")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1.0, help="per-document extraction timeout "
                    "of the timed runs, both sides [1 s, datatrove's default; under load a 1 s "
                    "timeout drops different pages on each side, 30 s takes that out]")
    ap.add_argument("--webmill-fast", action="store_true", help="webmill with extract.fast = true "
                    "(trafilatura fast mode; not FineWeb's setting: a speed/agreement trade-off)")
    ap.add_argument("--webmill-extractor", default=None, choices=["trafilatura", "resiliparse"],
                    help="webmill's extract.extractor [the config's: trafilatura, or the profile's]")
    ap.add_argument("--webmill-args", default="", help="more `curate run` arguments for webmill's "
                    "side, e.g. \"--profile fast\" (the fast path, docs/fast-path.md)")
    ap.add_argument("--profile-webmill", action="store_true", help="only cProfile webmill's "
                    "per-document step on the corpus' first file, in one process (no Ray)")
    ap.add_argument("--profile-config", default="", help="TOML for --profile-webmill (e.g. examples/fast.toml)")
    ap.add_argument("--baseline-tree", type=Path, default=None, help="also time, in each pair, the "
                    "webmill package in this directory (e.g. `git archive HEAD webmill | tar -x -C DIR`) "
                    "with --baseline-args: the before/after of a change, same load")
    ap.add_argument("--baseline-args", default="", help="`curate run` arguments of the baseline side")
    ap.add_argument("--baseline-extractor", default="resiliparse", help="its extract.extractor [resiliparse]")
    ap.add_argument("--max-load", type=float, default=4.0, help="wait for a 1-min load below this")
    ap.add_argument("--wait-s", type=float, default=0.0, help="max seconds to wait for it per pair [0]")
    ap.add_argument("--diag-corpus", type=Path, default=None, help="corpus for the diagnosis runs "
                    "[--corpus]")
    ap.add_argument("--no-diagnose", action="store_true", help="skip the disagreement analysis runs")
    ap.add_argument("--diagnose-only", action="store_true", help="only the analysis runs")
    ap.add_argument("--diag-timeout", type=float, default=1.0, help="extraction timeout of the "
                    "diagnosis runs, both sides [1 s as in the timed runs; a large value takes "
                    "load-dependent timeouts out of the agreement]")
    ap.add_argument("--reuse-diag", action="store_true", help="analyse the existing diagnosis "
                    "run directories instead of running them again")
    ap.add_argument("--rules-only", action="store_true", help="only compare the rule chains on the "
                    "same extracted texts (no pipelines, no timing pairs)")
    ap.add_argument("--texts", type=Path, default=RESULTS_DIR / "rule-texts.jsonl",
                    help="texts for --rules-only (built from the shared WARCs when missing)")
    ap.add_argument("--extract-speed", action="store_true", help="only time the two extractors "
                    "on the same decoded HTML (one core each, alternating), and profile ours")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of --extract-speed [3]")
    ap.add_argument("--dt-start-wait", type=float, default=60.0, help="seconds datatrove's new "
                    "extraction child gets to start [60; 0 = as shipped, see datatrove_fineweb.py]")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args()
    global DT_START_WAIT, WEBMILL_FAST, WEBMILL_EXTRACTOR, WEBMILL_ARGS
    DT_START_WAIT = args.dt_start_wait
    WEBMILL_FAST = args.webmill_fast
    WEBMILL_EXTRACTOR = args.webmill_extractor
    WEBMILL_ARGS = args.webmill_args.split()
    if args.extract_speed:
        html = args.out / "html.jsonl"
        if not html.is_file():
            build_html_set(html)
        args.out.mkdir(parents=True, exist_ok=True)
        es = extract_speed(html, args.out, args.rounds)
        (args.out / "extract-speed.json").write_text(json.dumps(es, indent=1))
        print(f"\nExtraction alone, {es['pages']} status-200 HTML pages, one core each, {args.rounds} "
              f"alternating rounds: webmill (trafilatura 2.3.1) {es['median_seconds_webmill']:.1f} s, "
              f"datatrove (trafilatura 1.11) {es['median_seconds_datatrove']:.1f} s → ratio "
              f"{es['ratio_total']:.2f}× (median per page {es['median_per_page_ratio']:.2f}×); identical "
              f"text {es['identical_text']}/{es['pages']}, empty webmill {es['empty_webmill']}, "
              f"datatrove {es['empty_datatrove']}")
        print(es["profile_top"])
        return
    if args.profile_webmill:
        args.out.mkdir(parents=True, exist_ok=True)
        pr = profile_webmill(args.corpus, args.out, args.timeout, args.profile_config)
        (args.out / "profile-webmill.json").write_text(json.dumps(pr, indent=1))
        print(f"{pr['file']}: init {pr['init_s']} s, process {pr['process_wall_s']} s wall, CPU "
              f"{pr['cpu_self_s']} s this process + {pr['cpu_children_s']} s extraction child; kept "
              f"{pr['kept']}\nstages (s): {pr['stages_s']}")
        print(pr["top_tottime"])
        return
    if args.rules_only:
        if not args.texts.is_file():
            build_rule_texts(args.texts)
        args.out.mkdir(parents=True, exist_ok=True)
        rc = rules_compare(args.texts, args.out)
        (args.out / "rules.json").write_text(json.dumps(rc, indent=1))
        print_rules(rc)
        return

    man = read_manifest(args.corpus)
    files = sorted(args.corpus.glob("*.warc.gz"))
    n_docs = man["total_html_docs"]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"corpus {args.corpus}: {len(files)} files, {man['total_records']:,} records, "
          f"{n_docs:,} HTML docs; load now {loadavg()[0]:.1f}", file=sys.stderr)
    table = record_table(files)
    results: dict = {
        "corpus": str(args.corpus), "files": len(files), "html_docs": n_docs,
        "records": man["total_records"], "workers": args.workers, "cpus": os.cpu_count(),
        "datatrove_start_wait_s": args.dt_start_wait, "timeout_s": args.timeout, "webmill_fast": args.webmill_fast,
        "webmill_extractor": args.webmill_extractor, "webmill_args": args.webmill_args,
        "versions": {
            "webmill venv": pip_versions(PROJECT_PY, ["webmill", "trafilatura", "lxml", "ray",
                                                      "fasttext-numpy2", "warcio", "numpy"]),
            "datatrove venv": pip_versions(DATATROVE_PY, ["datatrove", "trafilatura", "lxml",
                                                          "fasttext-numpy2-wheel", "spacy", "warcio", "numpy"]),
        },
        "pairs": [],
    }

    if not args.diagnose_only:
        for i in range(args.pairs):
            la = wait_for_quiet(args.max_load, args.wait_s) if args.wait_s else loadavg()[0]
            order = ("datatrove", "webmill") if i % 2 == 0 else ("webmill", "datatrove")
            if args.baseline_tree:  # before/after alternate too: start, dt, wm / wm, dt, start
                order = ("start",) + order if i % 2 == 0 else order + ("start",)
            pair = {"order": "/".join(order), "load_at_start": la}
            for side in order:
                out = args.out / f"run-{side}"
                print(f"pair {i + 1}/{args.pairs}: {side} ...", file=sys.stderr, flush=True)
                if side == "start":
                    saved, WEBMILL_EXTRACTOR = WEBMILL_EXTRACTOR, args.baseline_extractor
                    try:
                        r = run_webmill(args.corpus, out, args.workers, timeout=args.timeout,
                                        tree=args.baseline_tree.resolve(), args=args.baseline_args.split())
                    finally:
                        WEBMILL_EXTRACTOR = saved
                else:
                    r = (run_datatrove if side == "datatrove" else run_webmill)(args.corpus, out, args.workers,
                                                                                 timeout=args.timeout)
                r["docs_per_s"] = n_docs / r["wall_s"]
                r.update(datatrove_stats(out) if side == "datatrove" else webmill_stats(out))
                pair[side] = r
                print(f"  {side}: {r['wall_s']:.1f} s, {r['docs_per_s']:.2f} docs/s "
                      f"(load {r['load_mean']:.1f})", file=sys.stderr, flush=True)
            pair["ratio"] = pair["webmill"]["docs_per_s"] / pair["datatrove"]["docs_per_s"]
            if "start" in pair:
                pair["speedup_vs_start"] = pair["webmill"]["docs_per_s"] / pair["start"]["docs_per_s"]
                pair["agreement_vs_start"] = agreement(kept_webmill(args.out / "run-start"),
                                                       kept_webmill(args.out / "run-webmill"), table)
            pair["agreement"] = agreement(kept_datatrove(args.out / "run-datatrove"),
                                          kept_webmill(args.out / "run-webmill"), table)
            print(f"  ratio {pair['ratio']:.2f}x, Jaccard docs {pair['agreement']['jaccard_docs']:.3f}, "
                  f"urls {pair['agreement']['jaccard_urls']:.3f}", file=sys.stderr, flush=True)
            results["pairs"].append(pair)
        ratios = [p["ratio"] for p in results["pairs"]]
        results["median_ratio"] = statistics.median(ratios)
        results["median_jaccard_docs"] = statistics.median(p["agreement"]["jaccard_docs"] for p in results["pairs"])
        results["median_jaccard_urls"] = statistics.median(p["agreement"]["jaccard_urls"] for p in results["pairs"])
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    if not args.no_diagnose:
        dcorpus = args.diag_corpus or args.corpus
        dtable = table if dcorpus == args.corpus else record_table(sorted(dcorpus.glob("*.warc.gz")))
        print(f"diagnosis runs on {dcorpus} ...", file=sys.stderr, flush=True)
        if args.reuse_diag:
            rd = rw = {}
        else:
            rd = run_datatrove(dcorpus, args.out / "diag-datatrove", args.workers, True, args.diag_timeout)
            rw = run_webmill(dcorpus, args.out / "diag-webmill", args.workers, True, args.diag_timeout)
        results["diagnosis"] = {"corpus": str(dcorpus), "timeout_s": args.diag_timeout,
                                "datatrove_run": rd, "webmill_run": rw,
                                **analyse(args.out / "diag-datatrove", args.out / "diag-webmill", dtable)}
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    print_report(results)


def print_rules(rc: dict) -> None:
    print(f"\nRules only, same texts ({rc['documents']} English documents from {rc.get('texts', '?')}): kept "
          f"webmill {rc['kept_webmill']}, datatrove {rc['kept_datatrove']}, Jaccard {rc['jaccard']:.3f}")
    for name, c in rc["per_rule"].items():
        print(f"  {name}: " + "; ".join(f"{k} {v}" for k, v in c.items()))
    print("  chain disagreements:")
    for k, v in rc["chain_disagreements"].items():
        print(f"    {v:4d}  {k}")
    print(f"  time: webmill {rc['seconds_webmill_1core']} s, datatrove "
          f"{rc['seconds_datatrove_1core_incl_startup']} s (incl. its start-up), one core each")


def print_report(res: dict) -> None:
    print(f"\nCorpus: {res['files']} files, {res['records']:,} records, {res['html_docs']:,} HTML docs; "
          f"{res['workers']} workers on {res['cpus']} CPUs")
    for side, v in res["versions"].items():
        print(f"  {side}: " + ", ".join(f"{k} {x}" for k, x in v.items()))
    if res["pairs"]:
        print("\n| pair | order | datatrove s | datatrove docs/s | webmill s | webmill docs/s | ratio | "
              "kept dt / wm | Jaccard docs | Jaccard URLs | timeouts dt / wm | load (mean) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for i, p in enumerate(res["pairs"], 1):
            d, w, a = p["datatrove"], p["webmill"], p["agreement"]
            print(f"| {i} | {p['order']} | {d['wall_s']:.1f} | {d['docs_per_s']:.2f} | {w['wall_s']:.1f} | "
                  f"{w['docs_per_s']:.2f} | {p['ratio']:.2f}× | {a['kept_datatrove']} / {a['kept_webmill']} | "
                  f"{a['jaccard_docs']:.3f} | {a['jaccard_urls']:.3f} | {d.get('timeouts', '?')} / "
                  f"{w.get('timeouts', '?')} | {d['load_mean']:.1f} / {w['load_mean']:.1f} |")
        print(f"\nmedian ratio {res['median_ratio']:.2f}×; median Jaccard docs "
              f"{res['median_jaccard_docs']:.3f}, URLs {res['median_jaccard_urls']:.3f}")
        if "start" in res["pairs"][0]:
            print("\n| pair | start s | start docs/s | webmill s | webmill docs/s | speed-up | start vs datatrove "
                  "| kept start / wm | Jaccard start vs wm | load (mean) start |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            for i, p in enumerate(res["pairs"], 1):
                b, w, a = p["start"], p["webmill"], p["agreement_vs_start"]
                print(f"| {i} | {b['wall_s']:.1f} | {b['docs_per_s']:.2f} | {w['wall_s']:.1f} | {w['docs_per_s']:.2f} | "
                      f"{p['speedup_vs_start']:.2f}× | {b['docs_per_s'] / p['datatrove']['docs_per_s']:.2f}× | "
                      f"{a['kept_datatrove']} / {a['kept_webmill']} | {a['jaccard_docs']:.3f} | {b['load_mean']:.1f} |")
            print(f"median speed-up vs start {statistics.median(p['speedup_vs_start'] for p in res['pairs']):.2f}×")
    dg = res.get("diagnosis")
    if dg:
        print(f"\nDiagnosis ({dg['corpus']}, extraction timeout {dg['timeout_s']:g} s): kept datatrove {dg['kept_datatrove']}, webmill "
              f"{dg['kept_webmill']}, both {dg['both']}; Jaccard docs {dg['jaccard_docs']:.3f}, URLs "
              f"{dg['jaccard_urls']:.3f}, status-200 only {dg['jaccard_docs_200']:.3f}; "
              f"datatrove kept {dg['kept_datatrove_non200']} non-200 pages")
        print(f"  datatrove: {dg['datatrove']}; webmill: {dg['webmill']}")
        print("  kept by datatrove only → webmill's reason:")
        for r, n in dg["kept_by_datatrove_only"].items():
            print(f"    {n:5d}  {r}   e.g. {', '.join(dg['examples_datatrove_only'][r])}")
        print("  kept by webmill only → datatrove's reason:")
        for r, n in dg["kept_by_webmill_only"].items():
            print(f"    {n:5d}  {r}   e.g. {', '.join(dg['examples_webmill_only'][r])}")


if __name__ == "__main__":
    main()
