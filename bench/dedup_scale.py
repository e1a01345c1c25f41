"""Dedup at scale: `run_dedup` on synthetic corpora of growing size N (issue 18, build item 3).

For each N (default 250k, 500k, 1M, 2M documents of ~300 words; ``--sizes``) the corpus of
``bench/dedup_synth.py`` (10 % exact and 10 % near copies in planted clusters of known sizes) is
generated once under ``--work`` and reused. Each (N, components path) runs in a fresh child
process with its own embedded Ray (``num_cpus`` = ``--cpus``, default all cores), so the driver's
peak RSS (``peak_rss_driver_bytes``, the child's lifetime peak) belongs to that run alone. The
child samples the RSS of every process under it every 0.5 s with psutil (Ray workers
``ray::*``: largest one and their sum; also the largest process of any kind, Ray's own
included), reads the object-store spill from Ray's store stats (bytes spilled to disk, total of
the run), and scores the output against the planted clusters (``dedup_synth.evaluate``).

Goals (issue 18): µs per document flat within 1.2× from the smallest to the largest N; driver
peak RSS flat. Before each run the script waits for a quiet machine (``--max-load``, at most
``--max-wait`` s; ``bench/common.wait_for_quiet``) and records the load average.

    python bench/dedup_scale.py                                  # 250k, 500k, 1M, 2M; components auto
    python bench/dedup_scale.py --both --json bench/out/dedup-scale.json   # auto and distributed
    python bench/dedup_scale.py --sizes 20000,40000 --max-wait 0 # a quick check

Output: a Markdown table (paste into bench/README.md) and, with ``--json``, every number.
Disk: a corpus takes ~0.8 KB per document (zstd Parquet), and each run adds its ``deduped/``
(~0.65 KB) and ``dedup_index/`` (~0.12 KB): 2M documents ≈ 3.2 GB under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # `python bench/dedup_scale.py`: webmill and bench/common importable
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(1, str(HERE))

import common  # noqa: E402  (bench/common.py, standard library only)
import dedup_synth as synth  # noqa: E402

PHASES = ("plan", "signatures", "shuffle_buckets", "components", "keep", "write", "total")
DEFAULT_SIZES = "250000,500000,1000000,2000000"


def rss_anon(pid: int) -> int:
    """``RssAnon`` of a process in bytes (its private memory: RSS without file and shared-memory
    pages such as the Ray object store's, which a process maps when it reads objects); 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ProcessRss:
    """Samples memory every ``every_s`` seconds: this driver's RSS and private RSS (RssAnon), and
    of its descendants the largest Ray worker (command line ``ray::...``, agents excluded; RSS
    and RssAnon), the sum over workers, and the largest process of any kind (with its name)."""

    def __init__(self, every_s: float = 0.5):
        self.every_s = every_s
        self.peak_worker = self.peak_worker_anon = self.peak_workers_sum = self.peak_any = 0
        self.peak_driver = self.peak_driver_anon = 0
        self.peak_any_name = ""
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import ray  # noqa: F401  (psutil may come only with Ray, in ray/thirdparty_files)
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            self.peak_driver = max(self.peak_driver, me.memory_info().rss)
            self.peak_driver_anon = max(self.peak_driver_anon, rss_anon(me.pid))
            workers, anon = [], []
            for p in me.children(recursive=True):
                try:
                    rss = p.memory_info().rss
                    title = " ".join(p.cmdline())
                except psutil.Error:
                    continue
                if rss > self.peak_any:
                    self.peak_any, self.peak_any_name = rss, title.split(" ")[0][:60]
                if title.startswith("ray::") and "Agent" not in title:
                    workers.append(rss)
                    anon.append(rss_anon(p.pid))
            if workers:
                self.peak_worker = max(self.peak_worker, max(workers))
                self.peak_worker_anon = max(self.peak_worker_anon, max(anon))
                self.peak_workers_sum = max(self.peak_workers_sum, sum(workers))
            self.samples += 1
            self._stop.wait(self.every_s)

    def __enter__(self) -> "ProcessRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def spilled_bytes() -> dict:
    """Object-store spill of this driver's Ray so far: ``spilled_bytes``, ``spilled_objects``,
    ``restored_bytes`` from the raylet's store stats (Ray's private API behind ``ray memory``);
    ``{"spill_error": ...}`` if unavailable."""
    try:
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        address = ray.get_runtime_context().gcs_address  # other Ray instances may run on this machine
        s = get_memory_info_reply(get_state_from_address(address)).store_stats
        return {"spilled_bytes": int(s.spilled_bytes_total), "spilled_objects": int(s.spilled_objects_total),
                "restored_bytes": int(s.restored_bytes_total)}
    except Exception as exc:  # noqa: BLE001 - a private Ray API: report rather than fail the bench
        return {"spill_error": repr(exc)}


def run_one(corpus: str, mode: str, cpus: int, object_store_mb: int, write_index: bool, result_path: str) -> None:
    """Child process: one run_dedup on ``corpus`` with ``components=mode``; writes the result JSON."""
    import logging

    import ray
    import ray.data  # configures its loggers on import: quiet them after

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # one INFO line per Dataset otherwise

    from webmill.curate.dedup import DedupConfig, run_dedup

    tmp = tempfile.mkdtemp(prefix="ray-ds-", dir="/tmp")  # short path: Ray's socket names
    init = {"num_cpus": cpus, "include_dashboard": False, "_temp_dir": tmp}
    if object_store_mb:
        init["object_store_memory"] = object_store_mb * 2**20
    ray.init(**init)
    try:
        cfg = DedupConfig(components=mode, write_index=write_index)
        with ProcessRss(0.5) as rss, common.LoadSampler(2.0) as load:
            stats = run_dedup(corpus, cfg)
        spill = spilled_bytes()
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)  # Ray's session logs and sockets of this run
    result = {
        "components_mode": mode,
        "stats": {k: stats.get(k) for k in ("documents_in", "documents_removed", "files", "candidate_edges",
                                            "unique_edges", "components_path", "components", "seconds",
                                            "peak_rss_driver_bytes", "shuffle", "distributed_components",
                                            "exact", "minhash")},
        "rss": {"driver_sampled_peak_bytes": rss.peak_driver, "driver_private_peak_bytes": rss.peak_driver_anon,
                "worker_peak_bytes": rss.peak_worker, "worker_private_peak_bytes": rss.peak_worker_anon,
                "workers_sum_peak_bytes": rss.peak_workers_sum,
                "any_process_peak_bytes": rss.peak_any, "any_process_peak_name": rss.peak_any_name,
                "samples": rss.samples},
        "spill": spill,
        "load": {"mean": round(load.mean, 2), "max": round(load.max, 2)},
        "recall": synth.evaluate(corpus),
    }
    Path(result_path).write_text(json.dumps(result, indent=1, default=str))


def run_child(corpus: Path, mode: str, args) -> dict | None:
    """One run in a child process; its result dict, or None when it failed (reported on stderr)."""
    with tempfile.NamedTemporaryFile(suffix=".json", dir="/tmp", delete=False) as f:
        res_path = f.name
    cmd = [sys.executable, __file__, "--child", str(corpus), "--mode", mode, "--cpus", str(args.cpus),
           "--object-store-mb", str(args.object_store_mb), "--result", res_path] + (["--no-index"] if args.no_index else [])
    t = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    wall = time.perf_counter() - t
    try:
        if rc != 0:
            print(f"dedup_scale: run {mode} on {corpus} failed (exit {rc}); continuing", file=sys.stderr)
            return None
        res = json.loads(Path(res_path).read_text())
    finally:
        os.unlink(res_path)
    res["child_wall_s"] = round(wall, 2)
    return res


def _mb(x) -> str:
    return f"{x / 2**20:,.0f}" if x is not None else "–"


def table(rows: list[dict]) -> str:
    """Markdown table of the runs (ratios against the smallest N of the same components mode)."""
    base: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["docs"]):
        base.setdefault(r["components_mode"], r)
    head = ["N", "files", "cand. edges", "unique edges", "path", *[p.replace("shuffle_buckets", "shuffle") for p in PHASES],
            "µs/doc", "×µs/doc", "driver MB", "×driver", "driver priv. MB", "worker MB (priv.)", "workers Σ MB",
            "max proc MB", "spill MB",
            "recall", "exact / near recall", "false rem.", "kept pairs", "load"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s, b = r["stats"], base[r["components_mode"]]
        sec = s.get("seconds") or {}
        rec = r["recall"]
        us = r["us_per_doc"]
        drv = s.get("peak_rss_driver_bytes")
        bdrv = b["stats"].get("peak_rss_driver_bytes")
        cells = [f"{r['docs']:,}", str(s.get("files")), f"{s.get('candidate_edges') or 0:,}",
                 f"{s['unique_edges']:,}" if s.get("unique_edges") is not None else "–",
                 str(s.get("components_path") or r["components_mode"]),
                 *[f"{sec[p]:.1f}" if p in sec else "–" for p in PHASES],
                 f"{us:.1f}", f"{us / b['us_per_doc']:.2f}", _mb(drv), f"{drv / bdrv:.2f}" if drv and bdrv else "–",
                 _mb(r["rss"].get("driver_private_peak_bytes")),
                 f"{_mb(r['rss']['worker_peak_bytes'])} ({_mb(r['rss'].get('worker_private_peak_bytes'))})",
                 _mb(r["rss"]["workers_sum_peak_bytes"]),
                 _mb(r["rss"]["any_process_peak_bytes"]), _mb(r["spill"].get("spilled_bytes")),
                 f"{rec['recall']:.4f}", f"{rec['exact']['recall']:.4f} / {rec['near']['recall']:.4f}",
                 str(rec["false_removals"]), str(rec["wrongly_kept_pairs"]),
                 f"{r['load_before']:.1f} / {r['load']['mean']:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated corpus sizes N (documents)")
    ap.add_argument("--work", default=str(common.OUT_ROOT / "dedup-scale"), help="corpora are generated (and reused) here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs-per-file", type=int, default=50_000)
    ap.add_argument("--components", default="auto", choices=("auto", "single", "distributed"))
    ap.add_argument("--both", action="store_true", help="run components=auto and components=distributed")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="Ray num_cpus (default: all cores)")
    ap.add_argument("--object-store-mb", type=int, default=0, help="Ray object store size (0 = Ray's default)")
    ap.add_argument("--no-index", action="store_true", help="write_index=False (no OUT/dedup_index/ for --against)")
    ap.add_argument("--max-load", type=float, default=1.0, help="wait until the 1-min load is below this")
    ap.add_argument("--max-wait", type=float, default=600, help="wait at most this long for --max-load (s)")
    ap.add_argument("--json", help="write every number here")
    ap.add_argument("--table-from", help="only print the table of an earlier --json file")
    # internal: one run in a child process
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        run_one(args.child, args.mode, args.cpus, args.object_store_mb, not args.no_index, args.result)
        return

    if args.table_from:
        print(table(json.loads(Path(args.table_from).read_text())["runs"]))
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    modes = ["auto", "distributed"] if args.both else [args.components]
    rows, failed = [], []
    for n in sizes:
        corpus = Path(args.work) / f"synth-{n}-s{args.seed}"
        p = synth.SynthParams(n, seed=args.seed, docs_per_file=args.docs_per_file)
        t = time.perf_counter()
        man = synth.ensure(corpus, p, log=lambda m: print(m, file=sys.stderr))
        print(f"N={n:,}: corpus {corpus} ({man['files']} files, {man['text_bytes'] / 2**20:,.0f} MiB of text; "
              f"generated in {man['seconds']} s, ready in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
        for mode in modes:
            load_before = common.wait_for_quiet(args.max_load, args.max_wait)
            res = run_child(corpus, mode, args)
            if res is None:
                failed.append(f"N={n} {mode}")
                continue
            sec = res["stats"].get("seconds") or {}
            res |= {"docs": n, "corpus": str(corpus), "load_before": round(load_before, 2),
                    "us_per_doc": sec.get("total", float("nan")) / n * 1e6, "synth": man}
            rows.append(res)
            print(f"N={n:,} {mode}: total {sec.get('total')} s, recall {res['recall']['recall']:.4f}, "
                  f"driver {_mb(res['stats'].get('peak_rss_driver_bytes'))} MB", file=sys.stderr)
    print(f"\ndedup_scale: {os.cpu_count()} cores, Ray num_cpus={args.cpus}, "
          f"load before / mean during each run in the last column\n")
    print(table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"cpus": args.cpus, "cores": os.cpu_count(), "runs": rows,
                                               "failed": failed}, indent=1, default=str))
    if failed:
        sys.exit(f"dedup_scale: failed runs: {', '.join(failed)}")


if __name__ == "__main__":
    main()
