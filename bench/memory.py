"""Peak memory of ``curate run`` (per-document stages) on 1× and 4× inputs.

Usage (needs psutil, which the project venv does not have; the benchmark venv does)::

    bench/.venv-datatrove/bin/python bench/memory.py                 # 1x, 4x more files, 4x larger files
    bench/.venv-datatrove/bin/python bench/memory.py --modes files   # only 4x as many files

Inputs, built with make_corpus.py when missing (each copy = every record of the shared samples,
384 HTML documents):

* ``1x``: 2 files × 1 copy (``bench/out/corpus-diag``, 768 HTML documents);
* ``4x files``: 8 files × 1 copy (``bench/out/corpus-mem-8files``): each worker processes 4 files
  one after the other (leaks across files / actor reuse show up here);
* ``4x size``: 2 files × 4 copies (``bench/out/corpus-mem-4copies``): 4× larger files (whatever is held per
  file until it is written shows up here).

Each run: ``curate run FILES -o OUT --no-dedup --no-pii --no-tokenize --no-report --workers 2``
on a fresh output directory. A thread sums the RSS of the ``curate`` process and all its
descendants (the embedded Ray's GCS, raylet, workers, and the extraction subprocesses) every
``--interval`` seconds (0.2); PSS (shared pages divided among their users: the sum of RSS counts
shared libraries and the object store once per process) is summed every 5th sample. Reported:
peak tree RSS and PSS, the process count and the biggest processes at the peak, the ratios
4×/1× (goal ≤ 1.3), and the CPU seconds of the tree by process kind (extraction children, Ray
workers, raylet, GCS, dashboard, driver): where the machine's time goes during a run.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (CURATE, OUT_ROOT, PROJECT_PY, REPO, LoadSampler,  # noqa: E402
                    fmt_mb, read_manifest, strip_bench_from_path)

strip_bench_from_path()

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402

CORPORA = {
    "1x": (OUT_ROOT / "corpus-diag", 2, 1),
    "4x files": (OUT_ROOT / "corpus-mem-8files", 8, 1),
    "4x size": (OUT_ROOT / "corpus-mem-4copies", 2, 4),  # not bench/out/corpus: 8 copies
}


def ensure_corpus(path: Path, files: int, copies: int) -> None:
    try:
        m = read_manifest(path)
        if len(m["files"]) == files and m["copies_per_file"] == copies:
            return
    except SystemExit:
        pass
    subprocess.run([str(PROJECT_PY), str(REPO / "bench" / "make_corpus.py"), "--files", str(files),
                    "--copies", str(copies), "-o", str(path)], check=True)


def _label(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
    if "child_main" in cmd:
        return "extraction child"
    if "ray::" in cmd or "default_worker.py" in cmd or cmd.startswith("ray::"):
        return "ray worker"
    for k in ("gcs_server", "raylet", "dashboard", "log_monitor", "runtime_env", "monitor.py"):
        if k in cmd:
            return k
    if "curate" in cmd:
        return "driver (curate)"
    return p.name()


def sample_tree(root: int, every_s: float, stop: threading.Event, out: dict) -> None:
    out.update(peak_rss=0, peak_pss=0, samples=0, peak_procs=0, at_peak={})
    cpu: dict[int, tuple[str, float]] = {}  # pid → (kind, last seen user+system CPU seconds)
    out["cpu_by_kind"] = cpu
    i = 0
    while not stop.is_set():
        try:
            r = psutil.Process(root)
            procs = [r] + r.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        rss, by_label = 0, Counter()
        want_pss = i % 5 == 0
        pss = 0
        for p in procs:
            try:
                if want_pss:
                    mi = p.memory_full_info()
                    pss += getattr(mi, "pss", mi.rss)
                    m = mi.rss
                else:
                    m = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += m
            if p.pid not in cpu or i % 5 == 0:
                label = cpu[p.pid][0] if p.pid in cpu else _label(p)
                try:
                    ct = p.cpu_times()
                    cpu[p.pid] = (label, ct.user + ct.system)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            by_label[cpu[p.pid][0] if p.pid in cpu else _label(p)] += m
        out["samples"] += 1
        if rss > out["peak_rss"]:
            out.update(peak_rss=rss, peak_procs=len(procs), at_peak=dict(by_label.most_common()),
                       peak_t=round(time.time() - out.setdefault("t0", time.time()), 1))
        if want_pss and pss > out["peak_pss"]:
            out["peak_pss"] = pss
        out.setdefault("t0", time.time())
        i += 1
        stop.wait(every_s)


def run_one(corpus: Path, out: Path, workers: int, interval: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files = sorted(str(p) for p in corpus.glob("*.warc.gz"))
    cmd = [str(CURATE), "run", *files, "-o", str(out / "curate"), "--no-dedup", "--no-pii",
           "--no-tokenize", "--no-report", "--workers", str(workers)]
    res: dict = {}
    stop = threading.Event()
    with open(out / "run.log", "w") as lf, LoadSampler() as ls:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, cwd=str(REPO))
        th = threading.Thread(target=sample_tree, args=(proc.pid, interval, stop, res), daemon=True)
        th.start()
        rc = proc.wait()
        stop.set()
        th.join()
        res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["load_mean"] = round(ls.mean, 1)
    if rc != 0:
        raise SystemExit(f"curate failed ({rc}); see {out / 'run.log'}")
    kept = 0
    for f in (out / "curate" / "stats").glob("*.json"):
        kept += json.loads(f.read_text()).get("kept", 0)
    res["kept"] = kept
    res.pop("t0", None)
    by_kind = Counter()
    for label, secs in res.pop("cpu_by_kind").values():
        by_kind[label] += secs
    res["cpu_s_by_kind"] = {k: round(v, 1) for k, v in by_kind.most_common()}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="files,size", help="which 4x inputs: files, size or both [files,size]")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--out", type=Path, default=OUT_ROOT / "memory")
    args = ap.parse_args()
    names = ["1x"] + [f"4x {m.strip()}" for m in args.modes.split(",") if m.strip()]
    results = {}
    for name in names:
        path, nf, nc = CORPORA[name]
        ensure_corpus(path, nf, nc)
        man = read_manifest(path)
        print(f"{name}: {path} ({nf} files × {nc} copies, {man['total_html_docs']:,} HTML docs) ...",
              file=sys.stderr, flush=True)
        r = run_one(path, args.out / name.replace(" ", "-"), args.workers, args.interval)
        r.update(files=nf, copies=nc, html_docs=man["total_html_docs"],
                 compressed_mb=round(sum(f["bytes"] for f in man["files"]) / 1e6, 1))
        results[name] = r
        print(f"  peak RSS {fmt_mb(r['peak_rss'])} (PSS {fmt_mb(r['peak_pss'])}, {r['peak_procs']} processes), "
              f"{r['wall_s']} s, load {r['load_mean']}", file=sys.stderr, flush=True)
    base = results["1x"]
    for name, r in results.items():
        r["ratio_rss"] = round(r["peak_rss"] / base["peak_rss"], 3)
        r["ratio_pss"] = round(r["peak_pss"] / base["peak_pss"], 3) if base["peak_pss"] else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| input | files × copies | HTML docs | wall s | peak RSS (tree) | peak PSS (tree) | processes "
          "at peak | RSS ratio to 1× | PSS ratio | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['files']} × {r['copies']} | {r['html_docs']:,} | {r['wall_s']} | "
              f"{fmt_mb(r['peak_rss'])} | {fmt_mb(r['peak_pss'])} | {r['peak_procs']} | "
              f"{r['ratio_rss']:.2f}× | {r['ratio_pss']:.2f}× | {r['load_mean']} |")
    print("\nRSS at the peak by process kind:")
    for name, r in results.items():
        print(f"  {name}: " + ", ".join(f"{k} {fmt_mb(v)}" for k, v in r["at_peak"].items()))
    print("\nCPU seconds (user+system, sampled once a second per process) by process kind:")
    for name, r in results.items():
        tot = sum(r["cpu_s_by_kind"].values())
        print(f"  {name} (total {tot:.0f} s over {r['wall_s']} s wall): "
              + ", ".join(f"{k} {v:.0f} s ({v / tot:.0%})" for k, v in r["cpu_s_by_kind"].items()))


if __name__ == "__main__":
    main()
