"""The ``train`` console script: ``train pretrain``, ``sample``, ``export-hf``, ``report``.

Multi-GPU / multi-node: ``torchrun --nproc_per_node 8 -m webmill.train.cli pretrain ...``
(see ``docs/training.md``). Errors the user can fix print ``error: ...`` and exit with code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer

from webmill.errors import UserError

app = typer.Typer(
    help="Pretrain a GPT on webmill token shards, sample from it, export it to Hugging Face.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _user_errors(fn):
    """Turn UserError into ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command("pretrain")
@_user_errors
def pretrain_cmd(
    shards: Path = typer.Option(..., "--shards", help="Token shard directory (manifest.json + shard-*.parquet) "
                                "from `curate tokenize`. Validated with check_shards before training."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: metrics.jsonl, config.json, "
                             "checkpoints/step-*.pt, tensorboard/ (if installed)."),
    preset: str = typer.Option("tiny", help="Architecture: 'tiny' (GPT-2 style, 4 layers/4 heads/256 wide/"
                               "context 256: the CPU default), 'gpt2-124m' (12/12/768/1024, LayerNorm, learned "
                               "positions, GELU, tied embeddings) or 'modern' (RoPE, RMSNorm, QK-norm, ReLU², "
                               "untied head; 12/12/768/1024). Size flags below override the preset's."),
    n_layer: int = typer.Option(None, help="Transformer blocks (default: the preset's)."),
    n_head: int = typer.Option(None, help="Attention heads; must divide --n-embd (default: the preset's)."),
    n_embd: int = typer.Option(None, help="Model width (default: the preset's)."),
    block_size: int = typer.Option(None, help="Context length T in tokens (default: the preset's)."),
    mlp: str = typer.Option(None, help="MLP: gelu, relu2 or swiglu (default: the preset's)."),
    vocab_size: int = typer.Option(None, help="Model vocabulary (default: the manifest's; may be larger, "
                                   "never smaller)."),
    dropout: float = typer.Option(0.0, help="Dropout probability (0 for pretraining)."),
    micro_batch: int = typer.Option(8, help="Sequences per micro-batch per process (B)."),
    batch_tokens: int = typer.Option(None, help="Tokens per optimizer step; must be a multiple of "
                                     "micro_batch × block_size × processes; the quotient is the number of "
                                     "gradient-accumulation steps (default: one micro-batch per process)."),
    max_steps: int = typer.Option(200, help="Optimizer steps of the run; the LR schedule ends here."),
    stop_at: int = typer.Option(None, help="Stop after this step and save a checkpoint, as if interrupted "
                                "(the schedule still spans --max-steps); continue later with --resume."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (AdamW)."),
    min_lr_ratio: float = typer.Option(0.1, help="Final LR as a fraction of --lr."),
    warmup_steps: int = typer.Option(20, help="Linear warmup steps."),
    schedule: str = typer.Option("cosine", help="LR schedule after warmup: cosine, wsd (warmup-stable-decay) "
                                 "or constant."),
    decay_frac: float = typer.Option(0.2, help="wsd only: fraction of --max-steps spent decaying to the final LR."),
    weight_decay: float = typer.Option(0.1, help="AdamW weight decay, applied to 2-D weights only."),
    beta1: float = typer.Option(0.9, help="AdamW beta1."),
    beta2: float = typer.Option(0.95, help="AdamW beta2."),
    grad_clip: float = typer.Option(1.0, help="Clip the global gradient norm to this (0 disables)."),
    device: str = typer.Option("auto", help="auto (cuda:LOCAL_RANK if a GPU exists, else cpu), cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16."),
    compile: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the model (slow first step)."),
    seed: int = typer.Option(1337, help="Seed of the init, the data order (with the epoch) and the samples."),
    eval_every: int = typer.Option(50, help="Val loss every N steps (and at the end); 0 disables."),
    val_tokens: int = typer.Option(32768, help="Fixed token budget of each val evaluation (first tokens of "
                                   "the val split)."),
    sample_every: int = typer.Option(20, help="Print a sample for each prompt every N steps; 0 disables."),
    sample_tokens: int = typer.Option(32, help="Tokens generated per sample during training."),
    sample_prompt: list[str] = typer.Option(None, "--sample-prompt", help="Fixed prompt for samples; repeat "
                                            "for several (default: two built-in prompts)."),
    tokenizer: str = typer.Option(None, help="Tokenizer name or directory for samples (default: the "
                                  "manifest's name; samples are shown as ids if it cannot be loaded)."),
    ckpt_every: int = typer.Option(100, help="Checkpoint every N steps (and at the end); 0: only at the end."),
    keep_checkpoints: int = typer.Option(3, help="Keep the newest K checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest checkpoint "
                                "(model, optimizer, step, data cursor, RNG states)."),
    verify_tokens: bool = typer.Option(True, "--verify-tokens/--quick-check", help="Read and check all token "
                                       "data at start (sha256, EOT placement) or only manifest and footers."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", help="Also log to RUN/tensorboard "
                                     "when the tensorboard package is installed."),
    peak_flops: float = typer.Option(None, help="Peak FLOP/s of one device for MFU (default: from the GPU "
                                     "name; 0 on CPU)."),
    quiet: bool = typer.Option(False, "--quiet", help="Do not print per-step lines (metrics.jsonl is still written)."),
) -> None:
    """Pretrain a GPT on token shards; prints loss every step, writes RUN/metrics.jsonl."""
    from webmill.train.loop import DEFAULT_PROMPTS, TrainConfig, train

    cfg = TrainConfig(
        shards=str(shards), out=str(out), preset=preset, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        block_size=block_size, mlp=mlp, vocab_size=vocab_size, dropout=dropout, micro_batch=micro_batch,
        batch_tokens=batch_tokens, max_steps=max_steps, stop_at=stop_at, lr=lr, min_lr_ratio=min_lr_ratio,
        warmup_steps=warmup_steps, schedule=schedule, decay_frac=decay_frac, weight_decay=weight_decay,
        beta1=beta1, beta2=beta2, grad_clip=grad_clip, device=device, dtype=dtype, compile=compile, seed=seed,
        eval_every=eval_every, val_tokens=val_tokens, sample_every=sample_every, sample_tokens=sample_tokens,
        sample_prompts=list(sample_prompt) if sample_prompt else list(DEFAULT_PROMPTS), tokenizer=tokenizer,
        ckpt_every=ckpt_every, keep_checkpoints=keep_checkpoints, resume=resume, verify_tokens=verify_tokens,
        tensorboard=tensorboard, peak_flops=peak_flops, quiet=quiet,
    )
    if schedule not in ("cosine", "wsd", "constant"):
        raise UserError(f"--schedule must be cosine, wsd or constant, got {schedule!r}")
    train(cfg)


@app.command("sample")
@_user_errors
def sample_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A checkpoints/step-*.pt file or a run "
                                    "directory (its newest checkpoint)."),
    prompt: list[str] = typer.Option(None, "--prompt", "-p", help="Prompt text; repeat for several."),
    prompt_ids: str = typer.Option(None, help="Prompt as space-separated token ids (when no tokenizer loads)."),
    max_tokens: int = typer.Option(64, help="Tokens to generate per prompt."),
    temperature: float = typer.Option(1.0, help="Sampling temperature; 0 = greedy."),
    greedy: bool = typer.Option(False, "--greedy", help="Same as --temperature 0."),
    top_k: int = typer.Option(None, help="Sample from the k most likely tokens only."),
    top_p: float = typer.Option(None, help="Nucleus sampling: smallest set of tokens with probability ≥ p."),
    repetition_penalty: float = typer.Option(1.0, help="> 1 penalises tokens already in the context (CTRL)."),
    seed: int = typer.Option(0, help="Seed of the sampler; the same seed gives the same text."),
    num_samples: int = typer.Option(1, help="Samples per prompt (seeds seed, seed+1, ...)."),
    stop_at_eot: bool = typer.Option(True, "--stop-at-eot/--no-stop-at-eot", help="Stop a sample at the EOT token."),
    tokenizer: str = typer.Option(None, help="Tokenizer name or directory (default: the one recorded in the "
                                  "checkpoint)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Generate text from a checkpoint."""
    from webmill.train.checkpoint import load_checkpoint
    from webmill.train.model import GPT, GPTConfig
    from webmill.train.sample import generate, load_tokenizer, tokenizer_source

    state = load_checkpoint(checkpoint, map_location="cpu")
    model = GPT(GPTConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    tok_info = state.get("tokenizer") or {}
    tok, warn = load_tokenizer(tokenizer or tokenizer_source(tok_info), tok_info or None)
    if warn:
        typer.echo(f"note: {warn}", err=True)
    prompts: list[tuple[str, list[int]]] = []
    if prompt_ids:
        try:
            ids = [int(t) for t in prompt_ids.replace(",", " ").split()]
        except ValueError as e:
            raise UserError(f"--prompt-ids must be integers separated by spaces, got {prompt_ids!r}") from e
        prompts.append((prompt_ids, ids))
    for p in prompt or []:
        prompts.append((p, tok.encode(p)))
    if not prompts:
        eot = tok_info.get("eot_id", 0)
        prompts.append(("<|endoftext|>", [eot]))
    V = model.config.vocab_size
    for text, ids in prompts:
        if not ids or max(ids) >= V or min(ids) < 0:
            raise UserError(f"prompt {text!r}: token ids must be non-empty and in [0, {V})")
        for i in range(num_samples):
            new = generate(model, ids, max_tokens, temperature=0.0 if greedy else temperature, top_k=top_k,
                           top_p=top_p, repetition_penalty=repetition_penalty, seed=seed + i,
                           eot_id=tok_info.get("eot_id") if stop_at_eot else None)
            typer.echo(f"--- {text!r} (seed {seed + i})")
            typer.echo(text + tok.decode(new) if tok.enc is not None else tok.decode(ids + new))


@app.command("export-hf")
@_user_errors
def export_hf_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A checkpoints/step-*.pt file or a run "
                                    "directory (its newest checkpoint). Must be the GPT-2 architecture "
                                    "(presets tiny / gpt2-124m)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for config.json, model.safetensors "
                             "and (when the tokenizer converts) tokenizer.json."),
    tokenizer: str = typer.Option(None, help="Tokenizer name or directory to convert (default: the checkpoint's)."),
) -> None:
    """Export to a Hugging Face GPT2LMHeadModel directory (for lm-evaluation-harness)."""
    from webmill.train.export_hf import export_hf

    res = export_hf(checkpoint, out, tokenizer)
    typer.echo(f"wrote {res['out_dir']} ({res['params'] / 1e6:.2f}M params; tokenizer "
               f"{'written' if res['tokenizer'] else 'not written'})")
    if res["note"]:
        typer.echo(f"note: {res['note']}", err=True)


# `train report RUN`: curves of metrics.jsonl as PNG + HTML (webmill/train/report.py).
from webmill.train.report import report_cmd  # noqa: E402

app.command("report")(report_cmd)


def main() -> None:  # pragma: no cover - console entry
    """Entry point for ``python -m webmill.train.cli``."""
    app()


if __name__ == "__main__":
    sys.exit(main())
