"""``curate``: the command-line interface of the curation pipeline.

``curate run WARC_DIR`` runs every step on an embedded local Ray (or a cluster with
``--ray-address``); each step is also its own subcommand so it can be re-run with other
settings. User errors print one line and exit with code 2 (``--debug`` shows the traceback);
``curate run`` exits with code 3 when it finished but some inputs failed (``OUT/failed.jsonl``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import typer

from webmill.errors import UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Curate web crawls (WARC/WET/ARC) into token shards on Ray.")
_state = {"debug": False}
EXIT_INPUTS_FAILED = 3  # `curate run` finished, but inputs listed in OUT/failed.jsonl are missing


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    _state["debug"] = debug


def default_out(inputs: list[str]) -> Path:
    """Default output directory: ``./webmill-out/<name of the first input>``."""
    first = inputs[0].rstrip("/").rsplit("/", 1)[-1] or "run"
    for ch in "*?[]@":
        first = first.replace(ch, "")
    return Path("webmill-out") / (first or "run")


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output directory {out} is not writable: {e.strerror or e}") from e


class _Progress:
    """Per-file progress: a rich bar on a terminal, one plain line per file otherwise."""

    def __init__(self, total: int, label: str):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.total, self.done, self.docs, self.t0 = total, 0, 0, time.time()
        self.bar = None
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self.console)
            self.task = self.bar.add_task(label, total=total, rate="")
            self.bar.start()

    def __call__(self, stats: dict) -> None:
        self.done += 1
        self.docs += stats.get("stages", {}).get("html_or_wet", 0)
        rate = self.docs / max(time.time() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, advance=1, rate=f"{rate:.1f} docs/s")
        else:
            self.console.print(f"[{self.done}/{self.total}] {stats['stem']}: records={stats['records']} "
                               f"kept={stats['kept']} errors={stats['errors']} ({rate:.1f} docs/s)",
                               highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def run(
    inputs: list[str] = typer.Argument(..., help="WARC/WET/ARC inputs: directories, globs, files, "
                                       "@list.txt files, or fsspec URLs (s3://..., https://...)."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output directory "
                                       "[default: ./webmill-out/<first input name>]."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Pipeline config TOML "
                                          "(see examples/fineweb.toml); defaults are FineWeb's."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                              help="Ray cluster address; default: embedded local Ray."),
    extractor: Optional[str] = typer.Option(None, help="trafilatura (default) or resiliparse."),
    languages: Optional[str] = typer.Option(None, help="Comma-separated languages to keep, or 'all' "
                                            "[default: en]."),
    workers: Optional[int] = typer.Option(None, help="Per-file worker actors [default: one per CPU]."),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Run exact + MinHash dedup."),
    pii: bool = typer.Option(True, "--pii/--no-pii", help="Run PII scrubbing."),
    quality: Optional[bool] = typer.Option(None, "--quality/--no-quality",
                                           help="Score documents with the quality classifier."),
    tokenizer: Optional[str] = typer.Option(None, help="tiktoken name, trained tokenizer dir, or "
                                            "bpe:N to train a BPE of vocab N on this run's text "
                                            "[default: cl100k_base]."),
    rephrase: Optional[bool] = typer.Option(None, "--rephrase/--no-rephrase", help="LLM rephrasing "
                                            "(settings in the [rephrase] config table; off by default)."),
    tokenize: bool = typer.Option(True, "--tokenize/--no-tokenize", help="Write token shards."),
    force: bool = typer.Option(False, help="Reprocess inputs that already have a completion marker."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write OUT/report at the end."),
) -> None:
    """Run the whole pipeline: per-document stages → dedup → PII/quality → token shards.

    Exit status 0 when every input was processed, 3 when the run finished but some inputs
    failed (listed in OUT/failed.jsonl; rerun the command to retry them), 2 on a user error.
    """
    from webmill.config import config_hash, load_config
    from webmill.curate.pipeline import check_inputs, discover_inputs, init_ray, run_documents

    overrides: dict = {}
    if extractor:
        overrides.setdefault("extract", {})["extractor"] = extractor
    if languages:
        langs = "all" if languages.strip() == "all" else [x.strip() for x in languages.split(",") if x.strip()]
        overrides.setdefault("language", {})["languages"] = langs
    if workers is not None:
        overrides.setdefault("ray", {})["num_workers"] = workers
    if tokenizer:
        overrides.setdefault("tokenize", {})["tokenizer"] = tokenizer
    if quality is not None:
        overrides.setdefault("quality", {})["enabled"] = quality
    if rephrase is not None:
        overrides.setdefault("rephrase", {})["enabled"] = rephrase
    overrides.setdefault("dedup", {})["enabled"] = dedup
    overrides.setdefault("pii", {})["enabled"] = pii
    cfg = load_config(config, overrides)
    files = discover_inputs(inputs)
    files, rejected = check_inputs(files)
    out = out or default_out(inputs)
    _check_writable(out)
    print(f"curate run: {len(files)} input files → {out}", file=sys.stderr)
    for r in rejected:
        print(f"skipped (not readable): {r['input']}: {r['reason']}", file=sys.stderr)
    init_ray(ray_address)
    progress = _Progress(len(files), "documents")
    try:
        res = run_documents(files, out, cfg, force=force, on_progress=progress, rejected=rejected)
    finally:
        progress.close()
    if res["skipped"]:
        print(f"skipped {len(res['skipped'])} inputs with completion markers (use --force to redo)",
              file=sys.stderr)
    for f in res["failed"]:
        if f not in rejected:
            print(f"failed: {f['input']}: {f['reason']}", file=sys.stderr)
    if res["failed"]:
        print(f"{len(res['failed'])} inputs failed; they are listed in {out / 'failed.jsonl'} "
              "(rerun the same command to retry them)", file=sys.stderr)
    _global_steps(out, cfg, config_hash(cfg), do_tokenize=tokenize)
    if report:
        _report(out)
    from webmill.curate.funnel import print_funnel

    print_funnel(out)
    if res["failed"]:
        # every usable input is done and the global steps ran; a batch job (ray job submit, CI)
        # must still see that the output is missing some inputs
        print(f"exit status {EXIT_INPUTS_FAILED}: {len(res['failed'])} inputs failed "
              f"(see {out / 'failed.jsonl'})", file=sys.stderr)
        raise typer.Exit(EXIT_INPUTS_FAILED)


def _global_steps(out: Path, cfg: dict, cfg_hash: str, do_tokenize: bool = True) -> None:
    from webmill.config import kwargs_of

    src = "documents"
    if cfg["dedup"].get("enabled", True):
        from webmill.curate.dedup import DedupConfig, run_dedup

        run_dedup(out, DedupConfig(**kwargs_of(cfg["dedup"])), input_subdir="documents", output_subdir="deduped")
        src = "deduped"
    if cfg["pii"].get("enabled", True) or cfg["quality"].get("enabled", False):
        from webmill.curate.finalize import run_finalize

        run_finalize(out, cfg, input_subdir=src, output_subdir="final")
        src = "final"
    if cfg["rephrase"].get("enabled", False):
        from webmill.curate.rephrase import run_rephrase

        run_rephrase(out, cfg, input_subdir=src, output_subdir="rephrased")
        src = "rephrased"
    if do_tokenize:
        from webmill.tokenize.dataset import tokenize_dataset

        t = cfg["tokenize"]
        tokenizer = t["tokenizer"]
        if tokenizer.startswith("bpe:"):
            tokenizer = str(_train_run_tokenizer(out, src, tokenizer))
        tokenize_dataset(out / src, out / "shards", tokenizer=tokenizer, shard_tokens=t["shard_tokens"],
                         val_fraction=t["val_fraction"], seed=t["seed"], config_hash=cfg_hash)


def _train_run_tokenizer(out: Path, src: str, spec: str) -> Path:
    """``tokenizer = "bpe:N"``: train a byte-level BPE of vocab N (rustbpe) on this run's text."""
    from webmill.tokenize.bpe import iter_texts, train_tokenizer

    try:
        vocab = int(spec.split(":", 1)[1])
    except ValueError as e:
        raise UserError(f"tokenizer {spec!r}: use bpe:<vocab size>, e.g. bpe:4096") from e
    tok_dir = out / "tokenizer"
    train_tokenizer(iter_texts(out / src), vocab, tok_dir, name=f"webmill-bpe-{vocab}")
    return tok_dir


def _report(out: Path) -> None:
    from webmill.curate.report import write_report

    try:
        path = write_report(out)
        print(f"report: {path}", file=sys.stderr)
    except UserError as e:  # the data is complete; a report problem must not fail the run
        print(f"warning: report not written: {e}", file=sys.stderr)


@app.command()
def finalize(
    out: Path = typer.Argument(..., help="Output directory of a run (reads OUT/deduped)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Pipeline config TOML."),
    input_subdir: str = typer.Option("deduped", help="Subdirectory of OUT to read."),
    quality: Optional[bool] = typer.Option(None, "--quality/--no-quality", help="Quality scoring on/off."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                              help="Ray cluster address; default: embedded local Ray."),
) -> None:
    """PII scrubbing + quality scoring: OUT/deduped → OUT/final (stats in OUT/stats/final.json)."""
    from webmill.config import load_config
    from webmill.curate.finalize import run_finalize
    from webmill.curate.pipeline import init_ray

    cfg = load_config(config, {"quality": {"enabled": quality}} if quality is not None else None)
    init_ray(ray_address)
    s = run_finalize(out, cfg, input_subdir=input_subdir)
    print(f"finalize: {s['documents_in']} → {s['documents_out']} documents; PII {s['pii_counts']}")


@app.command()
def funnel(out: Path = typer.Argument(..., help="Output directory of a run.")) -> None:
    """Print the funnel (documents left after each stage) of a finished run."""
    if not (out / "stats").is_dir():
        raise UserError(f"{out} has no stats/ directory (is it the output of `curate run`?)")
    from webmill.curate.funnel import print_funnel

    print_funnel(out)


def _register() -> None:
    """Attach the step commands that live beside their code."""
    from webmill.curate.dedup import dedup_cmd
    from webmill.tokenize.bpe import train_tokenizer_cmd
    from webmill.tokenize.dataset import tokenize_cmd
    from webmill.tokenize.shards import check_shards_cmd

    app.command("dedup")(dedup_cmd)
    app.command("tokenize")(tokenize_cmd)
    app.command("train-tokenizer")(train_tokenizer_cmd)
    app.command("check-shards")(check_shards_cmd)
    for mod, fn, name in (("webmill.curate.quality", "train_quality_cmd", "train-quality"),
                          ("webmill.curate.report", "stats_cmd", "stats"),
                          ("webmill.curate.rephrase", "rephrase_cmd", "rephrase")):
        try:
            module = __import__(mod, fromlist=[fn])
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        app.command(name)(getattr(module, fn))


_register()


def main() -> None:
    """Console-script entry point: one-line errors with exit code 2 for user errors."""
    debug = "--debug" in sys.argv
    try:
        app()
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
