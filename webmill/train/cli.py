"""The ``train`` console script: ``train pretrain``, ``sample``, ``eval``, ``export-hf``, ``report``.

Multi-GPU / multi-node: ``torchrun --nproc_per_node 8 -m webmill.train.cli pretrain ...``
(see ``docs/training.md``). Errors the user can fix print ``error: ...`` and exit with code 2.
"""

from __future__ import annotations

import functools
import sys
import typer

from webmill.errors import UserError
from webmill.train.config import TrainConfig, config_defaults

app = typer.Typer(
    help="Pretrain a GPT on webmill token shards, sample from it, evaluate it (loss, bits per byte, tasks), "
         "export it to Hugging Face.",
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


_D = config_defaults()  # every default below is TrainConfig's (webmill/train/config.py)


@app.command("pretrain")
@_user_errors
def pretrain_cmd(
    shards: str = typer.Option(..., "--shards", metavar="DIR", help="Token shard directory (manifest.json + "
                               "shard-*.parquet) from `curate tokenize`, local or an fsspec URL (s3://...: copied "
                               "to $WEBMILL_CACHE/shards/, each file checked by sha256). Validated with check_shards "
                               "before training."),
    out: str = typer.Option(..., "--out", "-o", metavar="DIR", help="Run directory, local or an fsspec URL: "
                            "metrics.jsonl, config.json, checkpoints/step-*.pt, tensorboard/ (if installed; for a "
                            "URL metrics.jsonl is staged locally and published at checkpoints, evals and the end, "
                            "TensorBoard stays local)."),
    preset: str = typer.Option(_D["preset"], help="Architecture: 'tiny' (GPT-2 style, 4 layers/4 heads/256 wide/"
                               "context 256: the CPU default), 'gpt2-124m' (12/12/768/1024, LayerNorm, learned "
                               "positions, GELU, tied embeddings) or 'modern' (RoPE, RMSNorm, QK-norm, ReLU², "
                               "untied head; 12/12/768/1024). Size flags below override the preset's."),
    n_layer: int = typer.Option(_D["n_layer"], help="Transformer blocks (default: the preset's)."),
    n_head: int = typer.Option(_D["n_head"], help="Attention heads; must divide --n-embd (default: the preset's)."),
    n_embd: int = typer.Option(_D["n_embd"], help="Model width (default: the preset's)."),
    block_size: int = typer.Option(_D["block_size"], help="Context length T in tokens (default: the preset's)."),
    mlp: str = typer.Option(_D["mlp"], help="MLP: gelu, relu2 or swiglu (default: the preset's)."),
    vocab_size: int = typer.Option(_D["vocab_size"], help="Model vocabulary (default: the manifest's; may be "
                                   "larger, never smaller)."),
    dropout: float = typer.Option(_D["dropout"], help="Dropout probability (0 for pretraining)."),
    micro_batch: int = typer.Option(_D["micro_batch"], help="Sequences per micro-batch per process (B)."),
    batch_tokens: int = typer.Option(_D["batch_tokens"], help="Tokens per optimizer step; must be a multiple of "
                                     "micro_batch × block_size × processes; the quotient is the number of "
                                     "gradient-accumulation steps (default: one micro-batch per process)."),
    max_steps: int = typer.Option(_D["max_steps"], help="Optimizer steps of the run; the LR schedule ends here."),
    stop_at: int = typer.Option(_D["stop_at"], help="Stop after this step and save a checkpoint, as if "
                                "interrupted (the schedule still spans --max-steps); continue later with --resume "
                                "(default: run to --max-steps)."),
    lr: float = typer.Option(_D["lr"], help="Peak learning rate (AdamW)."),
    min_lr_ratio: float = typer.Option(_D["min_lr_ratio"], help="Final LR as a fraction of --lr."),
    warmup_steps: int = typer.Option(_D["warmup_steps"], help="Linear warmup steps."),
    schedule: str = typer.Option(_D["schedule"], help="LR schedule after warmup: cosine, wsd "
                                 "(warmup-stable-decay) or constant."),
    decay_frac: float = typer.Option(_D["decay_frac"], help="wsd only: fraction of --max-steps spent decaying "
                                     "to the final LR."),
    weight_decay: float = typer.Option(_D["weight_decay"], help="AdamW weight decay, applied to 2-D weights only."),
    beta1: float = typer.Option(_D["beta1"], help="AdamW beta1."),
    beta2: float = typer.Option(_D["beta2"], help="AdamW beta2."),
    grad_clip: float = typer.Option(_D["grad_clip"], help="Clip the global gradient norm to this (0 disables)."),
    device: str = typer.Option(_D["device"], help="auto (cuda:LOCAL_RANK if a GPU exists, else cpu), cpu or cuda."),
    dtype: str = typer.Option(_D["dtype"], help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16."),
    compile: bool = typer.Option(_D["compile"], "--compile/--no-compile", help="torch.compile the model (slow "
                                 "first step)."),
    seed: int = typer.Option(_D["seed"], help="Seed of the init, the data order (with the epoch) and the samples."),
    eval_every: int = typer.Option(_D["eval_every"], help="Val loss every N steps (and at the end); 0 disables."),
    val_tokens: int = typer.Option(_D["val_tokens"], help="Fixed token budget of each val evaluation (first "
                                   "tokens of the val split)."),
    sample_every: int = typer.Option(_D["sample_every"], help="Print a sample for each prompt every N steps; "
                                     "0 disables."),
    sample_tokens: int = typer.Option(_D["sample_tokens"], help="Tokens generated per sample during training."),
    sample_prompt: list[str] = typer.Option(None, "--sample-prompt", help="Fixed prompt for samples; repeat "
                                            "for several (default: " + " and ".join(map(repr, _D["sample_prompts"]))
                                            + ")."),
    tokenizer: str = typer.Option(_D["tokenizer"], help="Tokenizer name or directory for samples (default: the "
                                  "manifest's name; samples are shown as ids if it cannot be loaded)."),
    ckpt_every: int = typer.Option(_D["ckpt_every"], help="Checkpoint every N steps (and at the end); 0: only "
                                   "at the end."),
    keep_checkpoints: int = typer.Option(_D["keep_checkpoints"], help="Keep the newest K checkpoints."),
    resume: bool = typer.Option(_D["resume"], "--resume", help="Continue the run in --out from its newest "
                                "checkpoint (model, optimizer, step, data cursor, RNG states)."),
    verify_tokens: bool = typer.Option(_D["verify_tokens"], "--verify-tokens/--quick-check", help="Read and check "
                                       "all token data at start (sha256, EOT placement) or only manifest and "
                                       "footers."),
    tensorboard: bool = typer.Option(_D["tensorboard"], "--tensorboard/--no-tensorboard", help="Also log to "
                                     "RUN/tensorboard when the tensorboard package is installed."),
    peak_flops: float = typer.Option(_D["peak_flops"], help="Peak FLOP/s of one device, to print MFU (model "
                                     "FLOP/s utilisation) per step (default: looked up from the CUDA device name; "
                                     "none on CPU or unknown GPUs, so no MFU; 0: no MFU)."),
    quiet: bool = typer.Option(_D["quiet"], "--quiet", help="Do not print per-step lines (metrics.jsonl is still "
                               "written)."),
) -> None:
    """Pretrain a GPT on token shards; prints loss every step, writes RUN/metrics.jsonl."""
    from webmill.train.loop import train

    opts = {k: v for k, v in locals().items() if k in _D}  # every option but --sample-prompt
    cfg = TrainConfig(shards=shards, out=out, **opts)
    if sample_prompt:
        cfg.sample_prompts = list(sample_prompt)
    train(cfg)


@app.command("sample")
@_user_errors
def sample_cmd(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", metavar="PATH", help="A RUN/checkpoints/step-*.pt "
                                   "file or a run directory RUN (its newest checkpoint); a local path or an fsspec "
                                   "URL."),
    prompt: list[str] = typer.Option(None, "--prompt", "-p", help="Prompt text; repeat for several (default: one "
                                 "unconditional sample from the EOT token)."),
    prompt_ids: str = typer.Option(None, help="Prompt as space-separated token ids (when no tokenizer loads)."),
    max_tokens: int = typer.Option(64, help="Tokens to generate per prompt."),
    temperature: float = typer.Option(1.0, help="Sampling temperature; 0 = greedy."),
    greedy: bool = typer.Option(False, "--greedy", help="Same as --temperature 0."),
    top_k: int = typer.Option(None, help="Sample from the k most likely tokens only (default: all)."),
    top_p: float = typer.Option(None, help="Nucleus sampling: smallest set of tokens with probability ≥ p "
                                "(default: off)."),
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
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", metavar="PATH", help="A RUN/checkpoints/step-*.pt "
                                   "file or a run directory RUN (its newest checkpoint), local or an fsspec URL. "
                                   "Must be the GPT-2 architecture (presets tiny / gpt2-124m)."),
    out: str = typer.Option(..., "--out", "-o", metavar="DIR", help="Local output directory for config.json, "
                            "model.safetensors and (when the tokenizer converts) tokenizer.json."),
    tokenizer: str = typer.Option(None, help="Tokenizer name or directory to convert (default: the checkpoint's)."),
) -> None:
    """Export to a Hugging Face GPT2LMHeadModel directory (for lm-evaluation-harness)."""
    from webmill.train.export_hf import export_hf

    res = export_hf(checkpoint, out, tokenizer)
    typer.echo(f"wrote {res['out_dir']} ({res['params'] / 1e6:.2f}M params; tokenizer "
               f"{'written' if res['tokenizer'] else 'not written'})")
    if res["note"]:
        typer.echo(f"note: {res['note']}", err=True)


@app.command("report")
@_user_errors
def report_cmd(run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="Run directory of `train pretrain` "
                                             "(holds metrics.jsonl), local or an fsspec URL.")) -> None:
    """Write RUN_DIR/report/report.html with loss, val-loss, lr and tokens/s curves."""
    from webmill.train.report import write_train_report

    typer.echo(f"report: {write_train_report(run_dir)}")


@app.command("eval")
@_user_errors
def eval_cmd(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", metavar="RUN_OR_CKPT", help="A run directory (its "
                                   "newest checkpoint; every one with --all) or a RUN/checkpoints/step-*.pt file, "
                                   "local or an fsspec URL. Results are appended to RUN/eval.jsonl."),
    shards: str = typer.Option(None, "--shards", metavar="DIR", help="Token shard directory to evaluate on (its "
                               "tokenizer must be the checkpoint's), local or an fsspec URL."),
    split: str = typer.Option("val", help="Shard split: val or train."),
    text: list[str] = typer.Option(None, "--text", metavar="FILE", help="Raw text to evaluate on, tokenized with "
                                   "the checkpoint's tokenizer: .txt (one document), .jsonl (\"text\" per line), "
                                   ".parquet ('text' column) or a directory of them; repeat for several."),
    max_tokens: int = typer.Option(None, help="Predicted tokens evaluated (the first of the data; default "
                                   "262,144). 0: all."),
    all_checkpoints: bool = typer.Option(False, "--all", help="Evaluate every checkpoint of the run in step "
                                         "order (the curve), on the same tokens."),
    tasks: list[str] = typer.Option(None, "--tasks", metavar="FILE", help="Multiple-choice task file (JSONL: "
                                    "context, choices, label); repeat for several. Accuracy and normalized "
                                    "accuracy per task."),
    batch_size: int = typer.Option(None, help="Windows per forward pass (default: logits kept under 128 MiB)."),
    tokenizer: str = typer.Option(None, help="Tokenizer name or directory (default: the checkpoint's)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Loss and bits per byte of checkpoints on token shards or raw text (+ multiple-choice tasks)."""
    from webmill.train.evaluate import DEFAULT_MAX_TOKENS, EVAL_LOG, evaluate_run, run_dir_of

    if (shards is None) == (not text):
        raise UserError("give exactly one of --shards DIR or --text FILE (repeatable)")
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    header = False

    def show(r: dict) -> None:
        nonlocal header
        if not header:
            typer.echo(f"data {r['data']} ({r['split'] or 'text'}, {r['documents']:,} documents, sha {r['data_sha']})")
            typer.echo(f"{'step':>8} {'tokens':>10} {'bytes':>11} {'loss':>8} {'bpb':>7}  tasks (acc / acc_norm)")
            header = True
        bpb = f"{r['bpb']:7.4f}" if r["bpb"] is not None else f"{'-':>7}"
        nbytes = f"{r['bytes']:11,}" if r["bytes"] is not None else f"{'-':>11}"
        tk = "  ".join(f"{t['task']} {t['acc']:.3f}/{t['acc_norm']:.3f}" for t in r["tasks"])
        typer.echo(f"{r['step']:8d} {r['tokens']:10,} {nbytes} {r['loss']:8.4f} {bpb}  {tk}")
        if r.get("note"):
            typer.echo(f"note: {r['note']}; no bits per byte", err=True)

    evaluate_run(checkpoint, shards if shards is not None else list(text), every=all_checkpoints, say=show,
                 kind="shards" if shards is not None else "text", split=split, max_tokens=max_tokens or None,
                 batch_size=batch_size, device=device, tokenizer=tokenizer, tasks=list(tasks or []))
    typer.echo(f"appended to {run_dir_of(checkpoint).uri(EVAL_LOG)}")


def main() -> None:  # pragma: no cover - console entry
    """Entry point for ``python -m webmill.train.cli``."""
    app()


if __name__ == "__main__":
    sys.exit(main())
