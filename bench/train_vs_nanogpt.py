"""webmill's ``train pretrain`` vs nanoGPT's ``train.py``: tokens/s on the same GPT, data and machine.

Both sides train the same GPT-2-style model (default: 4 layers, 4 heads, 256 wide, context 256,
micro-batch 8, vocabulary 4,096 (a multiple of 64: no padding on either side), biases, dropout 0,
fp32, no compile, CPU) for the same number of optimizer steps on the same token stream:

* synthetic documents (a seeded random motif per document, repeated: learnable, so the loss
  falls as on text), written once as webmill shards with the real ``ShardWriter`` and, from the
  same arrays in the same order (each document followed by its EOT id), as nanoGPT's
  ``data/bench/train.bin`` / ``val.bin`` (uint16) with ``meta.pkl`` = ``{"vocab_size": V}``;
* nanoGPT's MIT ``train.py``/``model.py``/``configurator.py`` are run unchanged from a copy of
  ``../shared/ref/nanoGPT`` in the work directory (``train.py`` reads ``configurator.py`` and
  ``data/`` from its working directory; the reference folder may be read-only).

The two programs run as subprocesses in alternation (pair 1 webmill first, pair 2 nanoGPT first,
...), same interpreter, same ``OMP_NUM_THREADS``. Throughput is measured the same way for both:
the arrival time of each per-step log line on the pipe (``PYTHONUNBUFFERED``), so it covers
everything a step costs (data, forward, backward, optimizer, logging); the first ``--warmup``
steps are excluded and tokens/s = tokens of steps ``warmup+1 .. steps`` ÷ time from the line of
step ``warmup`` to the last. Each side's own per-step timer is reported too (median of the same
steady steps). Prints the machine (CPU model, cores, torch version, threads, ISA level, bf16/AMX
flags, load average) and one row per pair with the ratio webmill/nanoGPT, and the median ratio.

    .venv/bin/python bench/train_vs_nanogpt.py                          # 3 pairs × 40 steps
    .venv/bin/python bench/train_vs_nanogpt.py --webmill-args="--compile"   # a lever on webmill's side
    .venv/bin/python bench/train_vs_nanogpt.py --no-cpu-kernels             # webmill without its CPU kernels
    .venv/bin/python bench/train_vs_nanogpt.py --pairs 1 --steps 6 --warmup 2 --n-layer 2 --n-embd 64

Not a unit test (timings depend on the machine and its load); tests/test_bench_train.py runs it
with a tiny shape to prove it works.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NANOGPT_REF = REPO.parent / "shared" / "ref" / "nanoGPT"

WEBMILL_STEP = re.compile(r"^step\s+(\d+)/\d+ \| loss ([-+\w.]+) \|.*\| (\d+) ms \|")
NANOGPT_STEP = re.compile(r"^iter (\d+): loss ([-+\w.]+), time ([\d.]+)ms")


def make_docs(n_tokens: int, vocab: int, seed: int) -> list:
    """Seeded learnable documents of ~``n_tokens`` tokens in all: ids in [0, vocab-1) (the last id
    is EOT), each a random motif of 3–12 tokens repeated to 50–600 tokens. Returns int64 arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    docs, total = [], 0
    while total < n_tokens:
        motif = rng.integers(0, vocab - 1, size=int(rng.integers(3, 13)))
        d = np.resize(motif, int(rng.integers(50, 601))).astype(np.int64)
        docs.append(d)
        total += len(d) + 1
    return docs


def make_data(work: Path, vocab: int, train_tokens: int, val_tokens: int, seed: int) -> tuple[Path, Path]:
    """Write webmill shards (``work/shards``) and nanoGPT's copy with ``data/bench`` (``work/nanogpt``)
    from the same documents; return both directories."""
    import numpy as np

    from webmill.tokenize.shards import ShardWriter

    eot = vocab - 1
    tok = {"name": "synthetic-bench", "ranks_sha256": "0" * 64, "vocab_size": vocab, "eot_id": eot,
           "bos_id": None, "boundary": "eot"}
    splits = {"train": make_docs(train_tokens, vocab, seed), "val": make_docs(val_tokens, vocab, seed + 1)}
    shards, nano = work / "shards", work / "nanogpt"
    shutil.copytree(NANOGPT_REF, nano, ignore=shutil.ignore_patterns("data", "out", "__pycache__"))
    (nano / "data" / "bench").mkdir(parents=True)
    with ShardWriter(shards, tok, row_group_rows=100) as w:
        for split, docs in splits.items():
            docs = [np.append(d, eot) for d in docs]
            flat = np.concatenate(docs)
            offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
            w.write_batch(split, [f"{split}-{i}" for i in range(len(docs))], flat, offsets, "web")
            flat.astype(np.uint16).tofile(nano / "data" / "bench" / f"{split}.bin")
    with open(nano / "data" / "bench" / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": vocab}, f)
    return shards, nano


def machine() -> dict:
    """CPU model, cores, torch version/threads/ISA level, bf16-relevant CPU flags, load average."""
    import torch

    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("?", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "isa": torch.backends.cpu.get_cpu_capability(),
            "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"}),
            "loadavg": os.getloadavg()}


def run_timed(cmd: list[str], cwd: Path, env: dict, pattern: re.Pattern, timeout: float) -> dict:
    """Run ``cmd``; timestamp every stdout line matching ``pattern`` (groups: step, loss, ms).

    Returns ``{"t": [arrival s], "loss": [...], "ms": [self-reported]}``.

    Raises:
        RuntimeError: non-zero exit (with the output's tail).
    """
    t, loss, ms, tail = [], [], [], []
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        now = time.perf_counter()
        tail = (tail + [line])[-30:]
        m = pattern.match(line)
        if m:
            t.append(now)
            loss.append(float(m.group(2)))
            ms.append(float(m.group(3)))
        if now - t0 > timeout:
            p.kill()
            break
    rc = p.wait()
    if rc != 0:
        raise RuntimeError(f"{shlex.join(cmd)} (in {cwd}) exited {rc}:\n{''.join(tail)}")
    return {"t": t, "loss": loss, "ms": ms}


def steady(r: dict, warmup: int, tokens_per_step: int) -> dict:
    """tokens/s over steps ``warmup+1 ..`` from line arrival times and from the self-reported ms.

    Raises:
        RuntimeError: fewer than ``warmup + 2`` step lines (nothing left to time).
    """
    n = len(r["t"])
    if n < warmup + 2:
        raise RuntimeError(f"only {n} step lines; need > warmup + 1 = {warmup + 1}")
    wall = r["t"][-1] - r["t"][warmup - 1] if warmup > 0 else None
    if wall is None:  # no line before the first step: use the gaps from step 1 on
        wall, n_timed = r["t"][-1] - r["t"][0], n - 1
    else:
        n_timed = n - warmup
    return {"tok_s": n_timed * tokens_per_step / wall,
            "self_tok_s": tokens_per_step / (statistics.median(r["ms"][warmup:]) / 1000),
            "final_loss": r["loss"][-1], "steps": n}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="first steps left out of tokens/s")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8, help="micro-batch (no accumulation)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--train-tokens", type=int, default=2_000_000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OMP_NUM_THREADS of both")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--webmill-args", default="", help="extra `train pretrain` flags (a lever), one string")
    ap.add_argument("--no-heap-reuse", action="store_true", help="webmill without its allocator setting "
                    "(webmill.train.cpu_speed.reuse_freed_memory), to measure that lever")
    ap.add_argument("--no-cpu-kernels", action="store_true", help="webmill without its CPU kernels (fused head + "
                    "cross-entropy, sigmoid-form GELU: GPT.fused_loss, MLP.fused_gelu), to measure those levers")
    ap.add_argument("--nanogpt-args", default="", help="extra nanoGPT --key=value flags, one string")
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a temp dir, removed)")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    args = ap.parse_args(argv)
    if not (NANOGPT_REF / "train.py").is_file():
        raise SystemExit(f"nanoGPT reference not found at {NANOGPT_REF} (train.py, model.py, configurator.py)")
    if args.steps < args.warmup + 2:
        raise SystemExit(f"--steps ({args.steps}) must be ≥ --warmup + 2 ({args.warmup + 2})")

    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="train-vs-nanogpt-")
        work = Path(tmp.name)
    else:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(args, work: Path) -> dict:
    B, T = args.batch, args.block_size
    tokens_per_step = B * T
    val_tokens = 4 * tokens_per_step + 1
    shards, nano = make_data(work, args.vocab, args.train_tokens, val_tokens, args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    shape = ["--n-layer", str(args.n_layer), "--n-head", str(args.n_head), "--n-embd", str(args.n_embd),
             "--block-size", str(T)]
    warm_lr = max(1, args.steps // 10)

    launch = ["-m", "webmill.train.cli"]
    if args.no_heap_reuse or args.no_cpu_kernels:  # measure a lever: train() without it, otherwise unchanged
        code = "import contextlib, sys; import webmill.train.loop as L; "
        if args.no_heap_reuse:
            code += "L.reuse_freed_memory = lambda on=True: contextlib.nullcontext(False); "
        if args.no_cpu_kernels:
            code += ("import webmill.train.model as M; "  # the getattr fails loudly if a switch is renamed
                     "assert M.GPT.fused_loss and M.MLP.fused_gelu; "
                     "M.GPT.fused_loss = M.MLP.fused_gelu = False; ")
        launch = ["-c", code + "from webmill.train.cli import app; sys.argv[0] = 'train'; app()"]

    def webmill_cmd(i: int) -> list[str]:
        return [sys.executable, *launch, "pretrain", "--shards", str(shards),
                "--out", str(work / f"run-webmill-{i}"), "--preset", "tiny", *shape,
                "--micro-batch", str(B), "--max-steps", str(args.steps), "--warmup-steps", str(warm_lr),
                "--lr", "1e-3", "--dropout", "0", "--device", "cpu", "--dtype", "fp32", "--no-compile",
                "--eval-every", "0", "--sample-every", "0", "--ckpt-every", "0", "--no-tensorboard",
                "--seed", str(args.seed), *shlex.split(args.webmill_args)]

    def nanogpt_cmd(i: int) -> list[str]:
        return [sys.executable, "train.py", "--dataset=bench", f"--out_dir=out-{i}", "--device=cpu",
                "--dtype=float32", "--compile=False", f"--batch_size={B}", f"--block_size={T}",
                f"--n_layer={args.n_layer}", f"--n_head={args.n_head}", f"--n_embd={args.n_embd}",
                "--dropout=0.0", "--bias=True", f"--max_iters={args.steps - 1}", "--eval_interval=1000000",
                "--eval_iters=1", "--log_interval=1", "--always_save_checkpoint=False",
                "--gradient_accumulation_steps=1", "--learning_rate=0.001", "--min_lr=0.0001",
                f"--warmup_iters={warm_lr}", f"--lr_decay_iters={args.steps}", *shlex.split(args.nanogpt_args)]

    info = machine()
    info["threads"] = args.threads
    print(f"machine: {info['cpu']} | {info['cores']} cores | torch {info['torch']} | OMP_NUM_THREADS "
          f"{args.threads} | ISA {info['isa']} | bf16/AMX flags: {', '.join(info['bf16_flags']) or 'none'} | "
          f"load {info['loadavg'][0]:.2f}")
    print(f"model: {args.n_layer} layers, {args.n_head} heads, {args.n_embd} wide, context {T}, batch {B}, "
          f"vocab {args.vocab}, fp32, CPU | {args.steps} steps, first {args.warmup} not timed | "
          f"webmill extra: {args.webmill_args or '-'}{' (heap reuse off)' if args.no_heap_reuse else ''}"
          f"{' (CPU kernels off)' if args.no_cpu_kernels else ''} | "
          f"nanoGPT extra: {args.nanogpt_args or '-'}")
    rows = []
    for i in range(args.pairs):
        order = ["webmill", "nanogpt"] if i % 2 == 0 else ["nanogpt", "webmill"]
        res = {}
        load0 = os.getloadavg()[0]
        for side in order:
            if side == "webmill":
                r = run_timed(webmill_cmd(i), REPO, env, WEBMILL_STEP, args.timeout)
            else:
                r = run_timed(nanogpt_cmd(i), nano, env, NANOGPT_STEP, args.timeout)
            res[side] = steady(r, args.warmup, tokens_per_step)
        rows.append({"pair": i + 1, "order": "/".join(order), "load": load0, **res,
                     "ratio": res["webmill"]["tok_s"] / res["nanogpt"]["tok_s"]})
    print()
    print("| pair | order | load | nanoGPT tok/s | webmill tok/s | ratio | self-timed nanoGPT / webmill | "
          "final loss nanoGPT / webmill |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        n, w = r["nanogpt"], r["webmill"]
        print(f"| {r['pair']} | {r['order']} | {r['load']:.1f} | {n['tok_s']:,.0f} | {w['tok_s']:,.0f} | "
              f"{r['ratio']:.2f}× | {n['self_tok_s']:,.0f} / {w['self_tok_s']:,.0f} | "
              f"{n['final_loss']:.3f} / {w['final_loss']:.3f} |")
    med = statistics.median(r["ratio"] for r in rows)
    print(f"\nmedian webmill/nanoGPT tokens/s: {med:.2f}× ({args.pairs} alternating pairs; load after "
          f"{os.getloadavg()[0]:.2f})")
    out = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "pairs": rows, "median_ratio": med}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
