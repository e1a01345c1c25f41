"""`curate run` end to end on three bundled WARCs, in `make test` (no ../shared needed):

* an undisturbed run prints webmill's progress and funnel only: Ray's own log lines are in
  ``OUT/logs/``, not on stdout/stderr;
* a run killed with SIGKILL once a ``documents/`` output appears, then rerun, gives outputs
  byte-identical to the undisturbed run. The killed run writes to ``file://`` + an absolute
  path, so this also proves that an fsspec URL for ``OUT`` (the code path of ``s3://``, which
  works across Ray's worker processes unlike ``memory://``) gives the bytes of a plain path.

The slow variants (nine shared files, killed workers, a separate Ray cluster) are in
``test_reliability_slow.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from test_reliability import CURATE, ROOT, kill_tagged, tagged_processes, wait_gone
from webmill.storage import is_temp

FILES = ["wget_2024_researcher-homepages_dolma-sample-0000.warc.gz",  # 48 records, 15 kept
         "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz",  # one gzip stream, 4 kept
         "livefetch_2025_pipestream-sample-malformed.warc.gz"]  # 101 records, 18 kept
# one worker: files run one after another, so a kill after the first output leaves work undone
TOML = "[extract]\ntimeout_s = 30.0\n[ray]\nnum_workers = 1\n[tokenize]\nval_fraction = 0.1\n"
COMPARED = ("documents", "deduped", "final", "shards")
# a line of Ray's own logging: "2026-01-01 00:00:00,123\tINFO streaming_executor.py:215 -- ...",
# a worker's forwarded output "(FileWorker pid=123) ...", or Ray's banners
RAY_LINE = re.compile(r"(^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING|ERROR))|"
                      r"(^\(\w+ pid=\d+)|(\(raylet\))|streaming_executor|authentication_token_setup|"
                      r"Started a local Ray instance|ray\.data", re.M)


def env_for(tag: str) -> dict:
    env = dict(os.environ, WEBMILL_TEST_TAG=tag)
    env.pop("RAY_ADDRESS", None)
    return env


def files_of(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for d in COMPARED for p in sorted((out / d).rglob("*"))
            if p.is_file()}


def start_until_first_output(cmd: list[str], tag: str, out: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own session and return once ``out/documents`` has a Parquet file (the
    run is still going: asserted)."""
    p = subprocess.Popen(cmd, env=env_for(tag), cwd=ROOT, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 600 and p.poll() is None:
        if list((out / "documents").glob("*.parquet")):
            break
        time.sleep(0.02)
    if p.poll() is not None:
        kill_tagged(tag)
        raise AssertionError("the run ended before it could be killed")
    return p


@pytest.fixture(scope="module")
def runs(tmp_path_factory, examples_warc):
    base = tmp_path_factory.mktemp("resume")
    cfg = base / "t.toml"
    cfg.write_text(TOML)
    inputs = [str(examples_warc / n) for n in FILES]
    tag = uuid.uuid4().hex
    p = subprocess.run(CURATE + ["run", *inputs, "-o", str(base / "plain"), "-c", str(cfg), "--no-report"],
                       capture_output=True, text=True, timeout=900, env=env_for(tag), cwd=ROOT)
    assert p.returncode == 0, p.stderr[-5000:]
    return {"base": base, "cfg": cfg, "inputs": inputs, "plain": p}


def test_first_run_prints_no_ray_log_lines(runs):
    p, out = runs["plain"], runs["base"] / "plain"
    for stream, text in (("stdout", p.stdout), ("stderr", p.stderr)):
        bad = [m.group(0) for m in RAY_LINE.finditer(text)]
        assert not bad, f"Ray log lines on {stream}: {bad[:5]}\n{text[-3000:]}"
    assert "webmill funnel" in p.stdout + p.stderr and "[3/3]" in p.stderr
    assert f"Ray logs: {out / 'logs'}" in p.stderr
    log = (out / "logs" / "ray.log").read_text()
    assert "streaming_executor" in log  # dedup's Ray Data lines went to the log file


def test_kill_and_rerun_is_byte_identical_and_url_out_matches_plain_path(runs):
    base, cfg, inputs = runs["base"], runs["cfg"], runs["inputs"]
    out = base / "killed"
    url = "file://" + str(out.resolve())
    cmd = CURATE + ["run", *inputs, "-o", url, "-c", str(cfg), "--no-report"]
    tag = uuid.uuid4().hex
    p = start_until_first_output(cmd, tag, out)
    try:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_tagged(tag)
    marked = list((out / "markers").glob("*.done"))
    assert len(marked) < len(FILES), "every input was done: the kill did not interrupt the documents stage"
    assert not (out / "shards").exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env_for(tag), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-5000:]
    if marked:
        assert f"skipped {len(marked)} inputs with completion markers" in r.stderr
    plain, again = files_of(base / "plain"), files_of(out)
    assert sorted(again) == sorted(plain) and any(k.startswith("shards/") for k in plain)
    assert [k for k in plain if plain[k] != again[k]] == []
    assert not [q for q in out.rglob("*") if is_temp(q.name)]  # the killed run's temps were swept
    assert not wait_gone(list(tagged_processes(tag)), 90)


@pytest.mark.slow  # ~45 s; the Ray variant above runs by default
def test_local_executor_killed_driver_leaves_no_worker_and_rerun_is_byte_identical(runs):
    """``--executor local``: SIGKILL of the driver alone (not its process group, as a user's
    ``kill -9 PID``): the pool workers and their extraction children exit on their own, and the
    rerun gives the bytes of the undisturbed run on Ray actors."""
    base, cfg, inputs = runs["base"], runs["cfg"], runs["inputs"]
    out = base / "killed-local"
    cmd = CURATE + ["run", *inputs, "-o", str(out), "-c", str(cfg), "--no-report", "--executor", "local"]
    tag = uuid.uuid4().hex
    p = start_until_first_output(cmd, tag, out)
    try:
        workers = [pid for pid in tagged_processes(tag) if pid != p.pid]
        assert workers, "no pool worker was running"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert not wait_gone(workers, 15), "pool workers outlived the killed driver"
    finally:
        kill_tagged(tag)
    assert len(list((out / "markers").glob("*.done"))) < len(FILES)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env_for(tag), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-5000:]
    plain, again = files_of(base / "plain"), files_of(out)
    assert sorted(again) == sorted(plain)
    assert [k for k in plain if plain[k] != again[k]] == []
    assert not [q for q in out.rglob("*") if is_temp(q.name)]
