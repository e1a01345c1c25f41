"""Writing the report: ``OUT/report/report.html``, ``stats.json`` and the plot PNGs, each
published atomically through :class:`webmill.storage.Storage` (local disk or any fsspec URL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from webmill.curate.report.collect import collect_stats
from webmill.curate.report.page import render_html
from webmill.curate.report.plots import make_plots
from webmill.errors import UserError
from webmill.storage import Storage, as_storage

REPORT = "report"


def write_report(out: str | os.PathLike | Storage) -> Path | str:
    """Write ``OUT/report/report.html``, ``stats.json`` and the plot PNGs of run directory ``out``.

    Args:
        out: output directory of ``curate run`` (local path, fsspec URL such as
            ``memory://run`` or ``s3://bucket/out``, or a Storage).

    Returns:
        Where ``report.html`` is: a :class:`~pathlib.Path` on local disk, else its URL (str).
        Every file is published atomically; PNGs of plots that a re-run no longer draws and
        temp files of a killed earlier writer are deleted. ``stats.json`` is JSON with
        ``indent=2`` and a final newline.

    Raises:
        UserError: ``out`` is not a directory or holds no per-file stats, an input file is
            damaged, or ``OUT/report`` cannot be written.
    """
    st = as_storage(out)
    if not st.isdir():
        raise UserError(f"{st.uri()} is not a directory; give the output directory of `curate run`")
    stats = collect_stats(st)
    plots = make_plots(stats)
    page = f"{REPORT}/report.html"
    try:
        st.makedirs(REPORT)
        st.sweep_temps(REPORT)
        for old in st.list(REPORT, suffix=".png"):
            if old.removesuffix(".png") not in plots:
                st.remove(f"{REPORT}/{old}")
        for name, data in plots.items():
            st.write_bytes(f"{REPORT}/{name}.png", data)
        stats["plots"] = sorted(f"{n}.png" for n in plots)
        st.write_text(f"{REPORT}/stats.json", json.dumps(stats, indent=2) + "\n")
        st.write_text(page, render_html(stats, plots))
    except OSError as e:
        raise UserError(f"cannot write the report into {st.uri(REPORT)}: {e.strerror or e}") from e
    return st.local_path(page) or st.uri(page)
