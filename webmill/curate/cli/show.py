"""``curate show OUT [--reason R] [--n N]``: example documents per drop reason (work in
:mod:`webmill.curate.report.show`)."""

from __future__ import annotations

import typer

from webmill.curate.cli import app


def show_cmd(out: str = typer.Argument(..., help="Output directory of `curate run` (a path or an fsspec URL)."),
             reason: str | None = typer.Option(None, "--reason", "-r",
                                               help="Drop reason to show (without it: list the run's reasons)."),
             n: int = typer.Option(5, "--n", "-n", min=1, help="Documents to show (OUT/removed/ gives more than "
                                                                  "the stored examples when present).")) -> None:
    """Show the example documents of a drop reason: URL, stage, what decided the drop, first characters."""
    from webmill.curate.report.show import print_reasons, show_examples

    if reason is None:
        print_reasons(out)
    else:
        show_examples(out, reason, n)


app.command("show")(show_cmd)
