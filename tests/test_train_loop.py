"""Training loop: LR schedule, refusals, bit-identical resume, DDP equivalence, CLI."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_train_helpers import (  # noqa: F401
    REPO,
    invoke,
    make_shards,
    one_thread,
    pattern_docs,
    run_cli,
)

from webmill.errors import UserError
from webmill.tokenize.shards import ShardError, check_shards
from webmill.train.checkpoint import list_checkpoints, load_checkpoint
from webmill.train.data import ShardLoader
from webmill.train.loop import TrainConfig, lr_at, train

VOCAB = 300
TINY = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--micro-batch", "2"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    # 60 docs of 25-140 tokens; files of ≥ 100 tokens with row groups of 2 docs: ~25 files
    make_shards(d, {"train": pattern_docs(60, VOCAB, seed=1), "val": pattern_docs(8, VOCAB, seed=2)},
                VOCAB, row_group_rows=2, shard_tokens=100)
    return d


def tiny_cfg(shards, out, **kw):
    base = dict(shards=str(shards), out=str(out), n_layer=2, n_head=2, n_embd=32, block_size=16,
                micro_batch=2, max_steps=4, warmup_steps=1, eval_every=2, val_tokens=64, sample_every=0,
                quiet=True, tensorboard=False)
    return TrainConfig(**{**base, **kw})


def train_losses(run):
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in recs if r["type"] == "train"]


def timeless_metrics(run):
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("ms", "tokens_per_s", "mfu")} for r in recs]


def test_lr_schedule_endpoints():
    kw = dict(max_lr=1e-3, min_lr=1e-4, warmup=10, total=100)
    for sched in ("cosine", "wsd"):
        assert lr_at(0, **kw, schedule=sched) == pytest.approx(1e-4)  # (0+1)/10 of max
        assert lr_at(9, **kw, schedule=sched) == pytest.approx(1e-3)
        assert lr_at(10, **kw, schedule=sched) == pytest.approx(1e-3)
        assert lr_at(100, **kw, schedule=sched) == pytest.approx(1e-4)
        assert lr_at(500, **kw, schedule=sched) == pytest.approx(1e-4)
        lrs = [lr_at(s, **kw, schedule=sched) for s in range(10, 101)]
        assert all(a >= b - 1e-15 for a, b in zip(lrs, lrs[1:]))  # non-increasing after warmup
    assert lr_at(55, **kw) == pytest.approx(1e-4 + 0.5 * 9e-4)  # cosine midpoint
    assert lr_at(79, **kw, schedule="wsd") == 1e-3  # stable until 80 % (decay_frac 0.2)
    assert lr_at(90, **kw, schedule="wsd") == pytest.approx(5.5e-4)  # linear decay midpoint
    assert lr_at(100, **kw, schedule="constant") == 1e-3
    assert lr_at(0, 1e-3, 0.0, 0, 10) == 1e-3  # no warmup
    with pytest.raises(ValueError):
        lr_at(0, 1, 0, 0, 1, schedule="linear")


def test_refuses_bad_settings(shards, tmp_path):
    with pytest.raises(UserError, match="vocab_size 300 but the model's vocab_size is 200"):
        train(tiny_cfg(shards, tmp_path / "a", vocab_size=200))
    with pytest.raises(UserError, match="not a multiple of micro_batch"):
        train(tiny_cfg(shards, tmp_path / "b", batch_tokens=50))
    with pytest.raises(UserError, match="no checkpoints"):
        train(tiny_cfg(shards, tmp_path / "c", resume=True))
    with pytest.raises(UserError, match="divisible"):
        train(tiny_cfg(shards, tmp_path / "d", n_head=3))
    with pytest.raises(ShardError):
        train(tiny_cfg(tmp_path / "missing", tmp_path / "e"))
    out = tmp_path / "f"
    res = train(tiny_cfg(shards, out, max_steps=2))
    assert res["step"] == 2 and res["accum"] == 1 and len(list_checkpoints(out)) == 1
    with pytest.raises(UserError, match="already holds checkpoints"):
        train(tiny_cfg(shards, out))
    with pytest.raises(UserError, match="n_embd=32 but --n-embd is 64"):
        train(tiny_cfg(shards, out, resume=True, n_embd=64))
    with pytest.raises(UserError, match="batch_size=2 but this run has 4"):
        train(tiny_cfg(shards, out, resume=True, micro_batch=4))


def test_larger_model_vocab_is_accepted(shards, tmp_path):
    res = train(tiny_cfg(shards, tmp_path / "r", vocab_size=512, max_steps=1))
    ck = load_checkpoint(res["checkpoint"])
    assert ck["model_config"]["vocab_size"] == 512
    assert ck["model"]["transformer.wte.weight"].shape[0] == 512


def test_resume_is_bit_identical_across_a_shard_boundary(shards, tmp_path):
    # accumulation 2 (two data streams) and dropout, so cursors and RNG states both matter;
    # the reference and the interrupted run train in this process, the resume in a new one.
    kw = dict(batch_tokens=64, max_steps=8, warmup_steps=2, dropout=0.1, eval_every=3, val_tokens=32,
              sample_every=4, sample_tokens=4, ckpt_every=0, verify_tokens=False)
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg(shards, full, **kw))
    train(tiny_cfg(shards, part, stop_at=4, **kw))
    mid = load_checkpoint(part)
    assert mid["step"] == 4
    assert [(s["stream"], s["epoch"], s["pos"]) for s in mid["loader"][0]["streams"]] == [(0, 0, 128), (1, 0, 128)]
    # the cut is mid-file for a stream, and steps 5-8 read from another shard file
    loader = ShardLoader(shards, check_shards(shards, verify_tokens=False), 2, 16, streams_per_rank=2, seed=1337)
    mid_file = crossed = False
    for st in loader.streams:
        st._plan()
        file_at = [st.order[int(np.searchsorted(st.cum, pos, side="right")) - 1].path for pos in (128, 8 * 32)]
        mid_file |= 128 not in st.cum
        crossed |= file_at[0] != file_at[1]
    assert mid_file and crossed
    r = run_cli("pretrain", "--shards", str(shards), "--out", str(part), *TINY, "--batch-tokens", "64",
                "--max-steps", "8", "--warmup-steps", "2", "--dropout", "0.1", "--eval-every", "3",
                "--val-tokens", "32", "--sample-every", "4", "--sample-tokens", "4", "--ckpt-every", "0",
                "--quick-check", "--no-tensorboard", "--resume", env_extra={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr + r.stdout
    assert "resumed" in r.stdout

    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["step"] == b["step"] == 8
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a["loader"] == b["loader"]
    assert train_losses(full) == train_losses(part)  # every step's loss and grad norm, exactly
    # the whole log matches too (val losses, samples), once the records the interrupted run
    # wrote at its last step are replaced by the resumed run's; timings differ, of course
    assert timeless_metrics(full) == timeless_metrics(part)


def _ddp_cli(args, nproc):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "webmill.train.cli", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ddp_two_gloo_processes_equal_one_process_with_accumulation(shards, tmp_path):
    common = ["pretrain", "--shards", str(shards), *TINY, "--batch-tokens", "64", "--max-steps", "3",
              "--warmup-steps", "1", "--eval-every", "3", "--val-tokens", "64", "--sample-every", "0",
              "--no-tensorboard", "--quick-check"]
    one, two = tmp_path / "one", tmp_path / "two"
    r = run_cli(*common, "--out", str(one), env_extra={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr + r.stdout
    assert "2 accum" in r.stdout
    r = _ddp_cli([*common, "--out", str(two)], 2)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "2 procs×1 accum" in r.stdout
    la, lb = train_losses(one), train_losses(two)
    assert len(la) == len(lb) == 3
    for (sa, a, ga), (sb, b, gb) in zip(la, lb):
        assert sa == sb and math.isclose(a, b, abs_tol=1e-5) and math.isclose(ga, gb, rel_tol=1e-4)
    ca, cb = load_checkpoint(one), load_checkpoint(two)
    for k, v in ca["model"].items():
        assert torch.allclose(v, cb["model"][k], atol=1e-4), k
    va = [json.loads(x)["val_loss"] for x in (one / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    vb = [json.loads(x)["val_loss"] for x in (two / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert len(va) == len(vb) == 2 and all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(va, vb))
    assert len(cb["loader"]) == 2 and len(cb["rng"]) == 2  # per-rank cursors and RNG states


def test_cli_help_and_user_error_exit_code(tmp_path):
    r = invoke("pretrain", "--help")
    assert r.exit_code == 0
    for flag in ("--shards", "--preset", "--batch-tokens", "--compile", "--resume", "--sample-every",
                 "--schedule", "--stop-at", "--eval-every", "--n-layer", "--block-size"):
        assert flag in r.stdout, flag
    r = invoke("pretrain", "--shards", str(tmp_path / "nope"), "--out", str(tmp_path / "run"))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and "nope" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_compiled_training_matches_eager(shards, tmp_path):
    kw = dict(max_steps=3, eval_every=0, ckpt_every=0, verify_tokens=False)
    train(tiny_cfg(shards, tmp_path / "eager", **kw))
    train(tiny_cfg(shards, tmp_path / "compiled", compile=True, **kw))
    for (sa, a, ga), (sb, b, gb) in zip(train_losses(tmp_path / "eager"), train_losses(tmp_path / "compiled")):
        assert sa == sb and math.isclose(a, b, abs_tol=1e-4) and math.isclose(ga, gb, rel_tol=1e-3)
    ca, cb = load_checkpoint(tmp_path / "eager"), load_checkpoint(tmp_path / "compiled")
    assert ca["model"].keys() == cb["model"].keys()  # the bare model is saved, not the compiled wrapper


def test_report_command_reads_the_metrics(shards, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg(shards, run, max_steps=3, eval_every=1))
    r = invoke("report", str(run))
    assert r.exit_code == 0, r.output
    assert (run / "report" / "report.html").is_file()
