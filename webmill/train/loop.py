"""The pretraining loop (after nanoGPT's ``train.py``), single process or DDP under torchrun.

One optimizer step processes ``batch_tokens = micro_batch × block_size × world_size × accum``
tokens: each rank runs ``accum`` micro-batches, dividing each loss by ``accum`` so the summed
gradient is the mean over the step's tokens, and DDP averages over ranks. The data layout
(:mod:`webmill.train.data`) gives micro-step ``a`` of rank ``r`` the stream ``r·accum + a``, so 1
process with accumulation N and N processes with accumulation 1 compute the same step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist

from webmill.errors import UserError
from webmill.storage import Storage, as_storage
from webmill.train.checkpoint import (
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from webmill.train.config import TrainConfig, peak_flops_for_name
from webmill.train.cpu_speed import bf16_capable, reuse_freed_memory
from webmill.train.data import ShardLoader, load_val_batches
from webmill.train.metrics import MetricsLogger
from webmill.train.model import GPT, GPTConfig, make_config
from webmill.train.sample import generate, load_tokenizer, tokenizer_source


def peak_flops(device: torch.device) -> float | None:
    """Peak dense bf16 FLOP/s of one device (:data:`~webmill.train.config.PEAK_FLOPS_BF16`);
    ``None`` on CPU and on GPUs missing from the table (no MFU is reported then)."""
    if device.type != "cuda":
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))


def lr_at(step: int, max_lr: float, min_lr: float, warmup: int, total: int,
          schedule: str = "cosine", decay_frac: float = 0.2) -> float:
    """Learning rate at optimizer step ``step`` (0-based).

    Linear warmup ``max_lr·(step+1)/warmup`` for ``step < warmup`` (nanoGPT), then

    * ``"cosine"``: ``min_lr + ½(1 + cos(π·r))(max_lr − min_lr)``, ``r`` going from 0 at
      ``warmup`` to 1 at ``total`` (Loshchilov & Hutter 2017, SGDR, without restarts);
    * ``"wsd"`` (warmup-stable-decay, Hu et al. 2024, MiniCPM §4): ``max_lr`` until
      ``total·(1 − decay_frac)``, then linear to ``min_lr`` at ``total``;
    * ``"constant"``: ``max_lr``.

    Steps ≥ ``total`` get ``min_lr`` (constant: ``max_lr``). Returns a float.

    Raises:
        ValueError: unknown schedule.
    """
    if schedule not in ("cosine", "wsd", "constant"):
        raise ValueError(f"schedule must be cosine, wsd or constant, got {schedule!r}")
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if schedule == "constant":
        return max_lr
    if step >= total:
        return min_lr
    if schedule == "cosine":
        r = (step - warmup) / max(total - warmup, 1)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * r)) * (max_lr - min_lr)
    decay_start = max(int(total * (1.0 - decay_frac)), warmup)
    if step < decay_start:
        return max_lr
    return max_lr + (min_lr - max_lr) * (step - decay_start) / max(total - decay_start, 1)


@dataclass
class Dist:
    """Distributed context read from torchrun's env vars (RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def master(self) -> bool:
        return self.rank == 0


def resolve_device(flag: str) -> str:
    """``"auto"`` → ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other value as given."""
    if flag == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return flag


def setup_distributed(device_flag: str) -> tuple[Dist, torch.device]:
    """Init the process group when WORLD_SIZE > 1 (NCCL on GPU, gloo on CPU) and pick the device.

    Returns ``(Dist, device)``; with DDP each process uses ``cuda:LOCAL_RANK``.

    Raises:
        UserError: ``--device cuda`` without a GPU, or bad torchrun variables.
    """
    try:
        d = Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                 int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError as e:
        raise UserError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({e}); launch with torchrun") from e
    want = resolve_device(device_flag)
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda but torch sees no GPU; use --device cpu")
    if want == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device(want)
    if d.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if device.type == "cpu":  # share the cores between the local processes
            local = int(os.environ.get("LOCAL_WORLD_SIZE", str(d.world_size)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    return d, device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _local_shards(cfg: TrainConfig, d: Dist, say) -> str:
    """The local directory to read ``cfg.shards`` from (:func:`~webmill.train.shard_cache.local_shards`:
    itself, or the verified cache copy of a URL). Under DDP the first process of each node fills
    the node's cache while the others wait, then every process verifies and uses it."""
    if as_storage(cfg.shards).is_local:
        return cfg.shards
    from webmill.train.shard_cache import local_shards

    if d.enabled and d.local_rank != 0:
        dist.barrier()
    path = local_shards(cfg.shards, say=say)
    if d.enabled and d.local_rank == 0:
        dist.barrier()
    return path


def _check_shards(shards: str, cfg: TrainConfig, d: Dist) -> dict:
    from webmill.tokenize.shards import check_shards

    # Rank 0 reads everything; the others check the manifest and footers only.
    return check_shards(shards, verify_tokens=cfg.verify_tokens and d.master)


def _resolve_resume(cfg: TrainConfig, run: Storage) -> dict | None:
    latest = latest_checkpoint(run)
    if cfg.resume:
        if latest is None:
            raise UserError(f"--resume: {run.uri()} has no checkpoints/step-*.pt; drop --resume to start a new run")
        return load_checkpoint(latest)
    if latest is not None:
        raise UserError(f"{run.uri()} already holds checkpoints ({latest.rsplit('/', 1)[-1]}); pass --resume to "
                        "continue that run, or choose another --out")
    return None


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, device, autocast, d: Dist) -> float | None:
    """Mean cross-entropy (nats/token) over the fixed val batches of all ranks; None if none.

    ``model`` is the bare model (not DDP-wrapped: ranks may hold different numbers of batches).
    """
    was = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, batches
    for x, y in batches:
        with autocast():
            _, loss = model(x.to(device), y.to(device), return_logits=False)
        total += torch.tensor([loss.item(), 1.0], dtype=torch.float64, device=device)
    if d.enabled:
        dist.all_reduce(total)
    model.train(was)
    return None if total[1] == 0 else float(total[0] / total[1])


def train(cfg: TrainConfig) -> dict:
    """Run pretraining as configured; return a summary dict.

    Returns:
        ``{"step", "train_loss" (last), "val_loss" (last or None), "checkpoint" (path or None),
        "tokens_per_step", "accum", "params"}``.

    ``cfg.shards`` and ``cfg.out`` may be fsspec URLs: URL shards are read from a sha256-checked
    local copy (:mod:`webmill.train.shard_cache`); for a URL run directory checkpoints and
    ``config.json`` are published through :class:`~webmill.storage.Storage` and the log is
    staged locally (:mod:`webmill.train.metrics`).

    Raises:
        UserError: invalid shards (from ``check_shards``, or a remote file that does not match its
            manifest's sha256), a manifest vocabulary larger than the model's, a batch that does not divide into micro-batches, or resume mismatches.
    """
    d, device = setup_distributed(cfg.device)
    # CPU: large activations are reused from the heap instead of page-faulted in every step
    with reuse_freed_memory(device.type == "cpu"):
        return _train(cfg, d, device)


def _train(cfg: TrainConfig, d: Dist, device: torch.device) -> dict:
    """The body of :func:`train` once the process group and device are set up."""
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals slow CPU training ~2x (packages.md)
    if cfg.dtype not in ("auto", "fp32", "bf16"):
        raise UserError(f"--dtype must be auto, fp32 or bf16, got {cfg.dtype!r}")
    if cfg.schedule not in ("cosine", "wsd", "constant"):
        raise UserError(f"--schedule must be cosine, wsd or constant, got {cfg.schedule!r}")
    use_bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda")
    if use_bf16:
        def autocast():
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    run = as_storage(cfg.out)
    say = print if (d.master and not cfg.quiet) else (lambda *a, **k: None)

    shards = _local_shards(cfg, d, say)
    manifest = _check_shards(shards, cfg, d)
    tok = dict(manifest["tokenizer"])
    if tok.get("path"):  # a trained tokenizer shipped with the shards: keep its absolute path
        p = as_storage(shards).local_path(tok["path"])
        tok["path"] = str(p.resolve()) if p is not None and p.is_dir() else None
    if d.master:
        run.sweep_temps("checkpoints")  # left by a process killed mid-write
    ckpt = _resolve_resume(cfg, run)

    # ---- model ---------------------------------------------------------------------------
    if ckpt is not None:
        mcfg = GPTConfig.from_dict(ckpt["model_config"])
        for k in ("n_layer", "n_head", "n_embd", "block_size", "mlp", "vocab_size"):
            if getattr(cfg, k) is not None and getattr(cfg, k) != getattr(mcfg, k):
                raise UserError(f"--resume: {ckpt['path']} has {k}={getattr(mcfg, k)!r} but --{k.replace('_', '-')} "
                                f"is {getattr(cfg, k)!r}; drop the flag (the checkpoint's model is used)")
        if ckpt.get("tokenizer", {}).get("ranks_sha256") != tok["ranks_sha256"]:
            raise UserError(f"{ckpt['path']}: trained with tokenizer {ckpt.get('tokenizer', {}).get('name')!r} "
                            f"but {cfg.shards} uses {tok['name']!r} (different ranks); resume on the same shards")
    else:
        try:
            mcfg = make_config(cfg.preset, cfg.vocab_size or tok["vocab_size"], n_layer=cfg.n_layer,
                               n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size,
                               mlp=cfg.mlp, dropout=cfg.dropout)
        except ValueError as e:
            raise UserError(f"bad model settings: {e}") from e
    if tok["vocab_size"] > mcfg.vocab_size:
        raise UserError(f"{cfg.shards}/manifest.json: tokenizer {tok['name']!r} has vocab_size {tok['vocab_size']} "
                        f"but the model's vocab_size is {mcfg.vocab_size}; drop --vocab-size (it defaults to the "
                        "manifest's) or use shards made with the model's tokenizer")
    T, B = mcfg.block_size, cfg.micro_batch
    per_micro = B * T * d.world_size
    batch_tokens = cfg.batch_tokens or per_micro
    if batch_tokens % per_micro:
        raise UserError(f"--batch-tokens {batch_tokens} is not a multiple of micro_batch × block_size × "
                        f"processes = {B} × {T} × {d.world_size} = {per_micro}")
    accum = batch_tokens // per_micro
    if cfg.max_steps <= 0 or cfg.warmup_steps < 0:
        raise UserError(f"--max-steps must be > 0 and --warmup-steps ≥ 0 (got {cfg.max_steps}, {cfg.warmup_steps})")

    _seed_everything(cfg.seed)  # identical init on every rank
    model = GPT(mcfg).to(device)
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), cfg.eps, device.type)
    loader = ShardLoader(shards, manifest, B, T, rank=d.rank, world_size=d.world_size,
                         streams_per_rank=accum, seed=cfg.seed)
    val_batches = load_val_batches(shards, manifest, B, T, cfg.val_tokens, d.rank, d.world_size)
    start = 0
    if ckpt is not None:
        if ckpt["world_size"] != d.world_size:
            raise UserError(f"{ckpt['path']}: saved with {ckpt['world_size']} processes, now {d.world_size}; "
                            "resume with the same number of processes")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["loader"][d.rank])
        set_rng_state(ckpt["rng"][d.rank])
        start = int(ckpt["step"])
        say(f"resumed {ckpt['path']} at step {start}")
    else:
        _seed_everything(cfg.seed + d.rank)  # per-rank dropout streams
    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # RoPE tables are constant buffers: no need to broadcast them every forward.
        model = DDP(model, device_ids=[d.local_rank] if device.type == "cuda" else None,
                    broadcast_buffers=False)

    tokenizer, warn = load_tokenizer(cfg.tokenizer or tokenizer_source(tok, shards), tok)
    if warn:
        say(f"note: {warn}")
    flops_per_token = raw_model.estimate_flops_per_token(T)
    peak = cfg.peak_flops if cfg.peak_flops is not None else peak_flops(device)
    if peak is not None and peak < 0:
        raise UserError(f"--peak-flops must be ≥ 0 (FLOP/s of one device, e.g. 989e12; 0: no MFU), got {peak}")
    peak = peak or None  # 0: MFU not reported
    logger = MetricsLogger(run, cfg.tensorboard, d.master, resume_step=start if ckpt is not None else None,
                           say=say)
    say(f"model {raw_model.num_params() / 1e6:.2f}M params ({mcfg.n_layer}L {mcfg.n_head}H {mcfg.n_embd}C, "
        f"T={T}, vocab {mcfg.vocab_size}) | {batch_tokens:,} tokens/step = {B}×{T}×{d.world_size} procs×"
        f"{accum} accum | {device} {'bf16' if use_bf16 else 'fp32'} | train "
        f"{manifest['splits']['train']['num_tokens']:,} tokens, val batches {len(val_batches)}"
        + (f" | MFU against {peak / 1e12:,.0f} TFLOP/s per device" if peak else ""))
    if device.type == "cpu" and not use_bf16 and bf16_capable():
        say("note: this CPU multiplies bf16 natively (AVX512-BF16/AMX); --dtype bf16 may be faster (fp32 stays "
            "the default: not measured on such a CPU)")
    if cfg.eval_every > 0 and not val_batches:
        say(f"note: no val loss: the shards have no val split or fewer than --val-tokens ≥ {B * T} val tokens")
    if d.master:
        run.write_text("config.json", json.dumps({"train": asdict(cfg), "model": mcfg.to_dict(),
                                                  "accum": accum, "batch_tokens": batch_tokens}, indent=2))

    def save(step: int) -> str | None:
        loader_states, rng_states = [loader.state_dict()], [get_rng_state()]
        if d.enabled:
            gathered = [None] * d.world_size
            dist.all_gather_object(gathered, (loader_states[0], rng_states[0]))
            loader_states, rng_states = [g[0] for g in gathered], [g[1] for g in gathered]
        path = None
        if d.master:
            path = save_checkpoint(run, step, {
                "model": raw_model.state_dict(), "model_config": mcfg.to_dict(),
                "optimizer": optimizer.state_dict(), "step": step, "loader": loader_states,
                "rng": rng_states, "train_config": asdict(cfg), "tokenizer": tok,
                "world_size": d.world_size, "accum": accum,
            }, keep=cfg.keep_checkpoints)
            say(f"saved {path}")
        if d.enabled:
            dist.barrier()
        return path

    min_lr = cfg.lr * cfg.min_lr_ratio
    last_train = last_val = last_ckpt = None
    stop = min(cfg.stop_at or cfg.max_steps, cfg.max_steps)
    step = start
    for step in range(start, stop + 1):
        last = step == stop
        if cfg.eval_every > 0 and (step % cfg.eval_every == 0 or last) and val_batches:
            last_val = evaluate(raw_model, val_batches, device, autocast, d)
            say(f"step {step:5d} | val loss {last_val:.4f}")
            logger.log({"type": "val", "step": step, "val_loss": last_val,
                        "val_tokens": len(val_batches) * d.world_size * B * T})
            logger.publish()  # a remote run directory gets the log at every eval
        if d.master and cfg.sample_every > 0 and (step % cfg.sample_every == 0 or last):
            # without a tokenizer, sample once from the EOT token (unconditional)
            prompts = cfg.sample_prompts if tokenizer.enc is not None else ["<|endoftext|>"]
            for prompt in prompts:
                ids = (tokenizer.encode(prompt) if tokenizer.enc is not None else []) or [tok["eot_id"]]
                new = generate(raw_model, ids, cfg.sample_tokens, temperature=cfg.sample_temperature,
                               top_k=cfg.sample_top_k, seed=cfg.seed, eot_id=tok["eot_id"])
                text = tokenizer.decode(new)
                say(f"sample | {prompt!r} → {text!r}")
                logger.log({"type": "sample", "step": step, "prompt": prompt, "text": text})
        if step > start and (last or (cfg.ckpt_every > 0 and step % cfg.ckpt_every == 0)):
            last_ckpt = save(step)
            logger.publish()
        if last:
            break

        # ---- one optimizer step ------------------------------------------------------------
        t0 = time.perf_counter()
        lr = lr_at(step, cfg.lr, min_lr, cfg.warmup_steps, cfg.max_steps, cfg.schedule, cfg.decay_frac)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for micro in range(accum):
            x, y = loader.next_batch(micro)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if d.enabled:  # all-reduce gradients only on the last micro-step (nanoGPT)
                model.require_backward_grad_sync = micro == accum - 1
            with autocast():
                _, loss = model(x, y, return_logits=False)  # fp32 CPU: fused head + loss (model.py)
            loss = loss / accum
            loss_sum += loss.detach()
            loss.backward()
        if d.enabled:
            dist.all_reduce(loss_sum)
            loss_sum /= d.world_size
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = float(loss_sum)  # syncs the device
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        tok_s = batch_tokens / dt
        # model FLOP/s utilisation, only where one device's peak is known (None: not reported)
        mfu = flops_per_token * tok_s / (peak * d.world_size) if peak else None
        last_train = train_loss
        say(f"step {step + 1:5d}/{cfg.max_steps} | loss {train_loss:.4f} | lr {lr:.2e} | gnorm {grad_norm:.3f} | "
            f"{dt * 1000:.0f} ms | {tok_s:,.0f} tok/s" + (f" | MFU {100 * mfu:.1f}%" if mfu is not None else ""))
        logger.log({"type": "train", "step": step + 1, "loss": train_loss, "lr": lr, "grad_norm": grad_norm,
                    "ms": dt * 1000, "tokens_per_s": tok_s, "mfu": mfu, "tokens": (step + 1) * batch_tokens})
        if not math.isfinite(train_loss):
            logger.close()
            raise UserError(f"loss became {train_loss} at step {step + 1}; lower --lr or check the data")
    logger.close()
    if d.enabled:
        dist.barrier()
    return {"step": step, "train_loss": last_train, "val_loss": last_val,
            "checkpoint": str(last_ckpt) if last_ckpt else None, "tokens_per_step": batch_tokens,
            "accum": accum, "params": raw_model.num_params()}
