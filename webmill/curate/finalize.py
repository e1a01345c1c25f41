"""PII scrubbing and quality scoring over ``OUT/deduped`` → ``OUT/final`` (``curate finalize``).

Pass 1 runs per input file on a pool of Ray actors (the PII filter and the fastText quality
model load once per actor): PII replacement/drops, ``pii_counts`` (struct column of int32
hits per type) and ``quality_score`` (float32). Pass 2 is global and cheap: the quality keep rule that
needs the whole run (``top_fraction``) or the Nemotron-CC buckets (token-weighted percentiles
of the score over all documents, Su et al. 2024, section 2.2) are computed in the driver from
the scores, and each file gets its ``quality_bucket`` column / final filtering.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webmill.config import class_for, kwargs_of
from webmill.curate.outputs import write_json_atomic, write_parquet_atomic
from webmill.errors import UserError
from webmill.filters.base import Document


class FileFinalizer:
    """PII + quality scoring of one documents file at a time (one per Ray actor)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.pii = class_for(("pii",))(**kwargs_of(cfg["pii"])) if cfg["pii"].get("enabled", True) else None
        q = cfg["quality"]
        self.scorer = None
        if q.get("enabled", False):
            from webmill.filters.quality import DEFAULT_MODEL_PATH, QualityScorer

            self.scorer = QualityScorer(q.get("model_path") or DEFAULT_MODEL_PATH)

    def process(self, src: str, dst: str) -> dict:
        """Read ``src`` Parquet, write ``dst`` Parquet; return per-file stats."""
        t0 = time.perf_counter()
        table = pq.read_table(src)
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
        write_parquet_atomic(table, Path(dst))
        return {"file": Path(src).name, "documents_in": len(texts), "documents_out": table.num_rows,
                "dropped": dict(dropped), "pii_counts": dict(pii_totals),
                "seconds": {k: round(v, 4) for k, v in secs.items()},
                "seconds_total": round(time.perf_counter() - t0, 4)}


def _set(table: pa.Table, name: str, col: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, col)
    return table.append_column(name, col)


def _apply_quality_keep(files: list[Path], qcfg: dict) -> dict:
    """Global pass: buckets / top fraction / threshold over all ``quality_score`` values."""
    from webmill.curate.quality import approx_num_tokens, assign_buckets, compute_buckets, keep_mask

    tables = [pq.read_table(f) for f in files]
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
        write_parquet_atomic(t, f)
        start += n
    stats.update({"documents_out": int(keep.sum()), "bucket_edges": [float(e) for e in edges],
                  "bucket_sizes": np.bincount(buckets, minlength=qcfg["n_buckets"]).tolist(),
                  "score_histogram": np.histogram(scores, bins=20, range=(0, 1))[0].tolist()})
    return stats


def run_finalize(out: Path, cfg: dict, input_subdir: str = "deduped", output_subdir: str = "final") -> dict:
    """Run PII + quality over ``OUT/<input_subdir>/*.parquet`` into ``OUT/<output_subdir>/``.

    Returns the stats written to ``OUT/stats/final.json``.

    Raises:
        UserError: the input directory has no Parquet files.
    """
    import ray
    from ray.util import ActorPool

    out = Path(out)
    src_dir = out / input_subdir
    files = sorted(src_dir.glob("*.parquet"))
    if not files:
        raise UserError(f"no Parquet files in {src_dir} (run `curate dedup {out}` first)")
    dst_dir = out / output_subdir
    dst_dir.mkdir(parents=True, exist_ok=True)
    for stale in dst_dir.glob("*.parquet"):
        stale.unlink()
    t0 = time.perf_counter()
    n = max(1, min(len(files), cfg["ray"]["num_workers"] or int(ray.cluster_resources().get("CPU", 1))))
    Finalizer = ray.remote(num_cpus=1)(FileFinalizer)
    pool = ActorPool([Finalizer.remote(cfg) for _ in range(n)])
    per_file = list(pool.map(lambda a, f: a.process.remote(str(f), str(dst_dir / f.name)), files))
    dropped: Counter = Counter()
    pii: Counter = Counter()
    for s in per_file:
        dropped.update(s["dropped"])
        pii.update(s["pii_counts"])
    stats = {"documents_in": sum(s["documents_in"] for s in per_file),
             "documents_out": sum(s["documents_out"] for s in per_file),
             "dropped": dict(dropped), "pii_counts": dict(pii), "files": per_file}
    if cfg["quality"].get("enabled", False):
        q = _apply_quality_keep(sorted(dst_dir.glob("*.parquet")), cfg["quality"])
        stats["quality"] = q
        stats["dropped"]["quality"] = q["documents_in"] - q["documents_out"]
        stats["documents_out"] = q["documents_out"]
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(stats, out / "stats" / "final.json")
    return stats
