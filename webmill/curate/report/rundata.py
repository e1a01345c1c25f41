"""Everything the report's sections read from one run, loaded once: :class:`RunData`.

:func:`load_run` checks the per-file stats, sums the funnel (:mod:`webmill.curate.funnel`),
lists the document tables, reads the shard manifest, measures every table's text and counts its
tokens with the run's own tokenizer (:mod:`.tokens`). All reads go through
:class:`webmill.storage.Storage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from webmill.curate.funnel import collect_funnel, load_file_stats
from webmill.curate.report.inputs import parquet_files, read_json, text_lengths
from webmill.curate.report.tokens import SHARDS, count_tokens, run_encoding
from webmill.curate.stages import GLOBAL_STEPS
from webmill.errors import UserError
from webmill.storage import Storage

#: The document tables of a run in pipeline order: the per-document output, then the output of
#: every global step that writes documents (the shards hold tokens, not a document table).
DOC_TABLES: tuple[str, ...] = ("documents",) + tuple(s.output for s in GLOBAL_STEPS if s.output != SHARDS)
#: Tables whose tokens are counted; ``deduped`` takes its documents' counts from ``documents``.
COUNTED_TABLES = ("documents", "final", "rephrased")
PER_FILE_KEYS = ("records", "kept", "errors", "dropped")


@dataclass
class RunData:
    """The inputs of one report.

    Attributes:
        st: the run's output directory.
        files: per-input stats dicts (``OUT/stats/<stem>.json``), sorted by stem.
        funnel: :func:`webmill.curate.funnel.collect_funnel` of the run.
        tables: ``{table: [Parquet paths]}`` for every name in :data:`DOC_TABLES` (``[]``: absent).
        manifest: ``OUT/shards/manifest.json`` parsed, or None.
        lengths: ``{table: (characters, words, ids)}`` for the tables that hold files.
        doc_tokens: ``{table: {id: tokens}}`` for the counted tables (empty without a tokenizer).
        tokens_estimated: some token counts were estimated from a sample.
        skipped: ``{section: why}`` collected while loading and by the sections.
    """

    st: Storage
    files: list[dict]
    funnel: dict
    tables: dict[str, list[str]]
    manifest: dict | None
    lengths: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = field(default_factory=dict)
    doc_tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    tokens_estimated: bool = False
    skipped: dict[str, str] = field(default_factory=dict)

    def table_chars(self, name: str | None) -> int | None:
        """Characters (code points) of table ``name``, or None when it has no files."""
        return int(self.lengths[name][0].sum()) if name in self.lengths else None

    def table_tokens(self, name: str | None) -> int | None:
        """Tokens (no EOT) of table ``name``, or None when they were not counted."""
        if name == "deduped" and "documents" in self.doc_tokens and name in self.lengths:
            m = self.doc_tokens["documents"]
            return int(sum(m.get(i, 0) for i in self.lengths[name][2]))
        if name in self.doc_tokens:
            return int(sum(self.doc_tokens[name].values()))
        return None

    def last_table(self, before: str | None = None) -> str | None:
        """The last document table holding files, among those written before table ``before``
        (all tables when None); None when no table holds files."""
        names = DOC_TABLES if before is None else DOC_TABLES[:DOC_TABLES.index(before)]
        return next((t for t in reversed(names) if self.tables.get(t)), None)


def check_file_stats(st: Storage) -> list[dict]:
    """The per-input stats of ``OUT/stats`` after checking them.

    Raises:
        UserError: no ``stats/`` directory, no per-file stats, a damaged JSON file (named), or a
            per-file stats file lacking ``records``/``kept``/``errors``/``dropped``.
    """
    if not st.isdir("stats"):
        raise UserError(f"{st.uri()} has no stats/ directory; run `curate run INPUTS -o {st.uri()}` first")
    for name in st.list("stats", suffix=".json"):
        read_json(st, f"stats/{name}")  # named error for a damaged file before the funnel reads them all
    files = load_file_stats(st)
    if not files:
        raise UserError(f"{st.uri('stats')} holds no per-file stats (<stem>.json with records/kept); "
                        f"run `curate run INPUTS -o {st.uri()}` first")
    for s in files:
        missing = [k for k in PER_FILE_KEYS if k not in s]
        if missing:
            raise UserError(f"{st.uri('stats/' + s['stem'] + '.json')} lacks keys {missing}; "
                            "re-run `curate run ... --force` to rewrite it")
    return files


def load_run(st: Storage) -> RunData:
    """Read and measure everything the report needs from run directory ``st``.

    Raises:
        UserError: see :func:`check_file_stats`; a damaged manifest or Parquet file.
    """
    files = check_file_stats(st)
    manifest_rel = f"{SHARDS}/manifest.json"
    run = RunData(st=st, files=files, funnel=collect_funnel(st),
                  tables={name: parquet_files(st, name) for name in DOC_TABLES},
                  manifest=read_json(st, manifest_rel) if st.exists(manifest_rel) else None)
    for name, fs in run.tables.items():
        if fs:
            run.lengths[name] = text_lengths(st, fs)
    enc, why = run_encoding(st, run.manifest)
    if enc is None:
        run.skipped["tokens_per_stage"] = why
        return run
    for name in COUNTED_TABLES:
        if name in run.lengths:
            run.doc_tokens[name], est = count_tokens(st, enc, run.tables[name], int(run.lengths[name][0].sum()))
            run.tokens_estimated |= est
    return run
