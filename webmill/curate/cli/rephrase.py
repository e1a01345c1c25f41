"""``curate rephrase OUT``: LLM rephrasing of a finished run (``OUT/final`` → ``OUT/rephrased``).

Options override keys of the config file's ``[rephrase]`` table (:class:`RephraseConfig`); the
work is :func:`webmill.curate.rephrase.run_rephrase`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from webmill.curate.cli import app
from webmill.config import table_with_overrides
from webmill.curate.rephrase import RephraseConfig, run_rephrase

_D = RephraseConfig()  # the defaults shown in --help

@app.command("rephrase")
def rephrase_cmd(
    out: str = typer.Argument(..., help="Output directory of a run, local or an fsspec URL (reads OUT/final, "
                              "writes OUT/rephrased and OUT/stats/rephrase.json)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", show_default="none",
                                          help="Pipeline config TOML; its rephrase table sets any RephraseConfig "
                                          "key (see docs/rephrase.md)."),
    backend: Optional[str] = typer.Option(None, show_default=_D.backend,
                                          help="llama_cpp (embedded Gemma 3 270M) or openai (a server)."),
    base_url: Optional[str] = typer.Option(None, show_default=_D.base_url,
                                           help="OpenAI-compatible server URL incl. /v1."),
    model: Optional[str] = typer.Option(None, show_default="none; required by the openai backend",
                                        help="Served model name (openai backend)."),
    api: Optional[str] = typer.Option(None, show_default=_D.api,
                                      help="completions (base models) or chat (instruct models)."),
    model_path: Optional[str] = typer.Option(None, show_default="the embedded Gemma 3 270M",
                                             help="GGUF file for the llama_cpp backend."),
    fraction: Optional[float] = typer.Option(None, show_default=str(_D.fraction),
                                             help="Fraction of documents to rephrase (by id hash)."),
    max_tokens: Optional[int] = typer.Option(None, show_default=str(_D.max_tokens),
                                             help="Most generated tokens per request."),
    max_segment_tokens: Optional[int] = typer.Option(None, show_default=str(_D.max_segment_tokens),
                                                     help="Largest segment (cl100k_base tokens)."),
    concurrency: Optional[int] = typer.Option(None, show_default=str(_D.concurrency), help="Requests in flight."),
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
