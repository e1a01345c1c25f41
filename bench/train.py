"""Training throughput of webmill.train's GPT: eager vs torch.compile, two shapes.

Times full optimizer steps (forward, backward, AdamW) on random tokens, so data loading is
excluded. For each shape it prints tokens/s eager, tokens/s compiled, and their ratio measured in
the same run (the reference is the eager model), plus achieved FLOP/s from
``GPT.estimate_flops_per_token`` and MFU when the device is in the peak-FLOPs table (0 on CPU).

    python bench/train.py                      # both shapes, 3 timed steps each (CPU: minutes)
    python bench/train.py --shapes small --steps 10
    python bench/train.py --device cuda        # bf16 autocast, fused AdamW

Shapes: ``gpt2`` = GPT-2 124M (12 layers, 12 heads, 768 wide, context 1024, batch 1, vocab
50,257 padded to 50,304); ``small`` = the CPU default preset ``tiny`` (4 layers, 4 heads, 256 wide,
context 256, batch 8, vocab 50,257).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from webmill.train.loop import peak_flops
from webmill.train.model import GPT, make_config

SHAPES = {
    "gpt2": dict(preset="gpt2-124m", batch=1, overrides={}),
    "small": dict(preset="tiny", batch=8, overrides={}),
}


def bench_one(shape: str, compile: bool, steps: int, warmup: int, device: torch.device, vocab: int) -> dict:
    """Median tokens/s over ``steps`` timed optimizer steps after ``warmup`` untimed ones."""
    spec = SHAPES[shape]
    torch.manual_seed(0)
    model = GPT(make_config(spec["preset"], vocab, **spec["overrides"])).to(device)
    opt = model.configure_optimizer(3e-4, 0.1, (0.9, 0.95), 1e-8, device.type)
    step_model = torch.compile(model) if compile else model
    B, T = spec["batch"], model.config.block_size
    x = torch.randint(0, vocab, (B, T + 1), device=device)
    amp = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda"
           else contextlib.nullcontext())
    times = []
    first = None
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with amp:
            _, loss = step_model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i == 0:
            first = dt
        if i >= warmup:
            times.append(dt)
    dt = statistics.median(times)
    tok_s = B * T / dt
    flops = model.estimate_flops_per_token(T) * tok_s
    peak = peak_flops(device)
    return {"tok_s": tok_s, "first_step_s": first, "flops": flops, "mfu": flops / peak if peak else 0.0,
            "params": model.num_params()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["gpt2", "small"], choices=sorted(SHAPES))
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps per configuration")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation happens here)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--vocab", type=int, default=50257)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} | device {device} | threads {torch.get_num_threads()} | "
          f"{args.warmup} warmup + {args.steps} timed steps (median)")
    for shape in args.shapes:
        eager = bench_one(shape, False, args.steps, args.warmup, device, args.vocab)
        comp = bench_one(shape, True, args.steps, args.warmup, device, args.vocab)
        spec = SHAPES[shape]
        print(f"{shape:5s} ({eager['params'] / 1e6:.1f}M params, batch {spec['batch']}): "
              f"eager {eager['tok_s']:,.0f} tok/s ({eager['flops'] / 1e9:.1f} GFLOP/s, MFU {100 * eager['mfu']:.1f}%) | "
              f"compile {comp['tok_s']:,.0f} tok/s (first step {comp['first_step_s']:.1f} s) | "
              f"compile/eager = {comp['tok_s'] / eager['tok_s']:.2f}x")


if __name__ == "__main__":
    main()
