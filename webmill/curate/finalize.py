"""PII scrubbing and quality scoring over ``OUT/deduped`` → ``OUT/final`` (``curate finalize``).

Pass 1 runs per input file on the per-file actor scheduler
(:func:`webmill.curate.workers.map_files`; the PII filter and the fastText quality model load
once per actor): PII replacement/drops, ``pii_counts`` (struct column of int32
hits per type) and ``quality_score`` (float32). Pass 2 is global and cheap: the quality keep rule that
needs the whole run (``top_fraction``) or the Nemotron-CC buckets (token-weighted percentiles
of the score over all documents, Su et al. 2024, section 2.2) are computed in the driver from
the scores, and each file gets its ``quality_bucket`` column / final filtering.

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
from webmill.curate.stages import class_for
from webmill.errors import UserError
from webmill.filters.base import Document
from webmill.storage import Storage, as_storage


class FileFinalizer:
    """PII + quality scoring of one documents file at a time (one per Ray actor).

    Args:
        cfg: pipeline config.
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

    def process(self, src: str, dst: str) -> dict:
        """Read Parquet ``OUT/<src>``, publish ``OUT/<dst>``; return per-file stats."""
        t0 = time.perf_counter()
        table = self.out.read_parquet(src)
        texts = table.column("text").to_pylist()
        urls = table.column("url").to_pylist()
        langs = table.column("language").to_pylist() if "language" in table.column_names else [None] * len(texts)
        keep = np.ones(len(texts), dtype=bool)
        dropped: Counter = Counter()
        pii_totals: Counter = Counter()
        pii_rows: list[dict] = []
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
            secs["pii"] += time.perf_counter() - t
            table = table.set_column(table.column_names.index("text"), "text",
                                     pa.array(texts, type=pa.large_string()))
            from webmill.filters.pii import PII_TYPES

            struct = pa.struct([(t, pa.int32()) for t in PII_TYPES])
            table = _set(table, "pii_counts", pa.array(pii_rows, type=struct))
        if self.scorer is not None:
            t = time.perf_counter()
            scores = self.scorer.score(texts) if texts else np.zeros(0, np.float32)
            secs["quality_score"] += time.perf_counter() - t
            table = _set(table, "quality_score", pa.array(np.asarray(scores, np.float32)))
        table = table.filter(pa.array(keep))
        self.out.write_parquet(dst, table)
        return {"file": src.rsplit("/", 1)[-1], "documents_in": len(texts), "documents_out": table.num_rows,
                "dropped": dict(dropped), "pii_counts": dict(pii_totals),
                "seconds": {k: round(v, 4) for k, v in secs.items()},
                "seconds_total": round(time.perf_counter() - t0, 4)}


def _set(table: pa.Table, name: str, col: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, col)
    return table.append_column(name, col)


def _apply_quality_keep(st: Storage, files: list[str], qcfg: dict) -> dict:
    """Global pass: buckets / top fraction / threshold over all ``quality_score`` values of
    ``files`` (paths relative to ``st``), rewritten in place."""
    from webmill.curate.quality import approx_num_tokens, assign_buckets, compute_buckets, keep_mask

    tables = [st.read_parquet(f) for f in files]
    if not tables or sum(t.num_rows for t in tables) == 0:
        return {"mode": qcfg["mode"], "documents_in": 0, "documents_out": 0}
    scores = np.concatenate([t.column("quality_score").to_numpy() for t in tables])
    # Token weights before tokenization: whitespace words (proportional to tokens; see quality.py).
    weights = np.concatenate([approx_num_tokens(t.column("text").to_pylist()) for t in tables])
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    mode = qcfg["mode"]
    stats: dict = {"mode": mode, "documents_in": int(len(scores))}
    edges = compute_buckets(scores, weights, n_buckets=qcfg["n_buckets"])
    buckets = assign_buckets(scores, edges)
    if mode == "buckets":
        keep = np.ones(len(scores), dtype=bool)
    elif mode in ("threshold", "top_fraction"):
        keep = keep_mask(scores, mode=mode, threshold=qcfg["threshold"], fraction=qcfg["top_fraction"], ids=ids)
    else:
        raise UserError(f"config quality.mode must be threshold, top_fraction or buckets, got {mode!r}")
    start = 0
    for f, t in zip(files, tables):
        n = t.num_rows
        t = _set(t, "quality_bucket", pa.array(buckets[start:start + n], type=pa.int32()))
        t = t.filter(pa.array(keep[start:start + n]))
        st.write_parquet(f, t)
        start += n
    stats.update({"documents_out": int(keep.sum()), "bucket_edges": [float(e) for e in edges],
                  "bucket_sizes": np.bincount(buckets, minlength=qcfg["n_buckets"]).tolist(),
                  "score_histogram": np.histogram(scores, bins=20, range=(0, 1))[0].tolist()})
    return stats


def run_finalize(out: str | os.PathLike | Storage, cfg: dict, input_subdir: str = "deduped",
                 output_subdir: str = "final") -> dict:
    """Run PII + quality over ``OUT/<input_subdir>/*.parquet`` into ``OUT/<output_subdir>/``.

    Args:
        out: ``OUT``: a local path, an fsspec URL or a Storage.
        cfg: pipeline config (``pii``, ``quality``, ``ray`` tables).

    Returns the stats written to ``OUT/stats/final.json``.

    Raises:
        UserError: the input directory has no Parquet files.
        RuntimeError: a file failed (its worker raised, or died more than ``ray.max_retries``
            times); ``OUT/stats/final.json`` is then not written.
    """
    from webmill.curate.workers import map_files, map_options

    st = as_storage(out)
    names = st.list(input_subdir, suffix=".parquet")
    if not names:
        raise UserError(f"no Parquet files in {st.uri(input_subdir)} (run `curate dedup {st.uri()}` first)")
    st.makedirs(output_subdir)
    for stale in st.list(output_subdir, suffix=".parquet"):
        st.remove(f"{output_subdir}/{stale}")
    st.sweep_temps(output_subdir)
    t0 = time.perf_counter()
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
        q = _apply_quality_keep(st, [f"{output_subdir}/{n}" for n in st.list(output_subdir, suffix=".parquet")],
                                cfg["quality"])
        stats["quality"] = q
        stats["dropped"]["quality"] = q["documents_in"] - q["documents_out"]
        stats["documents_out"] = q["documents_out"]
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    st.write_json("stats/final.json", stats)
    return stats
