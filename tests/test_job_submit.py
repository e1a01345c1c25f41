"""README's batch job, run as printed (issue 17, item 5): ``ray start --head`` on 127.0.0.1 (a
separate cluster with its dashboard/job server and token authentication), then the README's
``ray job submit --address http://HEAD:8265 --working-dir . -- curate run s3://bucket/crawl/ -o
s3://bucket/out`` with ``HEAD`` → 127.0.0.1:<dashboard port> and ``s3://bucket`` → a fresh bucket
on the S3 server of ``tests/fixtures_s3.py`` holding three bundled WARCs; the job must succeed
and leave every output (markers, documents, deduped, final, shards, no failed.jsonl) in the
bucket. See docs/cluster.md, "Ray cluster".

The cluster is stopped by pid (its processes carry this test's ``WEBMILL_TEST_TAG``), never by
``ray stop``, which would stop every Ray cluster of the user on the machine.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from test_reliability import tagged_processes, wait_gone

from webmill.storage import as_storage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FILES = ["cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz",
         "cc_CC-MAIN-2024-22_whirlwind.warc.gz"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_job_command() -> str:
    """The README's ``ray job submit`` line (its bash block, ``\\`` continuations joined)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [ln.strip() for b in re.findall(r"```bash\n(.*?)```", readme, re.S)
             for ln in b.replace("\\\n", " ").splitlines() if ln.strip().startswith("ray job submit")]
    assert len(lines) == 1, lines
    return re.sub(r"\s+", " ", lines[0])


def test_readme_job_command_shape():
    argv = shlex.split(readme_job_command())
    assert argv[:3] == ["ray", "job", "submit"] and "--working-dir" in argv and "http://HEAD:8265" in argv
    assert argv[argv.index("--") + 1:argv.index("--") + 3] == ["curate", "run"]


def test_ray_job_submit_runs_the_readme_command(tmp_path, s3_bucket, examples_warc):
    tag = uuid.uuid4().hex
    token = uuid.uuid4().hex
    # the cluster's processes (the job's driver included) inherit AWS_* (S3 server), the venv's
    # bin on PATH (`curate`), token authentication with a token of this test only
    env = dict(os.environ, WEBMILL_TEST_TAG=tag, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    crawl = as_storage(f"{s3_bucket}/crawl")
    for n in FILES:
        crawl.write_bytes(n, (examples_warc / n).read_bytes())
    work = tmp_path / "job"  # the --working-dir: small (uploaded to the cluster)
    work.mkdir()
    (work / "NOTES.txt").write_text("working directory of the README batch job test\n")
    dash = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="wm-job-", dir="/tmp")  # short: socket paths < 108 chars
    log = open(tmp_path / "ray-start.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--port", str(free_port()), "--node-ip-address", "127.0.0.1",
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2",
         "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
         "--disable-usage-stats", "--temp-dir", ray_tmp],
        env=env, cwd=work, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    try:
        while True:  # the job server answers (any HTTP status) once the dashboard is up
            assert head.poll() is None and time.monotonic() - t0 < 180, (tmp_path / "ray-start.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.5)
        cmd = readme_job_command().replace("http://HEAD:8265", f"http://127.0.0.1:{dash}")
        cmd = cmd.replace("s3://bucket", s3_bucket)
        t1 = time.monotonic()
        p = subprocess.run(shlex.split(cmd), cwd=work, env=env, capture_output=True, text=True, timeout=900)
        print(f"ray job submit: {time.monotonic() - t1:.0f} s (cluster start {t1 - t0:.0f} s)")
        assert p.returncode == 0 and "succeeded" in p.stdout, (p.stdout[-5000:], p.stderr[-3000:])
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for pid in tagged_processes(tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        leftover = wait_gone(list(tagged_processes(tag)), 30)
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not leftover
    out = as_storage(f"{s3_bucket}/out")
    stems = [n.split(".warc")[0] for n in FILES]
    assert out.list("markers") == sorted(f"{s}.done" for s in stems)
    assert out.list("documents") == sorted(f"{s}.parquet" for s in stems)
    for sub in ("deduped", "final"):
        assert out.list(sub, suffix=".parquet") == out.list("documents"), sub
    manifest = out.read_json("shards/manifest.json")
    assert manifest["input_files"] == len(FILES) and manifest["input_documents"] > 0
    assert sorted(f["path"] for f in manifest["files"]) == out.list("shards", suffix=".parquet")
    assert not out.exists("failed.jsonl")
