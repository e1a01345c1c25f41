"""`curate stats OUT`: write the dataset report of a run (webmill.curate.report)."""

from __future__ import annotations

import typer

from webmill.curate.cli import app


def stats_cmd(out: str = typer.Argument(..., help="Output directory of `curate run` (a path or an fsspec "
                                                   "URL such as s3://bucket/out).")) -> None:
    """Write the dataset report: OUT/report/report.html (self-contained), stats.json and PNG plots."""
    from webmill.curate.report import write_report

    page = write_report(out)
    typer.echo(f"report: {page}")


app.command("stats")(stats_cmd)
