"""``curate rephrase OUT``: LLM rephrasing of a finished run (``OUT/final`` → ``OUT/rephrased``).

Options override keys of the config file's ``[rephrase]`` table (:class:`RephraseConfig`); the
work is :func:`webmill.curate.rephrase.run_rephrase`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from webmill.curate.cli import app
from webmill.curate.cli import llm_options as llm
from webmill.config import table_with_overrides
from webmill.curate.rephrase import RephraseConfig, run_rephrase

_D = RephraseConfig()  # the defaults shown in --help

@app.command("rephrase")
def rephrase_cmd(
    out: str = typer.Argument(..., help="Output directory of a run, local or an fsspec URL (reads OUT/final, "
                              "writes OUT/rephrased and OUT/stats/rephrase.json)."),
    config: Optional[Path] = llm.config_option("rephrase", "RephraseConfig", "docs/rephrase.md"),
    backend: Optional[str] = llm.BACKEND,
    base_url: Optional[str] = llm.BASE_URL,
    model: Optional[str] = llm.MODEL,
    api: Optional[str] = llm.API,
    model_path: Optional[str] = llm.MODEL_PATH,
    fraction: Optional[float] = typer.Option(None, show_default=str(_D.fraction),
                                             help="Fraction of documents to rephrase (by id hash)."),
    max_tokens: Optional[int] = typer.Option(None, show_default=str(_D.max_tokens),
                                             help="Most generated tokens per request."),
    max_segment_tokens: Optional[int] = typer.Option(None, show_default=str(_D.max_segment_tokens),
                                                     help="Largest segment (cl100k_base tokens)."),
    concurrency: Optional[int] = llm.CONCURRENCY,
    keep_originals: Optional[bool] = typer.Option(None, "--keep-originals/--replace-originals",
                                                  show_default="keep" if _D.keep_originals else "replace",
                                                  help="Keep originals next to their rephrasings."),
    cache_path: Optional[str] = typer.Option(None, show_default="OUT/cache/rephrase.sqlite; "
                                             "$WEBMILL_CACHE/rephrase/ when OUT is a URL",
                                             help="sqlite request cache (a local file)."),
    input_subdir: str = typer.Option("final", help="Subdirectory of OUT to read."),
    output_subdir: str = typer.Option("rephrased", help="Subdirectory of OUT to write."),
) -> None:
    """LLM rephrasing (Wikipedia style / Nemotron-CC styles): OUT/final → OUT/rephrased."""
    table = table_with_overrides(config, "rephrase", dict(
        backend=backend, base_url=base_url, model=model, api=api, model_path=model_path, fraction=fraction,
        max_tokens=max_tokens, max_segment_tokens=max_segment_tokens, concurrency=concurrency,
        keep_originals=keep_originals, cache_path=cache_path))
    conf = RephraseConfig.from_dict(table)
    s = run_rephrase(out, conf, input_subdir=input_subdir, output_subdir=output_subdir)
    print(f"rephrase ({s['model']}): {s['documents_in']} documents → {s['documents_out']} "
          f"({s['synthetic_documents']} synthetic); failed {s['rephrase_failed']}, rejected "
          f"{s['rephrase_rejected']}, cache hits {s['cache_hits']}/{s['segments']} segments; "
          f"{s['generated_tokens']} tokens in {s['seconds']:.1f} s ({s['tokens_per_s']:.1f} tok/s)")
