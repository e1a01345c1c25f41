"""Checkpoints through the storage layer: atomic writes, keep-last-K, temp sweep, any filesystem."""

import fsspec
import pytest
import torch
from test_train_helpers import invoke

from webmill.errors import UserError
from webmill.storage import Storage, temp_name
from webmill.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from webmill.train.model import GPT, make_config


def state(step: int) -> dict:
    return {"model": {"w": torch.full((3,), float(step))}, "model_config": {"n": step}, "step": step}


@pytest.fixture(params=["local", "memory"])
def run(request, tmp_path):
    """A run directory on local disk, and one on fsspec's in-memory filesystem."""
    if request.param == "local":
        yield str(tmp_path / "run")
        return
    url = f"memory://webmill-test-ckpt/{tmp_path.name}/run"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


def test_save_keeps_the_newest_and_sweeps_temps(run):
    st = Storage(run)
    st.makedirs("checkpoints")
    stale = [f"checkpoints/{temp_name('step-00000007.pt')}", "checkpoints/.step-00000008.pt.tmp-4242"]
    for rel in stale:  # torn writes of a killed process: the current and the older temp-name scheme
        st.fs.pipe_file(st.path(rel), b"torn")
    assert list_checkpoints(run) == [] and latest_checkpoint(run) is None
    for step in (1, 2, 3):
        path = save_checkpoint(run, step, state(step), keep=2)
        assert path == st.uri(f"checkpoints/step-{step:08d}.pt")
    assert list_checkpoints(run) == [st.uri("checkpoints/step-00000002.pt"), st.uri("checkpoints/step-00000003.pt")]
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in st.fs.ls(st.path("checkpoints"), detail=False))
    assert names == ["step-00000002.pt", "step-00000003.pt"]  # the temps are gone, step 1 pruned
    newest = load_checkpoint(run)  # a run directory: its newest checkpoint
    assert newest["step"] == 3 and newest["path"] == st.uri("checkpoints/step-00000003.pt")
    assert torch.equal(newest["model"]["w"], torch.full((3,), 3.0))
    assert load_checkpoint(st.uri("checkpoints/step-00000002.pt"))["step"] == 2


def test_a_failed_write_publishes_nothing(run):
    save_checkpoint(run, 1, state(1))
    with pytest.raises(Exception):  # torch.save cannot pickle a lambda under weights-only rules
        save_checkpoint(run, 2, {"model": lambda: 0, "model_config": {}})
    assert list_checkpoints(run) == [Storage(run).uri("checkpoints/step-00000001.pt")]
    st = Storage(run)
    assert [p.rstrip("/").rsplit("/", 1)[-1] for p in st.fs.ls(st.path("checkpoints"), detail=False)] == \
        ["step-00000001.pt"]


def test_load_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no checkpoints"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable webmill checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a webmill training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_sample_reads_a_run_on_another_filesystem(tmp_path):
    """`train sample --checkpoint URL` of a run directory on an fsspec filesystem (here memory://)."""
    torch.manual_seed(0)
    model = GPT(make_config("tiny", 50, n_layer=1, n_head=2, n_embd=16, block_size=16))
    url = f"memory://webmill-test-ckpt/{tmp_path.name}/sample-run"
    tok = {"name": "synthetic-test", "ranks_sha256": "0" * 64, "vocab_size": 50, "eot_id": 49, "bos_id": None}
    save_checkpoint(url, 4, {"model": model.state_dict(), "model_config": model.config.to_dict(), "step": 4,
                             "tokenizer": tok})
    try:
        args = ["sample", "--checkpoint", url, "--prompt-ids", "1 2 3", "--max-tokens", "5", "--greedy",
                "--no-stop-at-eot"]
        r = invoke(*args)
        assert r.exit_code == 0, r.output
        lines = r.stdout.splitlines()
        assert lines[0] == "--- '1 2 3' (seed 0)" and lines[1].startswith("<ids: 1 2 3 ")
        assert len(lines[1].removeprefix("<ids: ").removesuffix(">").split()) == 3 + 5
        assert invoke(*args).stdout == r.stdout  # greedy: the same text again
    finally:
        fsspec.filesystem("memory").rm(url, recursive=True)
