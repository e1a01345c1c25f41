"""PII scrubbing and quality scoring over ``OUT/deduped`` → ``OUT/final`` (``curate finalize``).

Pass 1 runs per input file on the per-file actor scheduler
(:func:`webmill.curate.workers.map_files`; the PII filter and the fastText quality model load
once per actor): PII replacement/drops, ``pii_counts`` (struct column of int32
hits per type) and ``quality_score`` (float32). Pass 2 is global and cheap: the quality keep rule that
needs the whole run (``top_fraction``) or the Nemotron-CC buckets (token-weighted percentiles
of the score over all documents, Su et al. 2024, section 2.2) are computed in the driver from
the scores and word counts pass 1 returned (no text is read back for them), then each file is
rewritten in turn with its ``quality_bucket`` column / final filtering (one file in memory at a
time).

Quality scoring is on by default in ``buckets`` mode (issue 19): every document gets
``quality_score`` and ``quality_bucket``, nothing is dropped, so the kept set is FineWeb's.

What each drop was, besides the counts (issue 19, items 5 and 6), all relative to ``OUT``:

* ``examples/final/<name>.parquet`` — per input file, at most ``[output] examples_per_reason``
  PII drops (``pii_<type>``) and quality drops (``quality``) per reason
  (:class:`~webmill.curate.examples.ExampleSampler`, :data:`~webmill.curate.examples.EXAMPLE_SCHEMA`);
* with ``[output] write_removed``: ``removed/pii/<name>.parquet`` and
  ``removed/quality/<name>.parquet`` — every dropped document with every column of the final
  table plus :data:`DECISION_FIELDS` (``stage``, ``reason``, ``drop_value``, ``drop_threshold``,
  ``drop_detail``). The text of a PII drop is the scrubbed text (the placeholders, not the PII).

``OUT`` may be a local directory or any fsspec URL: every read and write goes through
:class:`webmill.storage.Storage`.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np
import pyarrow as pa

from webmill.config import kwargs_of
from webmill.curate.examples import EXAMPLES_DIR, ExampleSampler
from webmill.curate.outputs import REMOVED_SCHEMA, decision_float
from webmill.curate.stages import class_for
from webmill.errors import UserError
from webmill.filters.base import DROP_DETAIL, DROP_THRESHOLD, DROP_VALUE, Document
from webmill.storage import Storage, as_storage, is_url

#: the columns a removed row has after the final table's: the decision columns of
#: :data:`webmill.curate.outputs.REMOVED_SCHEMA` (the per-document stages' removed rows)
DECISION_FIELDS = [REMOVED_SCHEMA.field(n) for n in ("stage", "reason", "drop_value", "drop_threshold", "drop_detail")]
REMOVED_PII, REMOVED_QUALITY = "removed/pii", "removed/quality"
EXAMPLES_FINAL = f"{EXAMPLES_DIR}/final"
QUALITY_REASON = "quality"


class FileFinalizer:
    """PII + quality scoring of one documents file at a time (one per Ray actor).

    Args:
        cfg: pipeline config (``pii``, ``quality``, ``output`` tables).
        out: ``OUT`` (local path, fsspec URL or Storage); ``process`` names files relative to it.
    """

    def __init__(self, cfg: dict, out: str | os.PathLike | Storage):
        self.cfg = cfg
        self.out = as_storage(out)
        self.pii = class_for(("pii",))(**kwargs_of(cfg["pii"])) if cfg["pii"].get("enabled", True) else None
        q = cfg["quality"]
        self.scorer = None
        if q.get("enabled", False):
            from webmill.filters.quality import DEFAULT_MODEL_PATH, QualityScorer

            self.scorer = QualityScorer(q.get("model_path") or DEFAULT_MODEL_PATH)
        self.per_reason = int(cfg["output"].get("examples_per_reason", 0))
        self.write_removed = bool(cfg["output"].get("write_removed", False))

    def process(self, src: str, dst: str) -> dict:
        """Read Parquet ``OUT/<src>``, publish ``OUT/<dst>`` (and its examples / removed rows).

        Returns the file's stats; with quality scoring also ``_scores`` (float32) and ``_words``
        (int64 whitespace words of the scrubbed text) of the kept rows, in row order, which
        :func:`run_finalize` takes out before writing ``stats/final.json``.
        """
        t0 = time.perf_counter()
        name = dst.rsplit("/", 1)[-1]
        table = self.out.read_parquet(src)
        texts = table.column("text").to_pylist()
        urls = table.column("url").to_pylist()
        n = len(texts)
        langs = table.column("language").to_pylist() if "language" in table.column_names else [None] * n
        keep = np.ones(n, dtype=bool)
        dropped: Counter = Counter()
        pii_totals: Counter = Counter()
        pii_rows: list[dict] = []
        decisions: dict[int, tuple] = {}  # row -> (reason, value, threshold, detail)
        secs: Counter = Counter()
        if self.pii is not None:
            t = time.perf_counter()
            for i, (text, url, lang) in enumerate(zip(texts, urls, langs)):
                doc = Document(text=text, url=url or "", metadata={"language": lang})
                ok, reason = self.pii.filter(doc)
                texts[i] = doc.text
                counts = doc.metadata.get("pii_counts", {})
                pii_totals.update(counts)
                pii_rows.append(counts)
                if not ok:
                    keep[i] = False
                    dropped[reason] += 1
                    decisions[i] = (reason, *self._pii_decision(doc, reason, counts))
            secs["pii"] += time.perf_counter() - t
            table = table.set_column(table.column_names.index("text"), "text",
                                     pa.array(texts, type=pa.large_string()))
            from webmill.filters.pii import PII_TYPES

            struct = pa.struct([(t, pa.int32()) for t in PII_TYPES])
            table = _set(table, "pii_counts", pa.array(pii_rows, type=struct))
        res: dict = {}
        if self.scorer is not None:
            from webmill.curate.quality import approx_num_tokens

            t = time.perf_counter()
            scores = np.asarray(self.scorer.score(texts) if texts else np.zeros(0, np.float32), np.float32)
            secs["quality_score"] += time.perf_counter() - t
            table = _set(table, "quality_score", pa.array(scores))
            res["_scores"] = scores[keep]
            res["_words"] = approx_num_tokens([x for x, k in zip(texts, keep) if k])
        rows = sorted(decisions)
        if self.write_removed:
            self.out.write_parquet(f"{REMOVED_PII}/{name}",
                                   removed_rows(table, rows, "pii", [decisions[i] for i in rows]))
        if self.per_reason:
            sampler = ExampleSampler(self.per_reason)
            _offer(sampler, table, rows, "pii", [decisions[i] for i in rows])
            self.out.write_parquet(f"{EXAMPLES_FINAL}/{name}", sampler.table())
        table = table.filter(pa.array(keep))
        self.out.write_parquet(dst, table)
        return {"file": src.rsplit("/", 1)[-1], "documents_in": n, "documents_out": table.num_rows,
                "dropped": dict(dropped), "pii_counts": dict(pii_totals),
                "seconds": {k: round(v, 4) for k, v in secs.items()},
                "seconds_total": round(time.perf_counter() - t0, 4), **res}

    def _pii_decision(self, doc: Document, reason: str, counts: dict) -> tuple:
        """``(value, threshold, detail)`` of a PII drop: the filter's own record when it made one
        (:func:`webmill.filters.base.dropped`), else the hits of the type against its
        ``drop_over`` limit (the type drops when hits > limit; ``drop`` = limit 0)."""
        md = doc.metadata
        if md.get(DROP_VALUE) is not None or md.get(DROP_DETAIL):
            return md.get(DROP_VALUE), md.get(DROP_THRESHOLD), md.get(DROP_DETAIL)
        kind = reason.removeprefix("pii_")
        hits, limit = counts.get(kind), self.pii.thresholds.get(kind)
        return hits, limit, f"{kind} hits {hits} > {limit}"


def _set(table: pa.Table, name: str, col: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, col)
    return table.append_column(name, col)


def removed_rows(table: pa.Table, rows: list[int], stage: str, decisions: list[tuple]) -> pa.Table:
    """Rows ``rows`` of ``table`` (every column, same types) plus :data:`DECISION_FIELDS`.

    Args:
        table: the file's table as the final table would hold it (scrubbed text, scores).
        rows: int row numbers of the dropped documents, ascending.
        stage: ``"pii"`` or ``"quality"``.
        decisions: per row ``(reason, value, threshold, detail)`` (value/threshold float or None).
    """
    t = table.take(pa.array(rows, pa.int64()))
    cols = {"stage": [stage] * len(rows), "reason": [d[0] for d in decisions],
            "drop_value": [decision_float(d[1]) for d in decisions],
            "drop_threshold": [decision_float(d[2]) for d in decisions],
            "drop_detail": [d[3] for d in decisions]}
    for f in DECISION_FIELDS:
        t = _set(t, f.name, pa.array(cols[f.name], f.type))
    return t


def _offer(sampler: ExampleSampler, table: pa.Table, rows: list[int], stage: str, decisions: list[tuple]) -> None:
    """Offer the dropped ``rows`` of ``table`` to ``sampler`` (only the columns it keeps are read)."""
    if not rows:
        return
    sub = table.take(pa.array(rows, pa.int64()))
    get = {c: (sub.column(c).to_pylist() if c in sub.column_names else [None] * len(rows))
           for c in ("id", "url", "text", "language", "language_score")}
    for j, (reason, value, threshold, detail) in enumerate(decisions):
        sampler.offer(reason, stage, id=get["id"][j], url=get["url"][j], text=get["text"][j],
                      language=get["language"][j], language_score=get["language_score"][j],
                      value=value, threshold=threshold, detail=detail)


def quality_decisions(scores: np.ndarray, keep: np.ndarray, qcfg: dict) -> tuple[float | None, str]:
    """``(threshold, detail format)`` of the quality drops of a run.

    ``threshold`` mode: the configured threshold (``score < threshold`` drops). ``top_fraction``:
    the cut score, the lowest score kept (a dropped document may tie it: ties go by id). The
    format takes the score as ``{0}``.
    """
    mode = qcfg["mode"]
    if mode == "threshold":
        thr = float(qcfg["threshold"])
        return thr, f"quality_score {{0:.4f}} < {thr:g}"
    cut = float(scores[keep].min()) if keep.any() else None
    pct = f"{100 * float(qcfg['top_fraction']):g}%"
    return cut, f"quality_score {{0:.4f}} outside top {pct}" + (f" (cut {cut:.4f})" if cut is not None else "")


def model_name(model_path: str) -> str:
    """How final.json names the scoring model: the file name of the bundled model, else the
    configured ``model_path`` as given (no absolute path of this machine for the bundled one)."""
    from webmill.filters.quality import DEFAULT_MODEL_PATH

    return DEFAULT_MODEL_PATH.name if not model_path else str(model_path)


def _apply_quality_keep(st: Storage, names: list[str], output_subdir: str, per_file: list[dict], cfg: dict) -> dict:
    """Global pass: buckets / top fraction / threshold over all ``quality_score`` values (taken
    from ``per_file``'s ``_scores``/``_words``, aligned with ``names``), then each
    ``output_subdir/<name>`` rewritten in place with ``quality_bucket`` and without the drops
    (plus their examples and removed rows)."""
    from webmill.curate.quality import assign_buckets, compute_buckets, keep_mask

    qcfg, out_cfg = cfg["quality"], cfg["output"]
    mode = qcfg["mode"]
    if mode not in ("threshold", "top_fraction", "buckets"):
        raise UserError(f"config quality.mode must be threshold, top_fraction or buckets, got {mode!r}")
    stats: dict = {"mode": mode, "model_path": model_name(qcfg.get("model_path") or "")}
    if mode != "buckets":
        stats[mode] = qcfg[mode]
    scores = np.concatenate([np.zeros(0, np.float32)] + [s["_scores"] for s in per_file])
    words = np.concatenate([np.zeros(0, np.int64)] + [s["_words"] for s in per_file])
    stats["documents_in"] = int(len(scores))
    if len(scores) == 0:
        return stats | {"documents_out": 0}
    edges = compute_buckets(scores, words, n_buckets=qcfg["n_buckets"])
    buckets = assign_buckets(scores, edges)
    if mode == "buckets":
        keep = np.ones(len(scores), dtype=bool)
    else:
        ids = None
        if mode == "top_fraction":  # the tie-break reads the ids only
            ids = [i for n in names for i in st.read_parquet(f"{output_subdir}/{n}", columns=["id"]).column("id").to_pylist()]
        keep = keep_mask(scores, mode=mode, threshold=qcfg["threshold"], fraction=qcfg["top_fraction"], ids=ids)
    threshold, fmt = quality_decisions(scores, keep, qcfg) if mode != "buckets" else (None, "")
    per_reason = int(out_cfg.get("examples_per_reason", 0))
    start = 0
    for name, s in zip(names, per_file):
        n = len(s["_scores"])
        rel = f"{output_subdir}/{name}"
        t = _set(st.read_parquet(rel), "quality_bucket", pa.array(buckets[start:start + n], type=pa.int32()))
        k = keep[start:start + n]
        rows = np.flatnonzero(~k).tolist()
        dec = [(QUALITY_REASON, float(scores[start + i]), threshold, fmt.format(float(scores[start + i])))
               for i in rows]
        if out_cfg.get("write_removed", False) and mode != "buckets":
            st.write_parquet(f"{REMOVED_QUALITY}/{name}", removed_rows(t, rows, "quality", dec))
        if per_reason and rows:
            sampler = ExampleSampler(per_reason)
            _offer(sampler, t, rows, "quality", dec)
            ex = f"{EXAMPLES_FINAL}/{name}"
            old = [st.read_parquet(ex)] if st.exists(ex) else []
            st.write_parquet(ex, pa.concat_tables(old + [sampler.table()]))
        t = t.filter(pa.array(k))
        st.write_parquet(rel, t)
        start += n
    n_buckets = qcfg["n_buckets"]
    stats.update({"documents_out": int(keep.sum()), "bucket_edges": [float(e) for e in edges],
                  "bucket_sizes": np.bincount(buckets, minlength=n_buckets).tolist(),
                  "bucket_words": np.bincount(buckets, weights=words, minlength=n_buckets).astype(np.int64).tolist(),
                  "score_histogram": np.histogram(scores, bins=20, range=(0, 1))[0].tolist()})
    return stats


def _clear(st: Storage, sub: str) -> None:
    """Delete ``sub/*.parquet`` and temp files below ``sub`` (finalize rewrites all of them)."""
    if st.isdir(sub):
        for stale in st.list(sub, suffix=".parquet"):
            st.remove(f"{sub}/{stale}")
        st.sweep_temps(sub)


def run_finalize(out: str | os.PathLike | Storage, cfg: dict, input_subdir: str = "deduped",
                 output_subdir: str = "final") -> dict:
    """Run PII + quality over ``OUT/<input_subdir>/*.parquet`` into ``OUT/<output_subdir>/``.

    Args:
        out: ``OUT``: a local path, an fsspec URL or a Storage.
        cfg: pipeline config (``pii``, ``quality``, ``output``, ``ray`` tables).

    Writes (besides ``OUT/<output_subdir>/<name>``) ``examples/final/<name>.parquet`` when
    ``[output] examples_per_reason > 0`` and ``removed/pii/<name>.parquet`` (and
    ``removed/quality/<name>.parquet`` when the quality mode drops) with ``write_removed``;
    those directories' earlier files are deleted first. Returns the stats written to
    ``OUT/stats/final.json``; with quality its ``quality`` table holds ``mode``, ``model_path``,
    ``documents_in``/``documents_out``, ``bucket_edges`` (``n_buckets - 1`` interior edges),
    ``bucket_sizes`` (documents) and ``bucket_words`` (whitespace words of the final text) per
    bucket, ``score_histogram`` (20 bins over [0, 1]) and ``threshold`` / ``top_fraction`` in
    those modes.

    Raises:
        UserError: the input directory has no Parquet files; unknown ``quality.mode``.
        RuntimeError: a file failed (its worker raised, or died more than ``ray.max_retries``
            times); ``OUT/stats/final.json`` is then not written.
    """
    from webmill.curate.workers import map_files, map_options

    st = as_storage(out)
    names = st.list(input_subdir, suffix=".parquet")
    if not names:
        raise UserError(f"no Parquet files in {st.uri(input_subdir)} (run `curate dedup {st.uri()}` first)")
    st.makedirs(output_subdir)
    for sub in (output_subdir, EXAMPLES_FINAL, REMOVED_PII, REMOVED_QUALITY):
        _clear(st, sub)
    if cfg["output"].get("examples_per_reason", 0):
        st.makedirs(EXAMPLES_FINAL)
    if cfg["output"].get("write_removed", False):
        st.makedirs(REMOVED_PII)
        if cfg["quality"].get("enabled", False) and cfg["quality"]["mode"] != "buckets":
            st.makedirs(REMOVED_QUALITY)
    t0 = time.perf_counter()
    model = cfg["quality"].get("model_path") or ""
    if model and not is_url(model) and not os.path.isabs(model):
        # a path relative to where the command runs: the Ray workers may run elsewhere
        cfg = {**cfg, "quality": {**cfg["quality"], "model_path": os.path.abspath(model)}}
    per_file, failures = map_files(FileFinalizer, (cfg, st),
                                   [(f"{input_subdir}/{n}", f"{output_subdir}/{n}") for n in names],
                                   **map_options(cfg["ray"]), name="FinalizeWorker")
    if failures:
        i, reason = failures[0]
        raise RuntimeError(f"finalize failed on {st.uri(input_subdir)}/{names[i]}: {reason}"
                           + (f" (and {len(failures) - 1} more files)" if len(failures) > 1 else ""))
    dropped: Counter = Counter()
    pii: Counter = Counter()
    for s in per_file:
        dropped.update(s["dropped"])
        pii.update(s["pii_counts"])
    stats = {"documents_in": sum(s["documents_in"] for s in per_file),
             "documents_out": sum(s["documents_out"] for s in per_file),
             "dropped": dict(dropped), "pii_counts": dict(pii), "files": per_file}
    if cfg["quality"].get("enabled", False):
        q = _apply_quality_keep(st, names, output_subdir, per_file, cfg)
        stats["quality"] = q
        stats["dropped"]["quality"] = q["documents_in"] - q["documents_out"]
        stats["documents_out"] = q["documents_out"]
    for s in per_file:
        s.pop("_scores", None)
        s.pop("_words", None)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    st.write_json("stats/final.json", stats)
    return stats
