"""Ray clusters (issue 17, items 3, 4 and 6's jittered start): the per-file actor scheduler
(:func:`webmill.curate.workers.map_files`) on an embedded Ray (fast), then ``curate run`` +
dedup on a ``ray.cluster_utils.Cluster`` of this machine (slow): a head (no CPUs, like a head
that only schedules) and two worker nodes of one CPU each, every node its own raylet and object
store, ``OUT`` on the S3 server of ``tests/fixtures_s3.py``:

* several nodes: per-file actors land on both worker nodes (Ray's state API), and the bytes of
  ``documents/``, ``deduped/``, ``final/`` and ``shards/`` equal a single-node run on local disk;
* a worker node removed while a file is in flight on it: the run finishes, the file is redone on
  the other node, nothing lost or doubled, same bytes, no ``failed.jsonl``;
* the head node killed mid-run (the driver, ``curate run --ray-address``, dies with it): a rerun
  on a fresh cluster skips the inputs with markers and gives the same bytes.

See docs/cluster.md, "Ray cluster". Each cluster test starts its own cluster (about 15 s) and
shuts it down; nothing else on the machine is touched (own temp dir and ports).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from webmill.config import load_config
from webmill.curate.workers import map_files, map_options
from webmill.errors import UserError
from webmill.storage import as_storage

ROOT = Path(__file__).resolve().parents[1]
CURATE = [str(Path(sys.executable).parent / "curate")]
TOML = "[extract]\ntimeout_s = 30.0\n"
# livefetch: ~15 s of extraction (a file surely in flight); the other three: ~2 s each
FILES = ["livefetch_2025_pipestream-sample-malformed.warc.gz", "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz",
         "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz", "cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz"]
COMPARED = ("documents", "deduped", "final", "shards")


# ---------------------------------------------------------------------------------------------
# the scheduler on an embedded Ray (fast)

@pytest.fixture(scope="module")
def embedded_ray():
    """An embedded Ray for this module's fast tests, shut down after them (later modules start
    their own)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the actors' classes below live in this test module, which Ray's workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    if started:
        ray.shutdown()


class _Stamp:
    """Per-actor worker of the jitter test: remembers when it was built."""

    def __init__(self):
        self.built = time.time()

    def process(self, barrier: str, n: int) -> tuple[int, float]:
        # wait until n tasks run at once: every actor then holds exactly one task
        Path(barrier, str(os.getpid())).touch()
        deadline = time.monotonic() + 120
        while len(os.listdir(barrier)) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return os.getpid(), self.built


def test_start_jitter_delays_each_first_worker(tmp_path, embedded_ray):
    """start_jitter_s: each actor of the first pool builds its worker (its first object-store
    request) no sooner than its random delay; the delays are uniform 0..N, drawn in the driver
    (seeded here, so the test knows them: 4.98 .. 7.54 s of 8)."""
    ray = embedded_ray
    n, jitter, seed = 4, 8.0, 5
    random.seed(seed)
    delays = sorted(random.uniform(0, jitter) for _ in range(n))
    random.seed(seed)
    t0 = time.time()
    results, failures = map_files(_Stamp, (), [(str(tmp_path), n)] * n, num_workers=n,
                                  num_cpus=min(1.0, ray.cluster_resources()["CPU"] / n), start_jitter_s=jitter)
    assert not failures
    built = sorted(b - t0 for _, b in results)
    assert len({pid for pid, _ in results}) == n  # one actor per task
    assert min(delays) > 4.5  # so without the jitter every actor would have been built sooner
    for got, want in zip(built, delays):
        assert want - 0.05 <= got <= want + 60, (built, delays)


def test_more_workers_than_cpus_finishes(tmp_path, embedded_ray):
    """An actor that cannot be placed (more workers asked than the cluster has CPUs, or its node
    is gone) is never given a file: the run finishes on the actors that started."""
    ray = embedded_ray
    cpus = int(ray.cluster_resources()["CPU"])
    got: list = []
    run = threading.Thread(target=lambda: got.append(map_files(_Stamp, (), [(str(tmp_path), 0)] * 6,
                                                               num_workers=cpus + 1)), daemon=True)
    run.start()
    run.join(180)
    assert got, "map_files hung on an actor that cannot be placed"
    results, failures = got[0]
    assert not failures and all(r is not None for r in results)


def test_map_options_from_config():
    cfg = load_config(None, {"ray": {"num_cpus": 0.5, "memory_mb": 512, "start_jitter_s": 30}})
    assert map_options(cfg["ray"]) == {"executor": "ray", "num_workers": 0, "num_cpus": 0.5, "memory_mb": 512, "max_uses": 64,
                                       "max_retries": 2, "start_jitter_s": 30.0}
    with pytest.raises(UserError, match=r"\[ray\] num_cpus must be above 0"):
        map_options(load_config(None, {"ray": {"num_cpus": 0}})["ray"])
    with pytest.raises(UserError, match=r"\[ray\] start_jitter_s must be 0 or more"):
        map_options(load_config(None, {"ray": {"start_jitter_s": -1.0}})["ray"])


# ---------------------------------------------------------------------------------------------
# a cluster of three nodes on this machine (slow)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A ``ray.cluster_utils.Cluster``: head with ``head_cpus`` CPUs, ``workers`` nodes of one CPU;
    own temp dir (short: Ray's socket paths must stay under 108 characters) and ports."""

    def __init__(self, workers: int = 2, head_cpus: int = 0):
        from ray.cluster_utils import Cluster

        self.tmp = tempfile.mkdtemp(prefix="wm-cl-", dir="/tmp")
        self.cluster = Cluster(initialize_head=True, shutdown_at_exit=True, head_node_args=dict(
            num_cpus=head_cpus, temp_dir=self.tmp, include_dashboard=True, dashboard_port=free_port(),
            dashboard_agent_listen_port=free_port(), object_store_memory=150 * 1024**2))
        self.workers = [self.cluster.add_node(num_cpus=1, dashboard_agent_listen_port=free_port())
                        for _ in range(workers)]
        self.cluster.wait_for_nodes()

    @property
    def address(self) -> str:
        return self.cluster.address

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture()
def cluster(s3_server):
    """A fresh three-node cluster (started after the S3 server: its processes inherit AWS_*)."""
    import ray

    ray.shutdown()  # the driver of this test connects to the cluster instead
    c = LocalCluster()
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, examples_warc) -> list[str]:
    d = tmp_path_factory.mktemp("inputs")
    for n in FILES:
        shutil.copy(examples_warc / n, d / n)
    return [str(d / n) for n in FILES]


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "test.toml"
    p.write_text(TOML)
    return p


@pytest.fixture(scope="module")
def single_node(tmp_path_factory, inputs, cfg_file) -> dict[str, bytes]:
    """Bytes of the compared outputs of a single-node run (embedded Ray, OUT on local disk)."""
    import ray

    from webmill.curate.pipeline import run_pipeline

    ray.shutdown()
    out = tmp_path_factory.mktemp("single") / "out"
    t0 = time.monotonic()
    res = run_pipeline(inputs, out, load_config(cfg_file), report=False, echo=lambda s: None)
    ray.shutdown()
    print(f"single-node run: {time.monotonic() - t0:.0f} s")
    assert not res.failed and len(res.done) == len(FILES)
    return tree_bytes(out)


def tree_bytes(out) -> dict[str, bytes]:
    st = as_storage(out)
    return {f"{sub}/{name}": st.read_bytes(f"{sub}/{name}")
            for sub in COMPARED for name in st.list(sub, recursive=True)}


def assert_same_outputs(out, expected: dict[str, bytes]) -> None:
    got = tree_bytes(out)
    assert set(got) == set(expected), {"missing": sorted(set(expected) - set(got)),
                                       "extra": sorted(set(got) - set(expected))}
    assert [k for k in expected if got[k] != expected[k]] == []
    st = as_storage(out)
    assert sorted(st.list("markers")) == sorted(f"{Path(f).name.split('.warc')[0]}.done" for f in FILES)
    assert not st.exists("failed.jsonl")


def process_tasks(state: str | None = None) -> list:
    from ray.util.state import list_tasks

    filters = [("func_or_class_name", "=", "FileWorker.process")] + ([("state", "=", state)] if state else [])
    return list_tasks(filters=filters, detail=True, limit=10_000, raise_on_missing_output=False)


@pytest.mark.slow
def test_several_nodes_same_bytes_as_one(cluster, s3_bucket, inputs, cfg_file, single_node):
    import ray
    from ray.util.state import list_actors

    from webmill.curate.pipeline import run_pipeline

    out = f"{s3_bucket}/out"
    t0 = time.monotonic()
    res = run_pipeline(inputs, out, load_config(cfg_file), ray_address=cluster.address, report=False,
                       echo=lambda s: None)
    print(f"three-node run: {time.monotonic() - t0:.0f} s")
    assert not res.failed and len(res.done) == len(FILES)
    workers = {n.node_id for n in cluster.workers}
    actors = list_actors(filters=[("class_name", "=", "FileWorker")], detail=True, limit=10_000,
                         raise_on_missing_output=False)
    assert {a.node_id for a in actors} == workers  # the head has no CPU: every actor on a worker node
    finished = process_tasks("FINISHED")
    assert len(finished) == len(FILES) and len({t.node_id for t in finished}) == 2, finished
    assert ray.cluster_resources()["CPU"] == 2
    assert_same_outputs(out, single_node)


@pytest.mark.slow
def test_worker_node_lost_mid_file(cluster, s3_bucket, inputs, cfg_file, single_node):
    """A worker node removed while one of its actors is in the middle of a file."""
    from webmill.curate.pipeline import run_pipeline

    out = f"{s3_bucket}/out"
    removed: dict = {}
    stop = threading.Event()

    def remove_a_busy_node() -> None:
        # a process() task RUNNING on a worker node for at least a second: remove that node
        by_id = {n.node_id: n for n in cluster.workers}
        seen: dict[str, float] = {}
        while not stop.is_set():
            for t in process_tasks("RUNNING"):
                if t.node_id in by_id:
                    first = seen.setdefault(t.task_id, time.monotonic())
                    if time.monotonic() - first >= 1.0:
                        cluster.cluster.remove_node(by_id[t.node_id])
                        removed.update(node=t.node_id, task=t.task_id, ms=time.time() * 1000)
                        return
            time.sleep(0.3)

    watcher = threading.Thread(target=remove_a_busy_node, daemon=True)
    progress: list[str] = []
    t0 = time.monotonic()
    try:
        watcher.start()
        res = run_pipeline(inputs, out, load_config(cfg_file), ray_address=cluster.address, report=False,
                           on_progress=lambda s: progress.append(s["input"]), echo=lambda s: None)
    finally:
        stop.set()
        watcher.join(60)
    print(f"three-node run losing a node: {time.monotonic() - t0:.0f} s")
    assert removed, "no file was seen in flight on a worker node"
    assert not res.failed and sorted(progress) == sorted(inputs)  # each file done once
    tasks = process_tasks()
    failed = [t for t in tasks if t.state == "FAILED"]
    assert removed["task"] in {t.task_id for t in failed}  # the file in flight died with its node...
    finished = [t for t in tasks if t.state == "FINISHED"]
    assert len(finished) == len(FILES)  # ...and was redone elsewhere; no file twice
    assert all(t.node_id != removed["node"] for t in finished if t.start_time_ms > removed["ms"])
    assert_same_outputs(out, single_node)


@pytest.mark.slow
def test_head_node_killed_then_rerun_resumes(s3_server, s3_bucket, inputs, cfg_file, single_node):
    """The head node dies mid-run: the driver (`curate run --ray-address`, a subprocess here)
    dies with it; the rerun on a fresh cluster skips the inputs whose markers exist."""
    import ray

    ray.shutdown()
    out = f"{s3_bucket}/out"
    st = as_storage(out)
    # the driver gives up on a lost head after this many seconds (Ray's default: 60)
    env = dict(os.environ, RAY_gcs_rpc_server_reconnect_timeout_s="15")
    env.pop("RAY_ADDRESS", None)

    def curate_run(addr: str) -> subprocess.Popen:
        return subprocess.Popen(CURATE + ["run", *inputs, "-o", out, "-c", str(cfg_file), "--ray-address", addr,
                                          "--no-report"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    c = LocalCluster()
    t0 = time.monotonic()
    try:
        driver = curate_run(c.address)
        while not st.list("markers") and driver.poll() is None and time.monotonic() - t0 < 600:
            time.sleep(0.2)
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        c.cluster.remove_node(c.cluster.head_node)
        try:
            _, err = driver.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            driver.kill()
            _, err = driver.communicate()
            pytest.fail("the driver outlived its head node by 4 minutes")
        assert driver.returncode != 0, err[-3000:]
    finally:
        c.shutdown()
    done_before = st.list("markers")
    assert 0 < len(done_before) < len(FILES) and not st.exists("shards/manifest.json")
    print(f"run killed with its head node: {time.monotonic() - t0:.0f} s, {len(done_before)} inputs done")

    c = LocalCluster()
    t0 = time.monotonic()
    try:
        r = curate_run(c.address)
        _, err = r.communicate(timeout=900)
    finally:
        c.shutdown()
    print(f"rerun on a fresh cluster: {time.monotonic() - t0:.0f} s")
    assert r.returncode == 0, err[-5000:]
    assert f"skipped {len(done_before)} inputs with completion markers" in err
    assert_same_outputs(out, single_node)


@pytest.mark.slow
def test_distributed_dedup_on_several_nodes_same_bytes(cluster, ex_dir):
    """Dedup's distributed connected components and keep step on a three-node cluster (the head
    has no CPU: every task runs on one of the two worker nodes, objects move between raylets)
    give the bytes of the single-worker path."""
    import ray
    from ray.util.state import list_tasks

    from webmill.curate.dedup import DedupConfig, run_dedup

    ray.init(address=cluster.address)
    out = ex_dir["out"]
    single = run_dedup(out, DedupConfig(components="single", write_removed=True), output_subdir="cl_single")
    dist = run_dedup(out, DedupConfig(components="distributed", edges_per_partition=8, write_removed=True),
                     output_subdir="cl_dist")
    assert dist["components_path"] == "distributed" and dist["distributed_components"]["partitions"] > 2
    tasks = [t for t in list_tasks(detail=True, limit=10_000, raise_on_missing_output=False)
             if t.name.endswith("_large_star")]
    assert tasks and {t.node_id for t in tasks} == {n.node_id for n in cluster.workers}
    for name in ex_dir["files"]:
        assert (out / "cl_single" / f"{name}.parquet").read_bytes() == (out / "cl_dist" / f"{name}.parquet").read_bytes()
    keys = ("documents_out", "components", "unique_edges", "exact", "minhash")
    assert {k: single[k] for k in keys} == {k: dist[k] for k in keys}
    assert single["documents_removed"] == 4  # as the single-node tests of this fixture
