"""``curate run``, ``curate finalize`` and ``curate funnel``.

``curate run WARC_DIR`` runs every step on an embedded local Ray (or a cluster with
``--ray-address``); each step is also its own subcommand so it can be re-run with other
settings. User errors print one line and exit with code 2 (``--debug`` shows the traceback);
``curate run`` exits with code 3 when it finished but some inputs failed (``OUT/failed.jsonl``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from webmill.curate.cli import EXIT_INPUTS_FAILED, app
from webmill.errors import UserError

def default_out(inputs: list[str]) -> Path:
    """Default output directory: ``./webmill-out/<name of the first input>``."""
    first = inputs[0].rstrip("/").rsplit("/", 1)[-1] or "run"
    for ch in "*?[]@":
        first = first.replace(ch, "")
    return Path("webmill-out") / (first or "run")


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
                               highlight=False, soft_wrap=True)

    def echo(self, msg: str) -> None:
        """Print a status line (above the bar on a terminal)."""
        self.console.print(msg, highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def run(
    inputs: list[str] = typer.Argument(..., help="WARC/WET/ARC inputs: directories, globs, files, "
                                       "@list.txt files, or fsspec URLs (s3://..., https://...)."),
    out: Optional[str] = typer.Option(None, "-o", "--out", show_default=False,
                                      help="Output directory: a local path or an fsspec URL "
                                      "(s3://bucket/out) (default: ./webmill-out/<first input name>)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Pipeline config TOML "
                                          "(see examples/fineweb.toml); defaults are FineWeb's."),
    profile: Optional[str] = typer.Option(None, "--profile", show_default=False,
                                          help="Named settings applied before -c: 'fast' = resiliparse "
                                          "extraction, DCLM's choice (docs/fast-path.md)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS", show_default=False,
                                              help="Ray cluster address (default: embedded local Ray)."),
    extractor: Optional[str] = typer.Option(None, show_default=False,
                                            help="trafilatura or resiliparse (default: trafilatura)."),
    languages: Optional[str] = typer.Option(None, show_default=False,
                                            help="Comma-separated lid.176 language codes to keep "
                                            "(en,de,...), or 'all' (default: en)."),
    workers: Optional[int] = typer.Option(None, show_default=False,
                                          help="Per-file worker actors (default: one per CPU)."),
    executor: Optional[str] = typer.Option(None, show_default=False,
                                           help="Where the per-file steps run: 'ray' (Ray actors; default) or "
                                           "'local' (a process pool on this machine, no Ray start-up; dedup "
                                           "still starts Ray). Config: [ray] executor."),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Run exact + MinHash dedup."),
    pii: bool = typer.Option(True, "--pii/--no-pii", help="Run PII scrubbing."),
    quality: Optional[bool] = typer.Option(None, "--quality/--no-quality", show_default=False,
                                           help="Score documents with the quality classifier "
                                           "(default: the config's quality.enabled: on, in buckets mode, which "
                                           "scores and buckets every document and drops none)."),
    tokenizer: Optional[str] = typer.Option(None, show_default=False,
                                            help="tiktoken name, trained tokenizer dir, or bpe:N to train "
                                            "a BPE of vocab N on this run's text (default: cl100k_base)."),
    rephrase: Optional[bool] = typer.Option(None, "--rephrase/--no-rephrase", show_default=False,
                                            help="LLM rephrasing (settings in the config's rephrase "
                                            "table; default: off)."),
    tokenize: bool = typer.Option(True, "--tokenize/--no-tokenize", help="Write token shards."),
    decontaminate: Optional[list[str]] = typer.Option(
        None, "--decontaminate", metavar="FILE", show_default=False,
        help="Eval set to decontaminate against (JSONL 'text' field, Parquet 'text' column or one item "
        "per line of .txt; a glob or URL works too); repeatable; turns [decontaminate] on and adds "
        "to its sets (docs/decontamination.md)."),
    force: bool = typer.Option(False, help="Reprocess inputs that already have a completion marker."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write OUT/report at the end."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Ray's own logs on the terminal "
                                 "(default: they go to OUT/logs/)."),
) -> None:
    """Run the whole pipeline: per-document stages → dedup → PII/quality → token shards → report.

    Exit status 0 when every input was processed, 3 when the run finished but some inputs
    failed (listed in OUT/failed.jsonl; rerun the command to retry them), 2 on a user error.
    The same run from Python: webmill.curate.pipeline.run_pipeline.
    """
    from webmill.curate.funnel import print_funnel
    from webmill.curate.pipeline import prepare_inputs, run_pipeline
    from webmill.curate.profiles import load_profile_config
    from webmill.storage import as_storage, configure_storage

    overrides: dict = {}
    if extractor:
        overrides.setdefault("extract", {})["extractor"] = extractor
    if languages:
        langs = "all" if languages.strip() == "all" else [x.strip() for x in languages.split(",") if x.strip()]
        overrides.setdefault("language", {})["languages"] = langs
    if workers is not None:
        overrides.setdefault("ray", {})["num_workers"] = workers
    if executor is not None:
        overrides.setdefault("ray", {})["executor"] = executor
    if tokenizer:
        overrides.setdefault("tokenize", {})["tokenizer"] = tokenizer
    if quality is not None:
        overrides.setdefault("quality", {})["enabled"] = quality
    if rephrase is not None:
        overrides.setdefault("rephrase", {})["enabled"] = rephrase
    overrides.setdefault("dedup", {})["enabled"] = dedup
    overrides.setdefault("pii", {})["enabled"] = pii
    cfg = load_profile_config(profile, config, overrides)
    if decontaminate:
        cfg["decontaminate"]["enabled"] = True
        cfg["decontaminate"]["sets"] = list(cfg["decontaminate"]["sets"]) + list(decontaminate)
    configure_storage(cfg["storage"])  # [storage.<protocol>] options for inputs and OUT
    prepared = prepare_inputs(inputs)
    st = as_storage(out if out else default_out(inputs))
    print(f"curate run: {len(prepared.files)} input files → {st.uri()}", file=sys.stderr)
    for r in prepared.rejected:
        print(f"skipped (not readable): {r['input']}: {r['reason']}", file=sys.stderr)
    progress = _Progress(len(prepared.files), "documents")
    try:
        res = run_pipeline(prepared, st, cfg, ray_address=ray_address, force=force, tokenize=tokenize,
                           report=report, on_progress=progress, verbose=verbose,
                           echo=progress.echo)
    finally:
        progress.close()
    print_funnel(st)
    if res.log_dir and not verbose:
        what = "Ray logs" if cfg["ray"]["executor"] == "ray" else "logs"
        print(f"{what}: {res.log_dir} (--verbose shows them here)", file=sys.stderr)
    if res.failed:
        # every usable input is done and the global steps ran; a batch job (ray job submit, CI)
        # must still see that the output is missing some inputs
        print(f"exit status {EXIT_INPUTS_FAILED}: {len(res.failed)} inputs failed "
              f"(see {st.uri('failed.jsonl')})", file=sys.stderr)
        raise typer.Exit(EXIT_INPUTS_FAILED)


@app.command()
def finalize(
    out: str = typer.Argument(..., help="Output directory of a run, local or an fsspec URL (reads OUT/deduped)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", show_default=False,
                                          help="Pipeline config TOML (default: FineWeb's defaults)."),
    input_subdir: str = typer.Option("deduped", help="Subdirectory of OUT to read."),
    quality: Optional[bool] = typer.Option(None, "--quality/--no-quality", show_default=False,
                                           help="Quality scoring on/off (default: the config's quality.enabled)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS", show_default=False,
                                              help="Ray cluster address (default: embedded local Ray)."),
) -> None:
    """PII scrubbing + quality scoring: OUT/deduped → OUT/final (stats in OUT/stats/final.json)."""
    from webmill.config import load_config
    from webmill.curate.finalize import run_finalize
    from webmill.curate.workers import init_workers, run_log_dir
    from webmill.storage import as_storage, configure_storage

    cfg = load_config(config, {"quality": {"enabled": quality}} if quality is not None else None)
    configure_storage(cfg["storage"])
    init_workers(cfg, ray_address, log_dir=run_log_dir(as_storage(out)))  # logs: OUT/logs
    s = run_finalize(out, cfg, input_subdir=input_subdir)
    print(f"finalize: {s['documents_in']} → {s['documents_out']} documents; PII {s['pii_counts']}")


@app.command()
def funnel(out: str = typer.Argument(..., help="Output directory of a run, local or an fsspec URL.")) -> None:
    """Print the funnel (documents left after each stage) of a finished run."""
    from webmill.curate.funnel import print_funnel
    from webmill.storage import as_storage

    st = as_storage(out)
    if not st.isdir("stats"):
        raise UserError(f"{st.uri()} has no stats/ directory (is it the output of `curate run`?)")
    print_funnel(st)
