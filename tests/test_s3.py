"""Object storage: webmill against a real S3 API server (moto's standalone server on 127.0.0.1,
``tests/fixtures_s3.py``) with s3fs as the client, and retries of transient object-store errors
through a fault-injecting fsspec filesystem.

Fast tests (default run): Storage and input discovery/reading on S3, endpoint from
``AWS_ENDPOINT_URL`` or a ``[storage.s3]`` config table, options travelling with pickled
Storage objects, retries with backoff (``webmill.storage_retry``) on injected ``SlowDown``/503,
500 and reset connections, a permanent error surfacing after the bounded attempts.

Slow tests (``curate`` as subprocesses, each starts its own embedded Ray): ``curate run
s3://…/in/ -o s3://…/out`` gives byte-identical ``documents/ deduped/ final/ shards/`` to the same
run on local disk; a run killed with SIGKILL while writing to S3 leaves only whole objects and,
rerun, the same bytes; every subcommand takes an ``s3://`` OUT.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from webmill import storage_retry
from webmill.config import load_config
from webmill.errors import UserError
from webmill.storage import Storage, configure_storage, default_options, set_default_options
from webmill.storage_retry import ObjectStoreError, call_with_retries, is_transient

ROOT = Path(__file__).resolve().parents[1]
CURATE = str(Path(sys.executable).with_name("curate"))
# three small bundled archives: a WET file (25 documents), a WARC with HTML, a wget WARC
RUN_FILES = ["cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", "cc_CC-MAIN-2024-22_whirlwind.warc.gz",
             "cc_CC-MAIN-2025-33_cdx-toolkit-3records.warc.gz"]
COMPARED = ("documents", "deduped", "final", "shards")  # the outputs that must be byte-identical


# ------------------------------------------------------------------ errors as s3fs raises them
def _s3_error(code: str, status: int) -> OSError:
    """The exception s3fs raises for an S3 error response (its own translation of botocore's)."""
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    err = ClientError({"Error": {"Code": code, "Message": f"{code} (injected)"},
                       "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    return translate_boto_error(err)


TRANSIENT = [lambda: _s3_error("SlowDown", 503), lambda: _s3_error("InternalError", 500),
             lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer (injected)")]


class FlakyFileSystem(DirFileSystem):
    """Local disk behind the ``flaky://`` protocol, failing some requests as S3 does.

    Options: ``fail_every`` (every N-th request fails once with SlowDown/503, InternalError/500 or
    a reset connection, in turn), ``fail_always`` (requests whose path contains this string
    always fail with SlowDown). :attr:`log` (shared by every instance, reset per test) counts
    requests (``calls``) and injected errors (``failures``, ``failed_paths``).
    """

    protocol = "flaky"
    cachable = False
    root_marker = "/"

    def __init__(self, fail_every: int = 0, fail_always: str = "", **kwargs):
        super().__init__(path="/", fs=LocalFileSystem())
        self.path = ""  # paths pass through unchanged (absolute local paths)
        self.fail_every, self.fail_always = fail_every, fail_always

    log: dict = {}

    def _maybe_fail(self, path) -> None:
        log = self.log
        log["calls"] += 1
        p = str(path)
        if (self.fail_always and self.fail_always in p) or (self.fail_every and log["calls"] % self.fail_every == 0):
            log["failures"] += 1
            log["failed_paths"].append(p)
            raise (TRANSIENT[0] if self.fail_always else TRANSIENT[log["failures"] % len(TRANSIENT)])()


def _flaky(name):
    def method(self, path, *args, **kwargs):
        self._maybe_fail(path)
        return getattr(DirFileSystem, name)(self, path, *args, **kwargs)

    method.__name__ = name
    return method


for _name in ("exists", "isdir", "isfile", "ls", "find", "info", "size", "cat_file", "pipe_file", "open",
              "rm_file", "makedirs"):
    setattr(FlakyFileSystem, _name, _flaky(_name))


@pytest.fixture()
def flaky_protocol():
    """Registers ``flaky://`` for this test (fsspec's registry of this process only)."""
    import fsspec

    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    FlakyFileSystem.log = {"calls": 0, "failures": 0, "failed_paths": []}
    yield FlakyFileSystem.log
    set_default_options("flaky", None)


def _tree_digests(st: Storage, subdirs=COMPARED) -> dict[str, str]:
    """``{relative name: sha256}`` of every object below ``subdirs`` of ``st``."""
    out = {}
    for sub in subdirs:
        for name in st.list(sub, recursive=True):
            out[f"{sub}/{name}"] = hashlib.sha256(st.read_bytes(f"{sub}/{name}")).hexdigest()
    return out


# ------------------------------------------------------------------ fast: Storage, inputs, config on S3
def test_storage_on_s3_roundtrip_and_options_travel(s3_bucket, monkeypatch):
    import pyarrow as pa

    st = Storage(f"{s3_bucket}/out")
    assert st.storage_options["endpoint_url"] == os.environ["AWS_ENDPOINT_URL"]  # recorded for actors
    table = pa.table({"x": list(range(2500))})
    st.write_parquet("documents/a.parquet", table)
    st.write_json("markers/a.done", {"input": "a"})
    with pytest.raises(RuntimeError):
        with st.atomic_write("documents/b.parquet") as f:
            f.write(b"half an object")
            raise RuntimeError("killed mid-write")
    assert st.list("documents") == ["a.parquet"]  # nothing published under the failed name
    assert st.read_parquet("documents/a.parquet").equals(table)
    assert st.parquet_file("documents/a.parquet").metadata.num_row_groups == 3
    assert st.read_json("markers/a.done") == {"input": "a"}
    # objects another process (a Ray actor) writes are seen at once: no stale cached listing
    import s3fs

    other = s3fs.S3FileSystem(skip_instance_cache=True)
    assert not st.exists("markers/b.done")
    other.pipe_file(st.path("markers/b.done"), b"{}")
    other.pipe_file(st.path("documents/c.parquet"), st.read_bytes("documents/a.parquet"))
    assert st.exists("markers/b.done") and st.list("markers") == ["a.done", "b.done"]
    assert st.list("documents") == ["a.parquet", "c.parquet"]
    assert st.read_parquet("documents/c.parquet").equals(table)

    # a pickled Storage (what a Ray actor receives) carries its options and reaches the server
    # even where AWS_ENDPOINT_URL is not set
    data = pickle.dumps(st.sub("documents"))
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    try:
        back = pickle.loads(data)
        assert back.list() == ["a.parquet", "c.parquet"]
        # unpickling made them this process's s3 defaults (so an actor reads s3:// inputs there)
        assert default_options("s3://other/x.warc.gz") == back.storage_options
        set_default_options("s3", None)
        # without the variable and without options the client goes to AWS itself, not to moto
        assert "endpoint_url" not in Storage(f"{s3_bucket}/out").storage_options
        # the [storage.s3] config table gives the endpoint instead
        cfg = load_config(overrides={"storage": {"s3": {"endpoint_url": back.storage_options["endpoint_url"]},
                                                 "max_attempts": 3}})
        configure_storage(cfg["storage"])
        via_cfg = Storage(f"{s3_bucket}/out")
        assert via_cfg.max_attempts == 3
        assert via_cfg.list("markers") == ["a.done", "b.done"]
    finally:
        set_default_options("s3", None)
        configure_storage({"max_attempts": storage_retry.MAX_ATTEMPTS, "backoff_s": storage_retry.BACKOFF_S})


def test_storage_table_in_config_is_checked():
    with pytest.raises(UserError, match=r"\[storage\] endpoint"):
        load_config(overrides={"storage": {"endpoint": "http://x"}})
    with pytest.raises(UserError, match="max_attempts must be an integer >= 1"):
        configure_storage({"max_attempts": 0})
    # where the outputs live is not part of the config hash recorded in markers and manifests
    from webmill.config import config_hash

    assert config_hash(load_config()) == config_hash(load_config(overrides={"storage": {"s3": {"anon": True}}}))


def test_inputs_discovered_and_read_on_s3(s3_bucket):
    import s3fs

    from webmill.curate.inputs import assign_stems, discover_inputs
    from webmill.curate.readers import iter_records

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket = s3_bucket.removeprefix("s3://")
    for name in RUN_FILES:
        fs.put(str(ROOT / "examples/warc" / name), f"{bucket}/in/{name}")
    fs.pipe_file(f"{bucket}/in/notes.txt", b"not an archive")
    files = discover_inputs([f"{s3_bucket}/in/"])
    assert files == sorted(f"{s3_bucket}/in/{n}" for n in RUN_FILES)
    assert sorted(assign_stems(files).values()) == sorted(n.split(".warc")[0] for n in RUN_FILES)
    with pytest.raises(UserError, match="input not found"):
        discover_inputs([f"{s3_bucket}/nothing-here/"])

    errs_s3, errs_local = [], []
    remote = [(r.record_id, r.offset, r.url, r.read_payload()) for r in iter_records(files[0], errs_s3)]
    local = [(r.record_id, r.offset, r.url, r.read_payload()) for r in iter_records(str(ROOT / "examples/warc" / RUN_FILES[0]), errs_local)]
    assert remote == local and len(remote) == 26
    assert [(e.offset, e.kind) for e in errs_s3] == [(e.offset, e.kind) for e in errs_local] == [(0, "single_gzip_stream")]


# ------------------------------------------------------------------ fast: retries with backoff
def test_transient_classification_of_s3fs_errors():
    assert all(is_transient(make()) for make in TRANSIENT)
    assert not is_transient(FileNotFoundError(errno.ENOENT, "NoSuchKey"))
    assert not is_transient(_s3_error("AccessDenied", 403))
    assert not is_transient(_s3_error("NoSuchBucket", 404))


def test_tokenize_through_throttling_store_gives_same_bytes(tmp_path, flaky_protocol, wet_documents, write_final):
    log = flaky_protocol
    """A real pipeline step (tokenize: list, read Parquet, publish shards + manifest) on a store
    that throttles every 3rd request succeeds through retries, with the bytes of a local run."""
    from webmill.tokenize.dataset import tokenize_dataset

    write_final(tmp_path / "out", wet_documents)
    local = tokenize_dataset(tmp_path / "out/final", tmp_path / "out/shards-local", shard_tokens=4000)
    configure_storage({"backoff_s": 0.001})
    try:
        flaky = Storage(f"flaky://{tmp_path}/out", {"fail_every": 3})
        remote = tokenize_dataset(flaky.sub("final"), flaky.sub("shards-flaky"), shard_tokens=4000)
    finally:
        configure_storage({"backoff_s": storage_retry.BACKOFF_S})
    assert log["failures"] >= 5, log  # requests did fail; every one was retried
    assert any("/shards-flaky/shard-" in p for p in log["failed_paths"])  # publishing too, not only reads
    assert any("/out/final" in p for p in log["failed_paths"])  # and reads
    assert len(remote["files"]) == len(local["files"]) >= 2
    names = sorted(p.name for p in (tmp_path / "out/shards-local").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "out/shards-flaky").iterdir())
    for name in names:
        if name != "manifest.json":  # the manifest records the input directory's name
            assert (tmp_path / "out/shards-local" / name).read_bytes() == (tmp_path / "out/shards-flaky" / name).read_bytes(), name


def test_permanent_throttling_surfaces_after_bounded_attempts(tmp_path, flaky_protocol):
    log = flaky_protocol
    st = Storage(f"flaky://{tmp_path}/out", {"fail_always": "manifest"}, max_attempts=3, backoff_s=0.001)
    st.write_text("ok.txt", "fine")  # other objects go through
    with pytest.raises(ObjectStoreError, match=r"write flaky://.*/out/shards/manifest.json: gave up after 3 attempts") as ei:
        st.write_json("shards/manifest.json", {"a": 1})
    assert ei.value.errno == errno.EBUSY and "SlowDown" in str(ei.value)
    assert log["failures"] == 3  # exactly the bounded number of tries
    assert not (tmp_path / "out/shards/manifest.json").exists()
    # permanent errors are not retried: one request, the error as it is
    n = log["calls"]
    with pytest.raises(FileNotFoundError):
        st.read_bytes("missing.json")
    assert log["calls"] - n == 1
    # the backoff doubles and is jittered below its ceiling
    waits = []
    with pytest.raises(ObjectStoreError):
        call_with_retries(lambda: (_ for _ in ()).throw(TRANSIENT[0]()), "read x", 5, 1.0, sleep=waits.append)
    assert len(waits) == 4 and all(0 <= w <= 2**i for i, w in enumerate(waits)) and len(set(waits)) == 4


# ------------------------------------------------------------------ slow: `curate` on S3 end to end
# RAY_ADDRESS=local (below): each command starts its own local Ray even where a `ray start`
# cluster runs on this machine (ray.init() without an address would join that one)
def _curate(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``curate ARGS`` as a user types it (own process, own local Ray, env from s3_server)."""
    r = subprocess.run([CURATE, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                       env={**os.environ, "RAY_ADDRESS": "local"})
    assert r.returncode == 0, f"curate {' '.join(args)} exited {r.returncode}:\n{r.stderr[-4000:]}"
    return r


def _object_names(fs, prefix: str) -> list[str]:
    return sorted(p[len(prefix) + 1:] for p in fs.find(prefix))


@pytest.fixture(scope="module")
def s3_runs(s3_server, tmp_path_factory):
    """The bundled :data:`RUN_FILES` in ``s3://<bucket>/in/``, and two ``curate run`` of them:
    local disk to local disk (the reference, ``--no-report``) and ``s3://`` to ``s3://`` (with
    the report). Yields ``{"bucket", "local": Storage, "s3": Storage, "seconds": {...}}``."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket = f"webmill-run-{os.getpid()}-{int(time.time())}"
    fs.mkdir(bucket)
    local_in = tmp_path_factory.mktemp("in")
    for name in RUN_FILES:
        fs.put(str(ROOT / "examples/warc" / name), f"{bucket}/in/{name}")
        (local_in / name).write_bytes((ROOT / "examples/warc" / name).read_bytes())
    local_out = tmp_path_factory.mktemp("local") / "out"
    seconds = {}
    t0 = time.monotonic()
    _curate("run", str(local_in), "-o", str(local_out), "--workers", "2", "--no-report")
    seconds["local run"] = time.monotonic() - t0
    t0 = time.monotonic()
    r = _curate("run", f"s3://{bucket}/in/", "-o", f"s3://{bucket}/out", "--workers", "2")
    seconds["s3 run"] = time.monotonic() - t0
    yield {"bucket": bucket, "fs": fs, "local": Storage(local_out), "s3": Storage(f"s3://{bucket}/out"),
           "seconds": seconds, "stderr": r.stderr}
    fs.rm(bucket, recursive=True)


@pytest.mark.slow
def test_curate_run_s3_to_s3_same_bytes_as_local(s3_runs):
    local, s3 = s3_runs["local"], s3_runs["s3"]
    ref = _tree_digests(local)
    assert any(k.startswith("final/") for k in ref) and any(k.startswith("shards/shard-") for k in ref)
    assert _tree_digests(s3) == ref
    assert s3.list("markers") == local.list("markers") == sorted(n.split(".warc")[0] + ".done" for n in RUN_FILES)
    assert not s3.exists("failed.jsonl")
    # the report was written on S3 too (and nothing went to a local folder named "s3:")
    assert s3.isfile("report/report.html") and s3.read_json("report/stats.json")
    assert "report: s3://" in s3_runs["stderr"]
    assert not (ROOT / "s3:").exists()
    print("wall times:", {k: round(v, 1) for k, v in s3_runs["seconds"].items()})


def _descendants(pid: int) -> dict[int, str]:
    """``{pid: name}`` of every process below ``pid`` (Linux ``/proc``)."""
    parent, name = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            rest = stat.rsplit(")", 1)[1].split()
            parent[int(d.name)], name[int(d.name)] = int(rest[1]), stat[stat.index("(") + 1:stat.rindex(")")]
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for child, par in parent.items():
            if par == p and child not in found:
                found[child] = name[child]
                todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``, its process group and every process below it at once, as a machine
    that dies would (Ray's worker actors sit in other process groups: killed with the group
    only, they live on for a moment and may finish the file they hold)."""
    tree = _descendants(proc.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_killed_s3_run_leaves_whole_objects_and_rerun_gives_same_bytes(s3_runs):
    """SIGKILL to ``curate run`` and all its processes (driver, embedded Ray, actors) as soon as
    the first input's marker is on S3; what is there is whole objects only; the same command
    again skips the finished inputs and ends with the bytes of the undisturbed local run."""
    fs, bucket = s3_runs["fs"], s3_runs["bucket"]
    out = f"{bucket}/killed"
    # --workers as in the reference run: [ray] is part of the config hash in the shard headers
    args = [CURATE, "run", f"s3://{bucket}/in/", "-o", f"s3://{out}", "--workers", "2", "--no-report"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env={**os.environ, "RAY_ADDRESS": "local"}, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            fs.invalidate_cache()
            if fs.exists(f"{out}/markers") and fs.ls(f"{out}/markers"):
                break
            time.sleep(0.1)
    finally:
        _kill_tree(proc)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way (exit {proc.returncode})"
    fs.invalidate_cache()
    names = _object_names(fs, out)
    markers = [n for n in names if n.startswith("markers/")]
    assert markers  # killed after the first input was done ...
    assert not any(n.startswith("shards/") for n in names)  # ... and before the end
    assert not any(".webmill-tmp-" in n or n.rsplit("/", 1)[-1].startswith(".") for n in names)
    for n in names:  # every object under a final name is whole
        data = fs.cat_file(f"{out}/{n}")
        if n.endswith(".parquet"):
            assert pq.read_metadata(io.BytesIO(data)).num_rows >= 0
        elif n.endswith((".json", ".done")):
            json.loads(data)
    for m in markers:  # markers last: each finished input has its documents and stats
        stem = m.removeprefix("markers/").removesuffix(".done")
        assert f"documents/{stem}.parquet" in names and f"stats/{stem}.json" in names

    r = _curate(*args[1:])
    assert f"skipped {len(markers)} inputs with completion markers" in r.stderr, (names, r.stderr)
    got, ref = _tree_digests(Storage(f"s3://{out}")), _tree_digests(s3_runs["local"])
    assert sorted(got) == sorted(ref)
    assert [k for k in ref if got[k] != ref[k]] == []
    assert not Storage(f"s3://{out}").exists("failed.jsonl")


@pytest.mark.slow
def test_subcommands_accept_s3_out(s3_runs):
    """``curate dedup / finalize / tokenize / stats / funnel / check-shards`` on the S3 OUT of a
    run: each works and dedup/finalize/tokenize rewrite the same bytes as the local run's."""
    s3, local = s3_runs["s3"], s3_runs["local"]
    out = s3.uri()
    times = {}
    cfg_hash = local.read_json("shards/manifest.json")["config_hash"]  # shard headers carry it
    for cmd in (["dedup", out], ["finalize", out],
                ["tokenize", f"{out}/final", "-o", f"{out}/shards-cli", "--config-hash", cfg_hash],
                ["stats", out], ["funnel", out], ["check-shards", f"{out}/shards-cli"]):
        t0 = time.monotonic()
        r = _curate(*cmd)
        times[cmd[0]] = round(time.monotonic() - t0, 1)
        if cmd[0] == "funnel":
            assert "files=3" in r.stdout and "dedup" in r.stdout
        if cmd[0] == "check-shards":
            assert "cl100k_base" in r.stdout
    ref = _tree_digests(local, ("deduped", "final"))
    assert _tree_digests(s3, ("deduped", "final")) == ref
    shards = {k: v for k, v in _tree_digests(local, ("shards",)).items() if k.endswith(".parquet")}
    cli = {k.replace("shards-cli/", "shards/"): v for k, v in _tree_digests(s3, ("shards-cli",)).items()
           if k.endswith(".parquet")}
    assert cli == shards and shards
    assert s3.isfile("report/report.html")
    print("wall times:", times)
