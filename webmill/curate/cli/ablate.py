"""``curate ablate``: data ablations (the work is in :mod:`webmill.ablate`; docs/ablations.md)."""

from __future__ import annotations

from typing import Optional

import typer

from webmill.curate.cli import app


@app.command()
def ablate(
    inputs: list[str] = typer.Argument(..., help="WARC/WET/ARC inputs, as curate run takes them."),
    recipe: list[str] = typer.Option(..., "-r", "--recipe", metavar="NAME=CONFIG.toml",
                                     help="A recipe: a name (letters a-z, digits, _ or -) and its pipeline "
                                     "config; give two or more."),
    out: str = typer.Option(..., "-o", "--out", help="Ablation directory: a local path or an fsspec URL."),
    tokens: int = typer.Option(..., help="Training tokens per recipe (the same budget for all; rounded up to "
                               "whole steps, a multiple of --eval-points)."),
    preset: str = typer.Option("tiny", help="Model architecture, as train pretrain --preset."),
    n_layer: Optional[int] = typer.Option(None, help="Transformer blocks (default: the preset's)."),
    n_head: Optional[int] = typer.Option(None, help="Attention heads (default: the preset's)."),
    n_embd: Optional[int] = typer.Option(None, help="Model width (default: the preset's)."),
    block_size: Optional[int] = typer.Option(None, help="Context length (default: the preset's)."),
    micro_batch: int = typer.Option(8, help="Sequences per step (tokens per step = this × context length)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: train pretrain's)."),
    warmup_steps: Optional[int] = typer.Option(None, help="Warmup steps (default: a tenth of the steps)."),
    seed: int = typer.Option(1337, help="Seed of the init and data order, the same for every recipe."),
    eval_points: int = typer.Option(4, help="Evenly spaced checkpoints evaluated per recipe."),
    heldout_fraction: float = typer.Option(0.1, help="Share of documents held out of every recipe (hash of "
                                           "the id) for the common eval set."),
    eval_bytes: int = typer.Option(1_000_000, help="Cap of the held-out eval set in UTF-8 bytes (documents in id "
                                   "order): every checkpoint is scored on all of it."),
    eval_text: Optional[list[str]] = typer.Option(None, "--eval-text", metavar="FILE",
                                                  help="Evaluate on these .txt/.jsonl/.parquet files instead "
                                                  "(nothing held out); repeatable."),
    tasks: Optional[list[str]] = typer.Option(None, "--tasks", metavar="FILE",
                                              help="Multiple-choice task JSONL (train eval --tasks); repeatable."),
    device: str = typer.Option("auto", help="auto (cuda when present), cpu or cuda."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS", show_default=False,
                                              help="Ray cluster for curation (default: embedded local Ray)."),
    force: bool = typer.Option(False, help="Delete this ablation's earlier outputs and redo everything."),
) -> None:
    """Compare curation recipes: curate each, train the same model on each with the same token budget, evaluate
    all on one held-out eval set (bits per byte + tasks), write ABLATION/results.json and report.html.

    Rerunning the same command resumes and does no new work when everything is done."""
    from webmill.ablate.plan import parse_recipes
    from webmill.ablate.run import run_ablation

    recipes = parse_recipes(recipe)
    res = run_ablation(inputs, out, recipes, tokens=tokens, preset=preset, n_layer=n_layer, n_head=n_head,
                       n_embd=n_embd, block_size=block_size, micro_batch=micro_batch, lr=lr,
                       warmup_steps=warmup_steps, seed=seed, eval_points=eval_points,
                       heldout_fraction=heldout_fraction, eval_bytes=eval_bytes, eval_text=eval_text, tasks=tasks,
                       device=device,
                       ray_address=ray_address, force=force, echo=lambda m: typer.echo(m, err=True))
    for row in res["table"]:
        acc = "".join(f", {t} acc {v['acc']:.3f}" for t, v in row["tasks"].items())
        typer.echo(f"{row['name']}: bpb {row['bpb']:.4f}, loss {row['loss']:.4f}{acc}, "
                   f"{row['train_tokens']:,} training tokens ({row['epochs']:.2f} epochs)")
    from webmill.storage import as_storage

    typer.echo(f"report: {as_storage(out).uri('report.html')}")
