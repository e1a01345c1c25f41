"""``curate``: the command-line interface of the curation pipeline.

``curate run WARC_DIR`` runs every step on an embedded local Ray (or a cluster with
``--ray-address``); each step is also its own subcommand so it can be re-run with other
settings. User errors print one line and exit with code 2 (``--debug`` shows the traceback);
``curate run`` exits with code 3 when it finished but some inputs failed (``OUT/failed.jsonl``).

The typer code of each command lives in this package (one module per area); the modules it
calls stay importable without typer.
"""

from __future__ import annotations

import sys
import traceback

import typer

from webmill.errors import UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Curate web crawls (WARC/WET/ARC) into token shards on Ray.")
_state = {"debug": False}
EXIT_INPUTS_FAILED = 3  # `curate run` finished, but inputs listed in OUT/failed.jsonl are missing


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    _state["debug"] = debug



def _register() -> None:
    """Import the command modules: each attaches its commands to :data:`app`."""
    from webmill.curate.cli import run, dedup, tokenize, quality, report, rephrase, annotate, show, ablate  # noqa: F401,I001


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
