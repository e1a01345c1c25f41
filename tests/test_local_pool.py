"""The local executor (``[ray] executor = "local"``): the per-file scheduler on a process pool
(webmill/curate/local_pool.py) keeps map_files' contract, and a run on it writes the same bytes
as a run on Ray actors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from webmill.curate.local_pool import map_files_local
from webmill.curate.workers import map_files, map_options
from webmill.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


class Recorder:
    """A per-process worker for the scheduler tests: ``process(kind, name)`` writes
    ``<dir>/<name>.<pid>`` and returns ``(name, pid)``; ``kind`` ``"raise"`` raises, ``"die"``
    kills the process; ``close()`` writes ``<dir>/closed.<pid>``; ``print`` goes to the log."""

    def __init__(self, out_dir: str, fail_start: bool = False):
        if fail_start:
            raise ValueError("no model here")
        self.dir = Path(out_dir)
        print(f"worker {os.getpid()} started", flush=True)

    def process(self, kind: str, name: str):
        (self.dir / f"{name}.{os.getpid()}").write_text(kind)
        if kind == "raise":
            raise KeyError(f"bad record in {name}")
        if kind == "die":
            os._exit(13)
        return name, os.getpid(), os.environ.get("OMP_NUM_THREADS")

    def close(self) -> None:
        (self.dir / f"closed.{os.getpid()}").write_text("")


def _calls(d: Path, name: str) -> int:
    return len(list(d.glob(f"{name}.*")))


def test_results_exceptions_and_close(tmp_path):
    tasks = [("ok", f"t{i}") for i in range(5)] + [("raise", "bad")]
    seen = []
    results, failures = map_files_local(Recorder, (str(tmp_path),), tasks, num_workers=2,
                                        on_result=lambda i, r: seen.append(i), log_dir=tmp_path / "logs")
    assert [r[0] for r in results[:5]] == [f"t{i}" for i in range(5)] and results[5] is None
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert failures == [(5, "KeyError: 'bad record in bad'")]
    assert _calls(tmp_path, "bad") == 1  # an exception of process() is not retried
    pids = {r[1] for r in results[:5]}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    assert {r[2] for r in results[:5]} == {os.environ.get("OMP_NUM_THREADS", "1")}
    closed = {int(p.name.split(".")[1]) for p in tmp_path.glob("closed.*")}
    assert pids <= closed  # every worker's close() ran when the pool shut down
    logs = list((tmp_path / "logs" / "workers").glob("local-*.log"))
    assert logs and all("started" in p.read_text() for p in logs)


def test_recycling_after_max_uses(tmp_path):
    results, failures = map_files_local(Recorder, (str(tmp_path),), [("ok", f"t{i}") for i in range(4)],
                                        num_workers=1, max_uses=1)
    assert not failures
    pids = {r[1] for r in results}
    assert len(pids) == 4  # one process per file
    assert pids <= {int(p.name.split(".")[1]) for p in tmp_path.glob("closed.*")}


def test_dead_worker_is_retried_then_reported(tmp_path):
    tasks = [("ok", "a"), ("die", "killer"), ("ok", "b"), ("ok", "c")]
    results, failures = map_files_local(Recorder, (str(tmp_path),), tasks, num_workers=2, max_retries=2)
    assert [i for i, _ in failures] == [1]
    assert failures[0][1].startswith("worker died 3 times")
    # alone: first run + max_retries (+ 1 when its first death came beside another file: nobody charged)
    assert _calls(tmp_path, "killer") in (3, 4)
    assert [r[0] for r in results if r] == ["a", "b", "c"]  # the others finish (re-run if caught in flight)


def test_worker_that_cannot_start_fails_each_file(tmp_path):
    results, failures = map_files_local(Recorder, (str(tmp_path), True), [("ok", "a"), ("ok", "b")], num_workers=2)
    assert results == [None, None]
    assert sorted(failures) == [(0, "RuntimeError: worker could not start: ValueError: no model here"),
                                (1, "RuntimeError: worker could not start: ValueError: no model here")]


def test_map_files_dispatches_on_executor(tmp_path):
    opts = map_options({"executor": "local", "num_workers": 1, "memory_mb": 2048, "max_files_per_worker": 64,
                        "max_retries": 2, "num_cpus": 1.0, "start_jitter_s": 0.0})
    results, failures = map_files(Recorder, (str(tmp_path),), [("ok", "x")], **opts)
    assert not failures and results[0][0] == "x" and results[0][1] != os.getpid()
    with pytest.raises(UserError, match=r"\[ray\] executor must be one of ray, local, got 'threads'"):
        map_options({**opts, "executor": "threads", "max_files_per_worker": 64})


def _digest(out: Path, subdirs=("documents", "deduped", "final", "shards", "removed", "examples", "markers")) -> dict:
    got = {}
    for sub in subdirs:
        for p in sorted((out / sub).rglob("*")) if (out / sub).is_dir() else []:
            if p.is_file():
                got[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return got


def test_local_run_writes_the_bytes_of_a_ray_run(tmp_path, examples_warc):
    """The whole pipeline (documents, dedup on Ray, PII + quality, shards) on the local
    executor and on Ray actors: byte-identical outputs; failures and per-file stats agree."""
    from webmill.config import load_config
    from webmill.curate.pipeline import run_pipeline

    files = [str(examples_warc / n) for n in ("cc_CC-MAIN-2024-22_whirlwind.warc.gz",
                                              "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz",
                                              "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz")]
    overrides = {"extract": {"extractor": "resiliparse", "timeout_s": 60.0}, "output": {"write_removed": True}}
    res = {}
    for ex in ("local", "ray"):
        cfg = load_config(None, {**overrides, "ray": {"executor": ex}})
        res[ex] = run_pipeline(files, tmp_path / ex, cfg, report=False, echo=lambda m: None)
        assert not res[ex].failed
    a, b = _digest(tmp_path / "local"), _digest(tmp_path / "ray")
    assert any(k.startswith("deduped/") for k in a) and any(k.startswith("shards/") for k in a)
    assert a == b
    for p in (tmp_path / "ray" / "stats").glob("*.json"):
        if p.name in ("dedup.json", "final.json", "tokenize.json"):
            continue
        sa, sb = json.loads((tmp_path / "local" / "stats" / p.name).read_text()), json.loads(p.read_text())
        assert {k: v for k, v in sa.items() if "seconds" not in k and "rss" not in k} == \
               {k: v for k, v in sb.items() if "seconds" not in k and "rss" not in k}


def test_local_run_without_dedup_never_imports_ray(tmp_path, examples_warc):
    script = (
        "import sys\n"
        "from webmill.config import load_config\n"
        "from webmill.curate.pipeline import run_pipeline\n"
        "cfg = load_config(None, {'ray': {'executor': 'local'}, 'dedup': {'enabled': False},"
        " 'extract': {'extractor': 'resiliparse'}})\n"
        f"r = run_pipeline([{str(examples_warc / 'cc_CC-MAIN-2024-22_whirlwind.warc.gz')!r}], {str(tmp_path / 'o')!r},"
        " cfg, tokenize=False, report=False)\n"
        "assert not r.failed, r.failed\n"
        "print('ray imported:', 'ray' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "ray imported: False" in p.stdout
    assert list((tmp_path / "o" / "documents").glob("*.parquet")) and list((tmp_path / "o" / "final").glob("*.parquet"))
