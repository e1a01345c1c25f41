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


def test_pretrain_with_shards_and_run_on_another_filesystem(tmp_path, monkeypatch):
    """`--shards URL --out URL` (here memory://): the run stops, resumes from the URL run directory
    with an empty shard cache and staging directory, and equals the same run on local disk."""
    import json

    from test_train_helpers import make_shards, pattern_docs

    from webmill.train.loop import TrainConfig, train

    local = tmp_path / "shards"
    make_shards(local, {"train": pattern_docs(30, 200, seed=1), "val": pattern_docs(4, 200, seed=2)}, 200,
                row_group_rows=2, shard_tokens=150)
    root = f"memory://webmill-test-train/{tmp_path.name}"
    shards, run = Storage(f"{root}/shards"), f"{root}/run"
    for name in Storage(local).list():
        shards.write_bytes(name, (local / name).read_bytes())
    kw = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, micro_batch=2, batch_tokens=32, max_steps=6,
              warmup_steps=1, dropout=0.1, eval_every=2, val_tokens=16, sample_every=3, sample_tokens=2,
              ckpt_every=0, quiet=True, tensorboard=False, verify_tokens=False)
    try:
        train(TrainConfig(shards=str(local), out=str(tmp_path / "ref"), **kw))
        monkeypatch.setenv("WEBMILL_CACHE", str(tmp_path / "cache-a"))
        train(TrainConfig(shards=shards.uri(), out=run, stop_at=3, **kw))
        assert list_checkpoints(run) == [f"{run}/checkpoints/step-00000003.pt"]
        monkeypatch.setenv("WEBMILL_CACHE", str(tmp_path / "cache-b"))  # another machine
        res = train(TrainConfig(shards=shards.uri(), out=run, resume=True, **kw))
        assert res["step"] == 6 and res["checkpoint"] == f"{run}/checkpoints/step-00000006.pt"
        a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(run)
        assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())

        def recs(text):
            return [{k: v for k, v in r.items() if k not in ("ms", "tokens_per_s", "mfu")}
                    for r in map(json.loads, text.splitlines())]

        remote = Storage(run).read_text("metrics.jsonl")
        assert recs(remote) == recs((tmp_path / "ref" / "metrics.jsonl").read_text())
        staged = list((tmp_path / "cache-b" / "runs").glob("*/metrics.jsonl"))
        assert len(staged) == 1 and staged[0].read_text() == remote  # published whole at the end
        cached = list((tmp_path / "cache-b" / "shards").glob("*/shard-*.parquet"))
        assert sorted(p.name for p in cached) == Storage(local).list(suffix=".parquet")
        assert all(p.read_bytes() == (local / p.name).read_bytes() for p in cached)
    finally:
        Storage(root).remove_tree("")
