"""Training throughput of webmill.train's GPT: eager vs torch.compile, two shapes.

Times full optimizer steps (forward, backward, AdamW) on random tokens, so data loading is
excluded. For each shape it builds the eager model (the reference) and a ``torch.compile``d twin,
warms both up, then times their steps in alternation, so both see the same machine load, and
prints tokens/s of each, the median per-pair ratio, achieved FLOP/s from
``GPT.estimate_flops_per_token`` and MFU when the device is in the peak-FLOPs table or
``--peak-flops`` is given (not printed otherwise, e.g. on CPU).

    python bench/train.py                      # both shapes, 4 timed step pairs each (CPU: ~15 min)
    python bench/train.py --shapes small --steps 10
    python bench/train.py --device cuda        # bf16 autocast, fused AdamW
    python bench/train.py --peak-flops 2e12    # MFU against a known CPU peak

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


class Runner:
    """One model + AdamW for a shape, eager or compiled; :meth:`step` times one optimizer step."""

    def __init__(self, shape: str, compile: bool, device: torch.device, vocab: int):
        spec = SHAPES[shape]
        torch.manual_seed(0)
        self.model = GPT(make_config(spec["preset"], vocab, **spec["overrides"])).to(device)
        self.opt = self.model.configure_optimizer(3e-4, 0.1, (0.9, 0.95), 1e-8, device.type)
        self.fwd = torch.compile(self.model) if compile else self.model
        self.B, self.T, self.device = spec["batch"], self.model.config.block_size, device
        self.x = torch.randint(0, vocab, (self.B, self.T + 1), device=device)
        self.amp = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda"
                    else contextlib.nullcontext())

    def step(self) -> float:
        t0 = time.perf_counter()
        with self.amp:
            _, loss = self.fwd(self.x[:, :-1], self.x[:, 1:])
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        loss.item()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def bench_shape(shape: str, steps: int, warmup: int, device: torch.device, vocab: int,
                peak: float | None = None) -> dict:
    """Eager and compiled runners, warmed up, then timed in alternation (same load for both)."""
    eager, comp = Runner(shape, False, device, vocab), Runner(shape, True, device, vocab)
    first = [comp.step() for _ in range(warmup)][0]  # compilation happens in the first step
    for _ in range(warmup):
        eager.step()
    te, tc = [], []
    for _ in range(steps):
        te.append(eager.step())
        tc.append(comp.step())
    tokens = eager.B * eager.T
    flops_per_token = eager.model.estimate_flops_per_token(eager.T)
    peak = peak or peak_flops(device)
    e_tok = tokens / statistics.median(te)
    return {
        "params": eager.model.num_params(), "batch": eager.B, "eager_tok_s": e_tok,
        "compile_tok_s": tokens / statistics.median(tc), "first_step_s": first,
        "ratio": statistics.median(a / b for a, b in zip(te, tc)),
        "flops": flops_per_token * e_tok, "mfu": flops_per_token * e_tok / peak if peak else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["gpt2", "small"], choices=sorted(SHAPES))
    ap.add_argument("--steps", type=int, default=4, help="timed step pairs (eager, compiled) per shape")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation happens here)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--peak-flops", type=float, default=None, help="peak FLOP/s of the device for MFU "
                    "(default: from the CUDA device name; none on CPU)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} | device {device} | threads {torch.get_num_threads()} | "
          f"{args.warmup} warmup + {args.steps} timed steps (median)")
    for shape in args.shapes:
        r = bench_shape(shape, args.steps, args.warmup, device, args.vocab, args.peak_flops)
        mfu = f", MFU {100 * r['mfu']:.1f}%" if r["mfu"] is not None else ""
        print(f"{shape:5s} ({r['params'] / 1e6:.1f}M params, batch {r['batch']}): "
              f"eager {r['eager_tok_s']:,.0f} tok/s ({r['flops'] / 1e9:.1f} GFLOP/s{mfu}) | "
              f"compile {r['compile_tok_s']:,.0f} tok/s (first step {r['first_step_s']:.0f} s) | "
              f"compile/eager = {r['ratio']:.2f}x (median of {args.steps} alternating step pairs)")


if __name__ == "__main__":
    main()
