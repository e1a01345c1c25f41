"""``curate stats OUT``: the dataset statistics report of a curation run.

Reads what ``curate run`` left in ``OUT`` (``stats/*.json``, ``documents/``, ``deduped/``,
``final/``, ``rephrased/``, ``shards/``, ``failed.jsonl``) and writes:

- ``OUT/report/report.html``: one self-contained page; every plot is embedded as a base64 PNG
  ``data:`` URI, so the page opens offline and can be mailed as one file;
- ``OUT/report/stats.json``: the numbers behind the page (format ``webmill-report-stats`` v1);
- ``OUT/report/*.png``: the same plots as files (matplotlib, Agg backend).

Every section is skipped, with a note saying why, when its input is absent (a run with
``--no-dedup``, ``--no-pii``, ``--no-tokenize`` ...). The layout of ``stats.json`` is documented
in ``docs/report.md``. ``OUT`` may be a local directory or any fsspec URL (all I/O goes through
:mod:`webmill.storage`).

Modules, one concern each: :mod:`.inputs` (reading a run's files), :mod:`.tokens` (the run's
tokenizer, token counts), :mod:`.rundata` (everything loaded once), :mod:`.numbers`
(histograms, domains, S-curve), :mod:`.funnel_section`, :mod:`.quality_section`,
:mod:`.examples_section`, :mod:`.decontam_section` and :mod:`.collect` (one function per section of
stats.json), :mod:`.plots`, :mod:`.page` (the HTML), :mod:`.write`; :mod:`.show` is ``curate show``
(example documents per drop reason in the terminal).
"""

from webmill.curate.report.collect import STATS_FORMAT, STATS_VERSION, collect_stats
from webmill.curate.report.numbers import s_curve
from webmill.curate.report.page import render_html
from webmill.curate.report.plots import make_plots
from webmill.curate.report.tokens import MAX_TOKENIZE_CHARS
from webmill.curate.report.write import write_report
from webmill.htmlreport import IMAGES_CHECK_SCRIPT

__all__ = ["IMAGES_CHECK_SCRIPT", "MAX_TOKENIZE_CHARS", "STATS_FORMAT", "STATS_VERSION", "collect_stats",
           "make_plots", "render_html", "s_curve", "write_report"]
