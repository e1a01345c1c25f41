"""The command-line options that ``curate rephrase`` and ``curate annotate`` share: the LLM
backend settings of :class:`webmill.curate.rephrase.config.BackendSettings` (one definition, so
both commands describe them alike). Each is ``None`` unless given: only given options override
the config file's table (:func:`webmill.config.table_with_overrides`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from webmill.curate.rephrase.config import BackendSettings

_D = BackendSettings()  # the defaults shown in --help


def config_option(section: str, cls: str, doc: str) -> Optional[Path]:
    """``-c/--config``: the pipeline TOML whose ``[section]`` table sets any ``cls`` key."""
    return typer.Option(None, "-c", "--config", show_default="none",
                        help=f"Pipeline config TOML; its {section} table sets any {cls} key (see {doc}).")


BACKEND: Optional[str] = typer.Option(None, show_default=_D.backend,
                                      help="llama_cpp (embedded Gemma 3 270M) or openai (a server).")
BASE_URL: Optional[str] = typer.Option(None, show_default=_D.base_url, help="OpenAI-compatible server URL incl. /v1.")
MODEL: Optional[str] = typer.Option(None, show_default="none; required by the openai backend",
                                    help="Served model name (openai backend).")
API: Optional[str] = typer.Option(None, show_default=_D.api,
                                  help="completions (base models; few-shot where a prompt needs it) or chat "
                                       "(instruct models).")
MODEL_PATH: Optional[str] = typer.Option(None, show_default="the embedded Gemma 3 270M",
                                         help="GGUF file for the llama_cpp backend.")
CONCURRENCY: Optional[int] = typer.Option(None, show_default=str(_D.concurrency), help="Requests in flight.")
