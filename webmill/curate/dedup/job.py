"""The dedup driver: :func:`run_dedup` runs stages 1-5 (see :mod:`webmill.curate.dedup`) on Ray
and writes ``OUT/stats/dedup.json``."""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webmill.curate import minhash as mh
from webmill.curate.dedup.config import BYTES_PER_BAND_ROW, SHUFFLE_STRATEGIES, DedupConfig
from webmill.curate.dedup.files import read_keep_columns, scan_inputs, write_deduped_file
from webmill.curate.dedup.graph import bucket_udf, component_stats, connected_components
from webmill.curate.dedup.signatures import band_rows_udf
from webmill.errors import UserError
from webmill.storage import Storage, as_storage


def _find_edges(ray, storage: Storage, rels: list[str], offsets, cfg: DedupConfig, num_partitions: int,
                task_args: dict, seconds: dict):
    """Stages 1-2 on Ray Data: band rows of every file, shuffle on ``part``, bucket scan -> edges.

    Returns ``(src, dst, exact)``: int64, int64, bool arrays of the candidate edges.
    """
    t = time.perf_counter()
    items = [{"name": rel, "row_offset": int(offsets[i])} for i, rel in enumerate(rels)]
    fn_kwargs = {"storage": storage, "cfg_dict": dataclasses.asdict(cfg), "num_partitions": num_partitions}
    band_ds = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(band_rows_udf, batch_size=1, fn_kwargs=fn_kwargs, **task_args)
        .materialize()
    )
    seconds["signatures"] = time.perf_counter() - t
    t = time.perf_counter()
    edge_ds = (
        band_ds.groupby("part", num_partitions=num_partitions)
        .map_groups(bucket_udf, batch_format="numpy", **task_args)
        .materialize()
    )
    n_edges = edge_ds.count()
    if n_edges > cfg.max_edges_single_worker:
        raise UserError(
            f"dedup: {n_edges:,} candidate edges exceed max_edges_single_worker={cfg.max_edges_single_worker:,}. "
            "Give the driver more memory and raise --max-edges (about 120 bytes per edge), raise the "
            "similarity threshold (--threshold, or more --rows per band), or dedup each crawl "
            "separately; see docs/dedup.md 'Above the single-worker limit'"
        )
    parts = {"src": [np.empty(0, np.int64)], "dst": [np.empty(0, np.int64)], "exact": [np.empty(0, bool)]}
    for batch in edge_ds.iter_batches(batch_size=None, batch_format="numpy"):
        for k in parts:
            parts[k].append(batch[k])
    seconds["shuffle_buckets"] = time.perf_counter() - t
    return (np.concatenate(parts["src"]).astype(np.int64), np.concatenate(parts["dst"]).astype(np.int64),
            np.concatenate(parts["exact"]).astype(bool))


def _choose_removed(ray, storage: Storage, rels, offsets, bounds, nodes, comp, use_quality: bool,
                    task_args: dict) -> np.ndarray:
    """Stage 4: bool per node, True unless it is its component's best by the keep rule
    (highest ``quality_score``, missing = lowest; ties -> smallest ``id`` -> smallest node)."""
    read_remote = ray.remote(read_keep_columns).options(**task_args)
    refs = [
        read_remote.remote(storage, rels[i], nodes[bounds[i] : bounds[i + 1]] - offsets[i])
        for i in range(len(rels))
        if bounds[i + 1] > bounds[i]
    ]
    empty = pa.table({"id": pa.array([], pa.string()), "q": pa.array([], pa.float64())})
    table = pa.concat_tables([empty] + ray.get(refs))  # in file order, hence in node order
    if not use_quality:
        table = table.set_column(1, "q", pa.nulls(len(table), pa.float64()))
    table = table.append_column("comp", pa.array(comp)).append_column("node", pa.array(nodes))
    sort_keys = [("comp", "ascending", "at_end"), ("q", "descending", "at_end"),
                 ("id", "ascending", "at_end"), ("node", "ascending", "at_end")]
    order = pc.sort_indices(table, sort_keys=sort_keys).to_numpy()
    comp_sorted = comp[order]
    best = order[np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]])] if len(order) else order
    remove = np.ones(len(nodes), dtype=bool)
    remove[best] = False
    return remove


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_dedup(
    out_dir: str | os.PathLike | Storage, cfg: DedupConfig, input_subdir: str = "documents",
    output_subdir: str = "deduped",
) -> dict:
    """Run exact + MinHash dedup over ``out_dir/input_subdir/*.parquet``.

    Writes ``out_dir/output_subdir/<stem>.parquet`` for every input (same columns + int64
    ``dedup_cluster``: the smallest global row index of the document's duplicate component, -1
    when it has no duplicate; global row index = rows of the name-sorted files before it + row)
    and ``out_dir/stats/dedup.json``. Output files of an earlier run without a matching input
    are deleted, and so are temp files a killed run left in ``output_subdir``. Uses the running
    Ray if ``ray.is_initialized()``, else starts (and stops) a local one. Deterministic: a rerun
    on the same input gives byte-identical files.

    Args:
        out_dir: the run's ``OUT``: a local path or an fsspec URL (``s3://bucket/out``) that the
            Ray workers can reach (``memory://`` is per process: it works only for the
            driver-side checks, not for the Ray stages).
        cfg: the settings (validated here).
        input_subdir, output_subdir: subdirectories of ``OUT`` read and written.

    Returns:
        the stats dict (also written to ``stats/dedup.json``).

    Raises:
        UserError: invalid config (names the key), missing/empty input directory, an input
        file without ``id``/``text`` column or unreadable, or more candidate edges than
        ``cfg.max_edges_single_worker``.
    """
    import ray

    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    cfg.validate()
    bands, rows = cfg.resolved_bands_rows()
    storage = as_storage(out_dir)
    names, offsets, has_quality = scan_inputs(storage, input_subdir)
    rels = [f"{input_subdir}/{name}" for name in names]
    n_docs = int(offsets[-1])
    band_rows_total = n_docs * ((bands if cfg.minhash else 0) + (1 if cfg.exact else 0))

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init()
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.use_disk_based_hash_shuffle, ctx.shuffle_strategy)
    try:
        ctx.enable_progress_bars = False
        ctx.shuffle_strategy = SHUFFLE_STRATEGIES[cfg.shuffle]
        object_store = int(ray.cluster_resources().get("object_store_memory", 0))
        if band_rows_total * BYTES_PER_BAND_ROW > 0.5 * object_store:
            ctx.use_disk_based_hash_shuffle = True  # only read by the "hash" shuffle
        num_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        num_partitions = max(num_cpus, math.ceil(band_rows_total / cfg.shuffle_rows_per_partition))
        task_args = {"memory": cfg.task_memory_bytes} if cfg.task_memory_bytes else {}
        seconds["plan"] = time.perf_counter() - t_start

        src, dst, exact = _find_edges(ray, storage, rels, offsets, cfg, num_partitions, task_args, seconds)

        t = time.perf_counter()
        nodes, comp = connected_components(src, dst)
        exact_nodes, exact_comp = connected_components(src[exact], dst[exact])
        seconds["components"] = time.perf_counter() - t

        t = time.perf_counter()
        bounds = np.searchsorted(nodes, offsets)  # nodes of file i: nodes[bounds[i]:bounds[i+1]]
        remove = _choose_removed(ray, storage, rels, offsets, bounds, nodes, comp,
                                 has_quality and cfg.keep != "id", task_args)
        seconds["keep"] = time.perf_counter() - t

        t = time.perf_counter()
        storage.makedirs(output_subdir)
        write_remote = ray.remote(write_deduped_file).options(**task_args)
        refs = [
            write_remote.remote(
                storage, rel, f"{output_subdir}/{name}", nodes[bounds[i] : bounds[i + 1]] - offsets[i],
                comp[bounds[i] : bounds[i + 1]], remove[bounds[i] : bounds[i + 1]], cfg.batch_docs,
            )
            for i, (rel, name) in enumerate(zip(rels, names))
        ]
        written = ray.get(refs)
        stale = sorted(set(storage.list(output_subdir, suffix=".parquet")) - set(names))
        for name in stale:
            storage.remove(f"{output_subdir}/{name}")
        storage.sweep_temps(output_subdir)  # left by a run killed mid-write
        seconds["write"] = time.perf_counter() - t
    finally:
        ctx.enable_progress_bars, ctx.use_disk_based_hash_shuffle, ctx.shuffle_strategy = saved
        if started_ray:
            ray.shutdown()

    c = component_stats(nodes, comp, exact_nodes, exact_comp)
    removed = int(remove.sum())
    stats = {
        "documents_in": n_docs,
        "documents_out": n_docs - removed,
        "documents_removed": removed,
        "files": len(names),
        "exact": {"enabled": cfg.exact, "duplicate_groups": c["exact_groups"], "documents_removed": c["exact_removed"]},
        "minhash": {
            "enabled": cfg.minhash,
            "num_perm": cfg.num_perm, "bands": bands, "rows": rows, "threshold": cfg.threshold,
            "shingle_size": cfg.shingle_size, "seed": cfg.seed, "hash_func": cfg.hash_func, "scheme": cfg.scheme,
            "s_curve": {f"{j:.1f}": round(float(mh.candidate_probability(j, bands, rows)), 6) for j in (0.5, 0.7, 0.8, 0.9)},
            "near_duplicate_components": c["near_components"],
            "component_size_histogram": c["near_histogram"],
            "documents_removed": removed - c["exact_removed"],
        },
        "components": c["components"],
        "candidate_edges": int(len(src)),
        "shuffle": {"strategy": cfg.shuffle, "partitions": num_partitions, "band_rows": band_rows_total,
                    "bytes_estimate": band_rows_total * BYTES_PER_BAND_ROW, "object_store_bytes": object_store},
        "per_file": [{"file": name, "documents_in": w["in"], "documents_out": w["out"]} for name, w in zip(names, written)],
        "stale_outputs_removed": stale,
        "config": dataclasses.asdict(cfg),
        "peak_rss_driver_bytes": _peak_rss_bytes(),
    }
    seconds["total"] = time.perf_counter() - t_start
    stats["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    storage.write_json("stats/dedup.json", stats, indent=2, sort_keys=True)
    return stats
