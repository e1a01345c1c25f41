"""The storage layer (webmill/storage.py) on local disk and on fsspec's in-memory filesystem, and
the documents stage writing through it: the same input gives the same bytes on both."""

from __future__ import annotations

import io
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webmill.config import load_config
from webmill.curate.documents import FileProcessor
from webmill.curate.pipeline import remove_stale_temps, update_failed_list
from webmill.storage import Storage, is_temp, temp_name

TABLE = pa.table({"id": [f"d{i}" for i in range(2500)], "text": [f"text {i} " * 7 for i in range(2500)]})


@pytest.fixture(params=["local", "memory"])
def st(request, tmp_path) -> Storage:
    if request.param == "local":
        yield Storage(tmp_path / "out")
        return
    root = f"memory://webmill-test-{uuid.uuid4().hex[:8]}/out"
    yield Storage(root)
    Storage(root).remove_tree("")


def test_publish_list_read(st):
    st.write_json("stats/a.json", {"b": 1, "a": [1, 2]})
    st.write_text("failed.jsonl", "x\n")
    st.write_bytes("markers/a.done", b"{}")
    assert st.read_bytes("stats/a.json") == b'{\n "a": [\n  1,\n  2\n ],\n "b": 1\n}\n'
    assert st.list("stats") == ["a.json"] and st.list("", suffix=".jsonl") == ["failed.jsonl"]
    assert st.list("", recursive=True) == ["failed.jsonl", "markers/a.done", "stats/a.json"]
    assert st.list("nope") == []
    assert st.exists("markers/a.done") and st.isfile("markers/a.done") and st.isdir("markers")
    assert st.remove("markers/a.done") and not st.remove("markers/a.done")


def test_failed_write_publishes_nothing(st):
    st.write_text("stats/x.json", "old\n")
    with pytest.raises(RuntimeError):
        with st.atomic_write("stats/x.json") as f:
            f.write(b"half of a new vers")
            raise RuntimeError("killed writer")
    assert st.read_text("stats/x.json") == "old\n"  # the old version stays whole
    with pytest.raises(RuntimeError):
        with st.atomic_write("stats/new.json") as f:
            f.write(b"{")
            raise RuntimeError("killed writer")
    assert not st.exists("stats/new.json")
    assert st.list("stats") == ["x.json"]  # no temp file left behind, none listed


def test_sweep_removes_every_temp_name(st):
    st.write_text("documents/a.parquet", "a")
    for name in (temp_name("b.parquet"), ".c.json.1234.tmp", "d.parquet.tmp", "e.tmp-99"):
        assert is_temp(name)
        # a killed writer's leftover (written raw, as it would be)
        with st.fs.open(st.path(f"documents/{name}"), "wb") as f:
            f.write(b"partial")
    assert st.list("documents") == ["a.parquet"]
    assert remove_stale_temps(st) == 4
    assert [p.rsplit("/", 1)[-1] for p in st.fs.find(st.path("documents"))] == ["a.parquet"]


def test_parquet_bytes_equal_pyarrow_writing_a_path(st, tmp_path):
    ref = tmp_path / "ref.parquet"
    pq.write_table(TABLE, ref, compression="zstd", row_group_size=1000, write_statistics=True)
    st.write_parquet("documents/x.parquet", TABLE)
    assert st.read_bytes("documents/x.parquet") == ref.read_bytes()
    assert st.read_parquet("documents/x.parquet").equals(TABLE)
    assert st.parquet_file("documents/x.parquet").metadata.num_row_groups == 3
    assert pq.read_table(io.BytesIO(st.read_bytes("documents/x.parquet")), columns=["id"]).num_rows == 2500


def test_failed_list_through_storage(st):
    update_failed_list(st, ["a", "b"], [{"input": "a", "reason": "worker died 3 times"}])
    assert [line.split('"')[3] for line in st.read_text("failed.jsonl").splitlines()] == ["a"]
    update_failed_list(st, ["a"], [])
    assert not st.exists("failed.jsonl")


def test_check_writable_names_the_output(tmp_path):
    Storage(tmp_path / "ok").check_writable()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="not writable"):
        Storage(blocker / "out").check_writable()


def test_documents_stage_same_bytes_on_memory_and_local_disk(tmp_path, examples_warc):
    """FileProcessor.process with OUT=memory:// (in this process) writes exactly the documents,
    stats counts and marker that it writes to local disk."""
    cfg = load_config(None, {"extract": {"timeout_s": 30.0}, "output": {"write_removed": True}})
    name = "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz"
    mem = Storage(f"memory://webmill-test-{uuid.uuid4().hex[:8]}/out")
    results = {}
    for key, out in (("local", Storage(tmp_path / "out")), ("memory", mem)):
        proc = FileProcessor(cfg, out)
        try:
            results[key] = proc.process(str(examples_warc / name))
        finally:
            proc.close()
    local = Storage(tmp_path / "out")
    stem = results["local"]["stem"]
    assert results["local"]["kept"] >= 10 and results["memory"]["kept"] == results["local"]["kept"]
    for key in ("records", "dropped", "stages", "errors"):
        assert results["memory"][key] == results["local"][key]
    rel = f"documents/{stem}.parquet"
    assert mem.read_bytes(rel) == local.read_bytes(rel)
    assert mem.list("removed", recursive=True) == local.list("removed", recursive=True) != []
    for r in local.list("removed", recursive=True):
        assert mem.read_bytes(f"removed/{r}") == local.read_bytes(f"removed/{r}")
    assert mem.read_json(f"markers/{stem}.done") == local.read_json(f"markers/{stem}.done")
    mem.remove_tree("")
