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
    """`train report RUN`: the page embeds the curve PNGs it wrote, and its numbers are metrics.jsonl's."""
    import base64
    import html
    import re

    run = tmp_path / "run"
    train(tiny_cfg(shards, run, max_steps=3, eval_every=1))
    r = invoke("report", str(run))
    assert r.exit_code == 0, r.output
    page_path = run / "report" / "report.html"
    assert r.stdout.strip() == f"report: {page_path}"
    page = page_path.read_text(encoding="utf-8")
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tr = [x for x in recs if x["type"] == "train"]
    va = [x for x in recs if x["type"] == "val"]
    assert [x["step"] for x in tr] == [1, 2, 3] and [x["step"] for x in va] == [0, 1, 2, 3]
    best = min(va, key=lambda x: x["val_loss"])
    want = {"train_steps": 3, "last_step": 3, "last_loss": tr[-1]["loss"], "min_loss": min(x["loss"] for x in tr),
            "median_tokens_per_s": float(np.median([x["tokens_per_s"] for x in tr[1:]])),
            "median_ms_per_step": float(np.median([x["ms"] for x in tr[1:]])), "tokens_seen": 3 * 2 * 16,
            "median_mfu": None, "last_val_loss": va[-1]["val_loss"], "best_val_loss": best["val_loss"],
            "best_val_step": best["step"]}
    assert json.loads((run / "report" / "summary.json").read_text()) == pytest.approx(want)
    # the summary table of the page shows the same numbers (rounded to 4 significant digits)
    cells = dict(re.findall(r"<th[^>]*>\s*(\w+)\s*</th>\s*<td[^>]*>\s*([^<]*?)\s*</td>", page))
    for key, v in want.items():
        shown = html.unescape(cells[key])
        if v is None:
            assert shown in ("—", "-", ""), (key, shown)
        else:
            assert float(shown.replace(",", "")) == pytest.approx(v, rel=1e-3), (key, shown, v)
    # each curve is embedded as the very PNG written beside the page (the page opens offline)
    imgs = {}
    for tag in re.findall(r"<img\b[^>]*>", page):
        name = re.search(r'data-name="(\w+)"', tag).group(1)
        imgs[name] = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag).group(1)
    assert set(imgs) == {"loss", "lr", "throughput", "grad_norm"}
    for name, b64 in imgs.items():
        png = base64.b64decode(b64)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and png == (run / "report" / f"{name}.png").read_bytes(), name


def test_pretrain_option_defaults_are_train_config_defaults(shards, tmp_path, monkeypatch):
    """Every `train pretrain` option takes its default from TrainConfig (one place per default)."""
    import typer.main

    import webmill.train.loop as loop
    from webmill.train.cli import app
    from webmill.train.config import config_defaults

    params = {p.name: p for p in typer.main.get_command(app).commands["pretrain"].params}
    defaults = config_defaults()
    python_only = {"eps", "sample_temperature", "sample_top_k", "sample_prompts"}
    assert set(params) == (set(defaults) - python_only) | {"shards", "out", "sample_prompt"}
    for name in set(params) & set(defaults):
        assert params[name].default == defaults[name], name
    seen = []
    monkeypatch.setattr(loop, "train", seen.append)
    r = invoke("pretrain", "--shards", str(shards), "--out", str(tmp_path / "run"))
    assert r.exit_code == 0, r.output
    assert seen == [TrainConfig(shards=str(shards), out=str(tmp_path / "run"))]
    r = invoke("pretrain", "--shards", "S", "--out", "O", "--micro-batch", "3", "--no-tensorboard",
               "--sample-prompt", "a", "--sample-prompt", "b", "--peak-flops", "1e12", "--quick-check")
    assert r.exit_code == 0, r.output
    assert seen[1] == TrainConfig(shards="S", out="O", micro_batch=3, tensorboard=False, sample_prompts=["a", "b"],
                                  peak_flops=1e12, verify_tokens=False)
    r = invoke("pretrain", "--shards", str(shards), "--out", str(tmp_path / "x"), "--schedule", "linear")
    assert r.exit_code == 0 and len(seen) == 3  # the value is checked by train() (below), not by typer
    monkeypatch.undo()
    with pytest.raises(UserError, match="--schedule must be cosine, wsd or constant"):
        train(tiny_cfg(shards, tmp_path / "y", schedule="linear"))


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A10G", 70e12), ("NVIDIA A10", 125e12),
    ("NVIDIA L40S", 362e12), ("NVIDIA L40", 181e12), ("NVIDIA L4", 121e12), ("Tesla T4", 65e12),
    ("NVIDIA GeForce GTX 1080", None), ("Quadro P1000", None),
])
def test_peak_flops_table(name, peak):
    from webmill.train.config import peak_flops_for_name
    from webmill.train.loop import peak_flops

    assert peak_flops_for_name(name) == peak
    assert peak_flops(torch.device("cpu")) is None


def test_mfu_is_printed_only_where_a_peak_is_known(shards, tmp_path, capsys):
    from webmill.train.model import GPT, GPTConfig

    cpu, given = tmp_path / "cpu", tmp_path / "given"
    stale = cpu / "checkpoints" / ".step-00000002.pt.tmp-4242"  # left by a writer killed mid-write
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"torn")
    train(tiny_cfg(shards, cpu, max_steps=2, eval_every=0, quiet=False))
    out = capsys.readouterr().out
    assert len([x for x in out.splitlines() if x.startswith("step ")]) == 2 and "MFU" not in out
    assert all(r["mfu"] is None for r in map(json.loads, (cpu / "metrics.jsonl").read_text().splitlines())
               if r["type"] == "train")
    assert not stale.exists() and sorted(p.name for p in stale.parent.iterdir()) == ["step-00000002.pt"]

    train(tiny_cfg(shards, given, max_steps=2, eval_every=0, quiet=False, peak_flops=1e9))
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step ")]
    recs = [r for r in map(json.loads, (given / "metrics.jsonl").read_text().splitlines()) if r["type"] == "train"]
    fpt = GPT(GPTConfig.from_dict(load_checkpoint(given)["model_config"])).estimate_flops_per_token(16)
    assert len(lines) == len(recs) == 2
    for line, r in zip(lines, recs):
        assert r["mfu"] == pytest.approx(fpt * r["tokens_per_s"] / 1e9, rel=1e-9) and r["mfu"] > 0
        assert line.endswith(f"| MFU {100 * r['mfu']:.1f}%")
    with pytest.raises(UserError, match="--peak-flops must be ≥ 0"):
        train(tiny_cfg(shards, tmp_path / "neg", max_steps=1, peak_flops=-1.0))


def test_training_does_not_import_the_curation_side():
    """webmill.train depends on token shards, storage and errors only, never on webmill.curate."""
    code = ("import sys, webmill.train.cli, webmill.train.loop, webmill.train.report, webmill.train.export_hf, "
            "webmill.tokenize.shards; bad = sorted(m for m in sys.modules if m.startswith('webmill.curate')); "
            "assert not bad, bad; assert 'webmill.storage' in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


_FAULTS_SCRIPT = """
import os, resource, sys, torch
from webmill.train.cpu_speed import _glibc, reuse_freed_memory
if _glibc() is None:
    print("skip"); sys.exit(0)
def faults(n=10):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.ones(2048, 4096).sum()  # 32 MiB allocated, touched, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
default = faults()
with reuse_freed_memory(enabled=False) as off:
    disabled = faults()
with reuse_freed_memory() as on:
    faults()  # the heap grows until freed blocks coalesce into ones that fit (posix_memalign)
    reused = faults()  # then the same memory is reused
print(default, disabled, reused, int(off), int(on))
"""


def test_reuse_freed_memory_stops_page_faults():
    """The allocator lever of CPU training (webmill.train.cpu_speed): a block of the size of the
    tiny preset's logits (32 MiB) is page-faulted in on every allocation by default, and not at all
    inside ``reuse_freed_memory`` once the heap has grown (how many allocations that takes depends
    on where posix_memalign's aligned blocks land: 2 to 7 of 10 measured here). Measured in a fresh process (as ``train pretrain`` runs):
    the allocator state that earlier tests leave in the pytest process (arenas, trimmed heap
    holes) changes where a block lands, which is not what this test is about."""
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS_SCRIPT], capture_output=True, text=True, check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout.split()
    if out == ["skip"]:
        pytest.skip("not glibc: the setting is a no-op")
    default, disabled, reused, off, on = map(int, out)
    pages = 2048 * 4096 * 4 // os.sysconf("SC_PAGE_SIZE")
    assert default >= 9 * pages and disabled >= 9 * pages  # mmap'd afresh each time
    assert (off, on) == (0, 1)
    assert reused < pages  # not one block of the 10 faulted in again


def test_bf16_capable_flags():
    from webmill.train.cpu_speed import bf16_capable, cpu_flags

    epyc = "processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f\n"
    spr = "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert cpu_flags(epyc) == {"fpu", "sse", "avx2", "fma", "avx512f"}
    assert not bf16_capable(cpu_flags(epyc)) and bf16_capable(cpu_flags(spr))
    assert cpu_flags("no flags here") == set()
