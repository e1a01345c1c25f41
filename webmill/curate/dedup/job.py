"""The dedup driver: :func:`run_dedup` runs stages 1-5 (see :mod:`webmill.curate.dedup`) on Ray
and writes ``OUT/stats/dedup.json``.

Components: ``cfg.components`` picks the single-worker path (scipy on the driver, edges pulled
and deduplicated here) or the distributed one (:mod:`~webmill.curate.dedup.components`, Ray
tasks on the edge blocks; ``"auto"`` above ``distributed_min_edges``). Both give the same
components on the same edges, hence the same kept documents and byte-identical outputs. The
keep step follows the path: on the driver (:func:`~webmill.curate.dedup.keep.choose_kept`) or
as Ray tasks (:func:`~webmill.curate.dedup.keep.distributed_keep`); either way the write tasks
get one decision table per file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import time

import numpy as np

from webmill.curate import minhash as mh
from webmill.curate.dedup import index as dindex
from webmill.curate.dedup.config import BYTES_PER_BAND_ROW, SHUFFLE_STRATEGIES, DedupConfig
from webmill.curate.dedup.files import scan_inputs, write_deduped_file
from webmill.curate.dedup.graph import (bucket_udf, component_stats, connected_components, exact_groups,
                                        exact_representatives, unique_edges)
from webmill.curate.dedup.keep import REASON_EXACT, REASON_NEAR, choose_kept, distributed_keep, removal_details
from webmill.curate.dedup.signatures import band_rows_udf
from webmill.curate.examples import EXAMPLES_DIR, ExampleSampler
from webmill.errors import UserError
from webmill.storage import Storage, as_storage

REMOVED_SUBDIR = "removed/dedup"
EXAMPLES_SUBDIR = f"{EXAMPLES_DIR}/dedup"


def _need_ids(cfg: DedupConfig) -> bool:
    """Whether the keep step resolves the kept document's id of each removed one (for
    ``removed/dedup/`` or the examples)."""
    return cfg.write_removed or cfg.examples_per_reason > 0


def _find_edges(ray, storage: Storage, rels: list[str], offsets, cfg: DedupConfig, num_partitions: int,
                task_args: dict, seconds: dict, against: dindex.Against):
    """Stages 1-2 on Ray Data: band rows of every file (and of the earlier runs' indexes), shuffle
    on ``part``, bucket scan. Returns the materialized Dataset of edges (``src`` int64, ``dst``
    int64, ``exact`` bool) and its row count; nothing is pulled to the driver."""
    t = time.perf_counter()
    items = [{"name": rel, "row_offset": int(offsets[i])} for i, rel in enumerate(rels)]
    fn_kwargs = {"storage": storage, "cfg_dict": dataclasses.asdict(cfg), "num_partitions": num_partitions}
    band_ds = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(band_rows_udf, batch_size=1, fn_kwargs=fn_kwargs, **task_args)
        .materialize()
    )
    if against.items:
        old_ds = (
            ray.data.from_items(against.items, override_num_blocks=len(against.items))
            .map_batches(dindex.against_band_rows_udf, batch_size=1, fn_kwargs={"num_partitions": num_partitions},
                         **task_args)
            .materialize()
        )
        band_ds = band_ds.union(old_ds)
    seconds["signatures"] = time.perf_counter() - t
    t = time.perf_counter()
    edge_ds = (
        band_ds.groupby("part", num_partitions=num_partitions)
        .map_groups(bucket_udf, batch_format="numpy", **task_args)
        .materialize()
    )
    n_edges = edge_ds.count()
    seconds["shuffle_buckets"] = time.perf_counter() - t
    return edge_ds, n_edges


def _single_components(edge_ds, n_edges: int, cfg: DedupConfig):
    """Stage 3 on the driver: pull the edges, drop band copies, scipy components. Returns
    ``(nodes, comp, exact_nodes, exact_comp, info)``."""
    if n_edges > cfg.max_edges_single_worker:
        raise UserError(
            f"dedup: {n_edges:,} candidate edges exceed max_edges_single_worker={cfg.max_edges_single_worker:,} "
            "with components='single'. Use the distributed components (--components distributed or auto), "
            "or give the driver more memory and raise --max-edges (about 120 bytes per edge); see "
            "docs/dedup.md 'Above the single-worker limit'"
        )
    parts = {"src": [np.empty(0, np.int64)], "dst": [np.empty(0, np.int64)], "exact": [np.empty(0, bool)]}
    for batch in edge_ds.iter_batches(batch_size=None, batch_format="numpy"):
        for k in parts:
            parts[k].append(batch[k])
    src, dst, exact = (np.concatenate(parts[k]).astype(t) for k, t in (("src", np.int64), ("dst", np.int64),
                                                                        ("exact", bool)))
    del parts
    src, dst, exact = unique_edges(src, dst, exact)
    nodes, comp = connected_components(src, dst)
    exact_nodes, exact_comp = exact_groups(src[exact], dst[exact])
    return nodes, comp, exact_nodes, exact_comp, {"unique_edges": int(len(src))}


def _single_keep(ray, storage: Storage, rels, offsets, edge_ds, n_edges: int, cfg: DedupConfig, use_quality: bool,
                 ag: dindex.Against, task_args: dict, seconds: dict):
    """Stages 3-4 on the driver (scipy components, :func:`choose_kept`). Returns per-file
    decision dicts (as :func:`_write_file` takes them), removed count per file, the statistics
    (as :func:`~webmill.curate.dedup.keep.keep_partition` sums them) and the components info."""
    t = time.perf_counter()
    nodes, comp, exact_nodes, exact_comp, cinfo = _single_components(edge_ds, n_edges, cfg)
    seconds["components"] = time.perf_counter() - t
    t = time.perf_counter()
    n_docs = int(offsets[-1])
    remove, kept, ids = choose_kept(ray, storage, rels, offsets, nodes, comp, n_docs, use_quality, task_args)
    n_new = len(ids)  # nodes[:n_new] are this run's documents
    kept_id = exact = None
    if _need_ids(cfg):
        rep = exact_representatives(nodes, exact_nodes, exact_comp)
        kept_id, exact = removal_details(nodes, kept, ids, rep, lambda old: dindex.resolve_against_ids(ag, old))
    stats = component_stats(nodes, comp, exact_nodes, exact_comp, n_docs=n_docs)
    stats["removed"] = int(remove.sum())
    stats["removed_by_earlier"] = int((remove[:n_new] & (kept[:n_new] >= n_docs)).sum())
    bounds = np.searchsorted(nodes[:n_new], offsets)  # members of file i: nodes[bounds[i]:bounds[i+1]]
    decisions = []
    for i in range(len(rels)):
        sl = slice(bounds[i], bounds[i + 1])
        d = {"node": nodes[sl], "cluster": comp[sl], "remove": remove[sl]}
        if kept_id is not None:
            d |= {"kept_id": kept_id[sl], "exact": exact[sl]}
        decisions.append(d)
    removed_per_file = [int(d["remove"].sum()) for d in decisions]
    seconds["keep"] = time.perf_counter() - t
    return decisions, removed_per_file, stats, cinfo


def _distributed_components(ray, edge_ds, n_edges: int, cfg: DedupConfig, num_cpus: int, task_args: dict):
    """Stage 3 as Ray tasks (:func:`~webmill.curate.dedup.components.distributed_components`).
    Returns ``(edge_refs, label_refs, num_partitions, info)``; nothing per edge or node is here."""
    from webmill.curate.dedup.components import distributed_components

    if n_edges:
        edge_refs = edge_ds.to_numpy_refs()
    else:  # an empty Dataset's blocks carry no columns
        edge_refs = [ray.put({"src": np.empty(0, np.int64), "dst": np.empty(0, np.int64), "exact": np.empty(0, bool)})]
    num_partitions = min(65536, max(num_cpus, math.ceil(2 * n_edges / cfg.edges_per_partition)))
    label_refs, info = distributed_components(ray, edge_refs, num_partitions, task_args, cfg.max_component_rounds)
    keep = ("rounds", "partitions", "max_partition_rows", "input_edges")
    return edge_refs, label_refs, num_partitions, {
        "unique_edges": int(info["unique_edges"]),
        "distributed": {k: int(info[k]) for k in keep} | {"seconds": round(float(info["seconds"]), 3)}}


def _write_file(storage: Storage, rel: str, name: str, offset: int, output_subdir: str, dec: dict,
                batch_docs: int, removed: bool, index_offset: int | None, examples_per_reason: int = 0) -> dict:
    """Ray task, stage 5 of one file: ``deduped/`` (and ``removed/dedup/``, and
    ``examples/dedup/`` when ``examples_per_reason > 0``), then its index file.

    ``dec``: the file's keep decisions sorted by node: ``node`` (int64 global index),
    ``cluster`` (int64), ``remove`` (bool), with ``removed`` or examples also ``kept_id`` (str
    objects or UTF-8 bytes) and ``exact`` (bool)."""
    local_rows = np.asarray(dec["node"], np.int64) - offset
    remove = np.asarray(dec["remove"], bool)
    kept_id = reason = None
    sampler = ExampleSampler(examples_per_reason) if examples_per_reason > 0 else None
    if removed or sampler is not None:
        kept_id = np.asarray(dec["kept_id"])
        if kept_id.dtype.kind == "S":
            kept_id = np.char.decode(kept_id, "utf-8").astype(object)
        reason = np.where(np.asarray(dec["exact"], bool), REASON_EXACT, REASON_NEAR).astype(object)
    w = write_deduped_file(storage, rel, f"{output_subdir}/{name}", local_rows, np.asarray(dec["cluster"], np.int64),
                           remove, batch_docs, removed_dst=f"{REMOVED_SUBDIR}/{name}" if removed else None,
                           kept_id=kept_id, reason=reason, examples=sampler)
    if sampler is not None:  # after deduped/: examples are separate files, deduped/ bytes do not change
        storage.write_parquet(f"{EXAMPLES_SUBDIR}/{name}", sampler.table())
    if index_offset is not None:
        dindex.publish_file_index(storage, name, local_rows[remove], index_offset)
    return w


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _remove_stale(storage: Storage, sub: str, names: list[str]) -> list[str]:
    """Delete ``sub/*.parquet`` not in ``names`` and temp files a killed run left; returns the
    deleted names."""
    stale = sorted(set(storage.list(sub, suffix=".parquet")) - set(names)) if storage.isdir(sub) else []
    for name in stale:
        storage.remove(f"{sub}/{name}")
    if storage.isdir(sub):
        storage.sweep_temps(sub)
    return stale


def run_dedup(
    out_dir: str | os.PathLike | Storage, cfg: DedupConfig, input_subdir: str = "documents",
    output_subdir: str = "deduped", against: list | None = None,
) -> dict:
    """Run exact + MinHash dedup over ``out_dir/input_subdir/*.parquet``.

    Writes ``out_dir/output_subdir/<stem>.parquet`` for every input (same columns + int64
    ``dedup_cluster``: the smallest global row index of the document's duplicate component, -1
    when it has no duplicate; global row index = rows of the name-sorted files before it + row)
    and ``out_dir/stats/dedup.json``; with ``cfg.write_removed`` the removed rows to
    ``out_dir/removed/dedup/<stem>.parquet`` (+ ``dedup_cluster``, ``kept_id``, ``reason``);
    with ``cfg.examples_per_reason`` at most that many removed documents per reason in
    ``out_dir/examples/dedup/<stem>.parquet`` (:data:`~webmill.curate.examples.EXAMPLE_SCHEMA`,
    detail ``"duplicate of <kept_id>"``; deterministic bottom-k by id hash);
    with ``cfg.write_index`` the kept documents' band keys to ``out_dir/dedup_index/`` (for a
    later ``against``). Output files of an earlier run without a matching input are deleted
    (all of ``removed/dedup/`` when ``write_removed`` is off, of ``examples/dedup/`` when
    ``examples_per_reason`` is 0), and so are temp files a killed
    run left. Uses the running Ray if ``ray.is_initialized()``, else starts (and stops) a local
    one. Deterministic: a rerun on the same input gives byte-identical files, with either
    components path.

    Args:
        out_dir: the run's ``OUT``: a local path or an fsspec URL (``s3://bucket/out``) that the
            Ray workers can reach (``memory://`` is per process: it works only for the
            driver-side checks, not for the Ray stages).
        cfg: the settings (validated here).
        input_subdir, output_subdir: subdirectories of ``OUT`` read and written.
        against: earlier runs' ``OUT`` (written with ``write_index``): documents of this run
            that duplicate a document they kept are removed; those runs are only read.

    Returns:
        the stats dict (also written to ``stats/dedup.json``).

    Raises:
        UserError: invalid config (names the key), missing/empty input directory, an input
        file without ``id``/``text`` column or unreadable, an ``against`` run without a
        matching index, more candidate edges than ``cfg.max_edges_single_worker`` with
        ``components="single"``, or components not converged in ``max_component_rounds``.
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
    ag = dindex.open_against(list(against or []), cfg, base=n_docs, out=storage)
    band_rows_total = (n_docs + ag.total) * ((bands if cfg.minhash else 0) + (1 if cfg.exact else 0))

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

        edge_ds, n_edges = _find_edges(ray, storage, rels, offsets, cfg, num_partitions, task_args, seconds, ag)

        t = time.perf_counter()
        path = cfg.components
        if path == "auto":
            path = "distributed" if n_edges > min(cfg.distributed_min_edges, cfg.max_edges_single_worker) else "single"
        use_quality = has_quality and cfg.keep != "id"
        if path == "single":
            decisions, removed_per_file, kstats, cinfo = _single_keep(
                ray, storage, rels, offsets, edge_ds, n_edges, cfg, use_quality, ag, task_args, seconds)
        else:
            edge_refs, label_refs, cparts, cinfo = _distributed_components(ray, edge_ds, n_edges, cfg, num_cpus,
                                                                          task_args)
            seconds["components"] = time.perf_counter() - t
            t = time.perf_counter()
            decisions, removed_per_file, kstats = distributed_keep(
                ray, storage, rels, offsets, label_refs, edge_refs, ag, use_quality, cparts, _need_ids(cfg),
                task_args)
            del edge_refs, label_refs
            seconds["keep"] = time.perf_counter() - t
        del edge_ds

        t = time.perf_counter()
        storage.makedirs(output_subdir)
        if cfg.write_removed:
            storage.makedirs(REMOVED_SUBDIR)
        if cfg.examples_per_reason:
            storage.makedirs(EXAMPLES_SUBDIR)
        kept_counts = (np.diff(offsets) - np.asarray(removed_per_file, np.int64)).tolist()
        kept_offsets = np.concatenate([[0], np.cumsum(kept_counts)]).astype(np.int64)
        write_remote = ray.remote(_write_file).options(**task_args)
        refs = [
            write_remote.remote(storage, rel, name, int(offsets[i]), output_subdir, decisions[i], cfg.batch_docs,
                                cfg.write_removed, int(kept_offsets[i]) if cfg.write_index else None,
                                cfg.examples_per_reason)
            for i, (rel, name) in enumerate(zip(rels, names))
        ]
        del decisions
        written = ray.get(refs)
        stale = _remove_stale(storage, output_subdir, names)
        _remove_stale(storage, REMOVED_SUBDIR, names if cfg.write_removed else [])
        _remove_stale(storage, EXAMPLES_SUBDIR, names if cfg.examples_per_reason else [])
        if cfg.write_index:
            dindex.write_index_meta(storage, cfg, names, kept_counts, output_subdir=output_subdir)
        else:
            dindex.remove_index(storage)
        seconds["write"] = time.perf_counter() - t
    finally:
        ctx.enable_progress_bars, ctx.use_disk_based_hash_shuffle, ctx.shuffle_strategy = saved
        if started_ray:
            ray.shutdown()

    c = kstats
    removed = int(c["removed"])
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
        "candidate_edges": int(n_edges),
        "unique_edges": cinfo["unique_edges"],
        "components_path": path,
        "shuffle": {"strategy": cfg.shuffle, "partitions": num_partitions, "band_rows": band_rows_total,
                    "bytes_estimate": band_rows_total * BYTES_PER_BAND_ROW, "object_store_bytes": object_store},
        "per_file": [{"file": name, "documents_in": w["in"], "documents_out": w["out"]} for name, w in zip(names, written)],
        "stale_outputs_removed": stale,
        "config": dataclasses.asdict(cfg),
        "peak_rss_driver_bytes": _peak_rss_bytes(),
    }
    if "distributed" in cinfo:
        stats["distributed_components"] = cinfo["distributed"]
    if ag.roots:
        stats["against"] = {"runs": ag.roots, "documents": int(ag.total),
                            "documents_removed": int(c["removed_by_earlier"])}
    seconds["total"] = time.perf_counter() - t_start
    stats["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    storage.write_json("stats/dedup.json", stats, indent=2, sort_keys=True)
    return stats
