"""``curate annotate OUT``: LLM quality annotations of a run's documents → ``OUT/annotations``.

Options override keys of the config file's ``[annotate]`` table (:class:`AnnotateConfig`); the
work is :func:`webmill.curate.annotate.run_annotate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from webmill.config import table_with_overrides
from webmill.curate.annotate import AnnotateConfig, run_annotate
from webmill.curate.cli import app
from webmill.curate.cli import llm_options as llm

_D = AnnotateConfig()  # the defaults shown in --help


@app.command("annotate")
def annotate_cmd(
    out: str = typer.Argument(..., help="Output directory of a run, local or an fsspec URL (reads OUT/final, "
                              "else OUT/deduped or OUT/documents; writes OUT/annotations and "
                              "OUT/stats/annotate.json)."),
    config: Optional[Path] = llm.config_option("annotate", "AnnotateConfig", "docs/quality.md"),
    backend: Optional[str] = llm.BACKEND,
    base_url: Optional[str] = llm.BASE_URL,
    model: Optional[str] = llm.MODEL,
    api: Optional[str] = llm.API,
    model_path: Optional[str] = llm.MODEL_PATH,
    rubric: Optional[str] = typer.Option(None, show_default=_D.rubric,
                                         help="'edu' (built-in 0-5 educational value) or a rubric text file."),
    n: Optional[int] = typer.Option(None, "--n", show_default="0 (no cap)",
                                    help="Most documents to annotate (smallest id hashes)."),
    fraction: Optional[float] = typer.Option(None, show_default=str(_D.fraction),
                                             help="Fraction of documents eligible (by id hash)."),
    stratify: Optional[str] = typer.Option(None, show_default="none",
                                           help="'domain': spread --n over as many domains as possible."),
    concurrency: Optional[int] = llm.CONCURRENCY,
    max_doc_chars: Optional[int] = typer.Option(None, show_default=str(_D.max_doc_chars),
                                                help="Characters of each document sent to the model."),
    input_subdir: str = typer.Option("", show_default="final, else deduped, else documents",
                                     help="Subdirectory of OUT to read."),
    output_subdir: str = typer.Option("annotations", help="Subdirectory of OUT to write."),
) -> None:
    """LLM scores (0-5 rubric) for a sample of a run's documents: OUT/final → OUT/annotations."""
    table = table_with_overrides(config, "annotate", dict(
        backend=backend, base_url=base_url, model=model, api=api, model_path=model_path, rubric=rubric, n=n,
        fraction=fraction, stratify=stratify, concurrency=concurrency, max_doc_chars=max_doc_chars))
    s = run_annotate(out, AnnotateConfig.from_dict(table), input_subdir=input_subdir, output_subdir=output_subdir)
    hist = " ".join(f"{k}:{v}" for k, v in s["score_histogram"].items())
    print(f"annotate ({s['model']}, rubric {s['rubric']}): {s['sampled']} of {s['documents_in']} documents; "
          f"scored {s['annotated']}, failed {s['failed']}, unparseable {s['unparseable']}, out of range "
          f"{s['out_of_range']}; scores {hist}; cache hits {s['cache_hits']}, requests {s['requests_ok']}; "
          f"{s['seconds']:.1f} s")
