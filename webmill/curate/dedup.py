"""Exact + MinHash near-duplicate removal over ``OUT/documents`` as a CPU Ray job.

Plan (see docs/dedup.md for the memory model and what to do at scale)::

    OUT/<input_subdir>/*.parquet (sorted by name; global row index = file offset + row)
      1. signatures  Ray Data, one task per file, ``batch_docs`` rows at a time:
                     normalize -> exact key (XXH3-64 of the normalized text, "band" -1) and
                     MinHash signature -> ``bands`` LSH band keys; emits rows
                     (part, band, key, doc) with part = key mod P
      2. buckets     ``groupby("part").map_groups``: Ray Data shuffle on ``part`` (a hash of
                     the band key; sort shuffle by default); each of the P groups is scanned
                     vectorized (sort by band, key, doc); every bucket with >= 2 documents
                     emits star edges (smallest doc -> each other doc)
      3. components  driver: scipy.sparse.csgraph.connected_components on the edges (refused
                     above ``max_edges_single_worker`` edges, with advice)
      4. keep        one Ray task per file holding component members reads ``id`` and
                     ``quality_score``; the driver keeps, per component, the highest
                     ``quality_score`` (missing = lowest), ties -> smallest ``id`` -> smallest
                     global row index
      5. write       one Ray task per file streams the file again, drops removed rows, adds
                     ``dedup_cluster`` and writes OUT/<output_subdir>/<stem>.parquet atomically
    stats -> OUT/stats/dedup.json

Exact duplicates are treated as one more LSH "band" whose key is the whole normalized text, so
one shuffle serves both; since identical normalized texts have identical signatures, the
components equal those of "exact dedup first, then MinHash on the survivors", and the kept
document is the same (the keep rule is a total order).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import typer

from webmill.curate import minhash as mh
from webmill.errors import UserError

KEEP_POLICIES = ("quality_then_id", "id")
SHUFFLE_STRATEGIES = {"sort": "sort_shuffle_pull_based", "hash": "hash_shuffle"}  # Ray Data names
EXACT_BAND = -1
BYTES_PER_BAND_ROW = 4 + 2 + 8 + 8  # part, band, key, doc in Arrow (no nulls)


@dataclass
class DedupConfig:
    """Configuration of the dedup step (FineWeb defaults; sources in docs/dedup.md).

    Attributes:
        exact: remove exact duplicates of the normalized text (XXH3-64 key).
        minhash: remove MinHash/LSH near duplicates.
        num_perm: MinHash permutations (FineWeb: 112).
        bands, rows: LSH banding, ``bands * rows == num_perm`` (FineWeb: 14 x 8).
        shingle_size: words per shingle (FineWeb: 5).
        seed: permutation seed (datasketch's ``seed``).
        threshold: if set, ``(bands, rows)`` come from datasketch's ``_optimal_param(threshold,
            num_perm, 0.5, 0.5)`` (as ``MinHashLSH(threshold=...)``), ``bands * rows <= num_perm``.
        hash_func: shingle hash, one of ``minhash.SHINGLE_HASHES`` (``xxh3_words`` is fastest).
        scheme: ``"affine32"`` (datasketch >= 2.0) or ``"legacy"`` (datasketch < 2.0).
        batch_docs: documents read and hashed per step of a task.
        max_batch_bytes: a batch is split further so that its text stays below this (bytes).
        chunk_shingles: shingles per numpy step (working buffer num_perm x chunk x 4 bytes).
        keep: ``"quality_then_id"`` (highest ``quality_score``, ties -> smallest ``id``) or ``"id"``.
        max_edges_single_worker: most candidate edges for connected components on the driver
            (~120 bytes each at peak, so the default 5e7 needs ~6 GB); above it the job stops
            with advice (docs/dedup.md, "Above the single-worker limit").
        shuffle_rows_per_partition: band rows per bucket-scan group (22 bytes each).
        shuffle: Ray Data shuffle behind ``groupby``: ``"sort"`` (pull-based sort shuffle, the
            fastest here, see docs/dedup.md) or ``"hash"`` (hash shuffle with aggregator actors).
        task_memory_bytes: ``memory=`` reserved per Ray task (0 = no reservation).
    """

    exact: bool = True
    minhash: bool = True
    num_perm: int = 112
    bands: int = 14
    rows: int = 8
    shingle_size: int = 5
    seed: int = 1
    threshold: float | None = None
    hash_func: str = "xxh3_words"
    scheme: str = "affine32"
    batch_docs: int = 1000
    max_batch_bytes: int = 64 * 2**20
    chunk_shingles: int = 16384
    keep: str = "quality_then_id"
    max_edges_single_worker: int = 50_000_000
    shuffle_rows_per_partition: int = 10_000_000
    shuffle: str = "sort"
    task_memory_bytes: int = 0

    def resolved_bands_rows(self) -> tuple[int, int]:
        """``(bands, rows)`` in effect: from ``threshold`` when set, else the configured ones."""
        if self.threshold is not None:
            return mh.optimal_bands_rows(self.threshold, self.num_perm)
        return self.bands, self.rows

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first invalid key."""
        positive = ("num_perm", "bands", "rows", "shingle_size", "batch_docs", "max_batch_bytes",
                    "chunk_shingles", "max_edges_single_worker", "shuffle_rows_per_partition")
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"dedup config: {key} must be a positive integer, got {value!r}")
        if not self.exact and not self.minhash:
            raise UserError("dedup config: exact and minhash are both off; enable at least one")
        if self.hash_func not in mh.SHINGLE_HASHES:
            raise UserError(f"dedup config: hash_func must be one of {', '.join(mh.SHINGLE_HASHES)}, got {self.hash_func!r}")
        if self.scheme not in mh.SCHEMES:
            raise UserError(f"dedup config: scheme must be one of {', '.join(mh.SCHEMES)}, got {self.scheme!r}")
        if self.shuffle not in SHUFFLE_STRATEGIES:
            raise UserError(f"dedup config: shuffle must be one of {', '.join(SHUFFLE_STRATEGIES)}, got {self.shuffle!r}")
        if self.keep not in KEEP_POLICIES:
            raise UserError(f"dedup config: keep must be one of {', '.join(KEEP_POLICIES)}, got {self.keep!r}")
        if self.threshold is not None:
            if not 0.0 < self.threshold < 1.0:
                raise UserError(f"dedup config: threshold must be in (0, 1), got {self.threshold}")
        elif self.bands * self.rows != self.num_perm:
            raise UserError(
                f"dedup config: bands*rows must equal num_perm ({self.bands}*{self.rows} != {self.num_perm}); "
                "change bands/rows/num_perm or set threshold"
            )
        if self.resolved_bands_rows()[0] > 32767:
            raise UserError("dedup config: bands must be < 32768")
        if self.task_memory_bytes < 0:
            raise UserError(f"dedup config: task_memory_bytes must be >= 0, got {self.task_memory_bytes}")


# ----------------------------------------------------------------------------------------------
# stage 1: signatures -> band rows (runs in Ray tasks)


def _iter_text_batches(path: str, batch_docs: int, max_batch_bytes: int) -> Iterator[tuple[int, list]]:
    """Yield ``(first_row, texts)`` of one Parquet file: at most ``batch_docs`` rows and, unless
    one document alone is larger, at most ``max_batch_bytes`` bytes of UTF-8 text."""
    row = 0
    for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_docs, columns=["text"]):
        sizes = pc.binary_length(rb.column(0).cast(pa.large_binary())).fill_null(0).to_numpy()
        start = 0
        while start < len(sizes):
            end = start + max(1, int(np.searchsorted(np.cumsum(sizes[start:]), max_batch_bytes, side="right")))
            yield row + start, rb.column(0).slice(start, end - start).to_pylist()
            start = end
        row += len(sizes)


def band_rows_for_file(
    path: str, row_offset: int, cfg: DedupConfig, num_partitions: int
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the band rows of one document file, one dict of numpy arrays per batch.

    Each row is ``part`` (int32, ``key % num_partitions``), ``band`` (int16, -1 = exact key),
    ``key`` (uint64), ``doc`` (int64 global row index = ``row_offset`` + row in the file).
    A document with no word gets no MinHash rows (its exact row still groups all empty ones).
    """
    bands, rows = cfg.resolved_bands_rows()
    hasher = mh.MinHasher(cfg.num_perm, cfg.seed, cfg.shingle_size, cfg.hash_func, cfg.scheme, cfg.chunk_shingles)
    p = np.uint64(num_partitions)
    for first, texts in _iter_text_batches(path, cfg.batch_docs, cfg.max_batch_bytes):
        words, word_offsets = mh.split_words([mh.normalized_bytes(t) for t in texts])
        doc = np.arange(first, first + len(texts), dtype=np.int64) + row_offset
        parts: list[dict[str, np.ndarray]] = []
        if cfg.exact:
            key = mh.text_hashes(words, word_offsets)
            parts.append({"band": np.full(len(doc), EXACT_BAND, np.int16), "key": key, "doc": doc})
        if cfg.minhash:
            has_words = np.diff(word_offsets) > 0
            keys = mh.band_hashes(hasher.signatures_from_split(words, word_offsets)[has_words], bands, rows)
            parts.append({
                "band": np.tile(np.arange(bands, dtype=np.int16), len(keys)),
                "key": keys.reshape(-1),
                "doc": np.repeat(doc[has_words], bands),
            })
        out = {k: np.concatenate([q[k] for q in parts]) for k in ("band", "key", "doc")}
        yield {"part": (out["key"] % p).astype(np.int32), **out}


def _band_rows_udf(batch: dict[str, np.ndarray], cfg_dict: dict, num_partitions: int):
    cfg = DedupConfig(**cfg_dict)
    for path, offset in zip(batch["path"], batch["row_offset"]):
        yield from band_rows_for_file(str(path), int(offset), cfg, num_partitions)


# ----------------------------------------------------------------------------------------------
# stage 2: bucket scan (runs in Ray tasks)


def bucket_edges(band: np.ndarray, key: np.ndarray, doc: np.ndarray) -> dict[str, np.ndarray]:
    """Star edges of every bucket (equal ``(band, key)``) holding >= 2 documents.

    Args:
        band, key, doc: equal-length arrays (int16, uint64, int64) of band rows.

    Returns:
        ``{"src": int64, "dst": int64, "exact": bool}``: for each bucket, its smallest ``doc``
        -> every other ``doc`` (a bucket of size s gives s - 1 edges); ``exact`` marks edges of
        the exact-text key (band -1). Duplicate (band, key, doc) rows are ignored.
    """
    order = np.lexsort((doc, key, band))
    band, key, doc = band[order], key[order], doc[order]
    n = len(doc)
    if n < 2:
        return {"src": np.empty(0, np.int64), "dst": np.empty(0, np.int64), "exact": np.empty(0, bool)}
    new_bucket = np.ones(n, dtype=bool)
    new_bucket[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    first = np.flatnonzero(new_bucket)
    head = first[np.cumsum(new_bucket) - 1]  # index of each row's bucket head (smallest doc)
    is_edge = ~new_bucket
    is_edge[1:] &= doc[1:] != doc[:-1]  # same doc twice in a bucket: no self edge
    return {"src": doc[head[is_edge]], "dst": doc[is_edge], "exact": band[is_edge] == EXACT_BAND}


def _bucket_udf(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return bucket_edges(group["band"], group["key"], group["doc"])


# ----------------------------------------------------------------------------------------------
# stage 3: connected components (driver)


def _relabel(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniq, labels)``: sorted distinct values and each value's index in ``uniq``.

    Same as ``np.unique(values, return_inverse=True)``, via one quicksort: numpy 2.4's
    ``np.unique`` and random-order ``np.searchsorted`` were 10-40x slower here on 10^6-10^7 keys.
    """
    order = np.argsort(values, kind="quicksort")
    ordered = values[order]
    new = np.empty(len(values), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    labels = np.empty(len(values), dtype=np.int64)
    labels[order] = np.cumsum(new) - 1
    return ordered[new], labels


def connected_components(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Components of the undirected graph given by edges ``src[i] -- dst[i]`` (int64 doc indices).

    Returns:
        ``(nodes, component)``: ``nodes`` sorted unique int64 doc indices appearing in an edge;
        ``component`` int64 of the same shape, the smallest node of each node's component.
        Uses ``scipy.sparse.csgraph.connected_components`` in this process; peak memory about
        80 bytes per edge (measured, see docs/dedup.md).
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components as scipy_cc

    nodes, ends = _relabel(np.concatenate([src, dst]))
    if len(nodes) == 0:
        return nodes, nodes.copy()
    n_edges = len(src)
    graph = csr_matrix((np.ones(n_edges, dtype=np.int8), (ends[:n_edges], ends[n_edges:])), shape=(len(nodes), len(nodes)))
    del ends
    n_comp, labels = scipy_cc(graph, directed=False)
    smallest = np.full(n_comp, len(nodes), dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(len(nodes)))  # nodes are sorted: smallest index = smallest node
    return nodes, nodes[smallest[labels]]


# ----------------------------------------------------------------------------------------------
# stage 4 and 5: keep and write (run in Ray tasks)


def read_keep_columns(path: str, local_rows: np.ndarray) -> pa.Table:
    """Columns ``id`` (string) and ``q`` (float64 ``quality_score``, null if missing) of some rows."""
    names = pq.read_schema(path).names
    cols = ["id"] + (["quality_score"] if "quality_score" in names else [])
    table = pq.read_table(path, columns=cols).take(pa.array(local_rows))
    quality = table.column("quality_score").cast(pa.float64()) if "quality_score" in cols else pa.nulls(len(table), pa.float64())
    return pa.table({"id": table.column("id").cast(pa.string()), "q": quality})


def write_deduped_file(
    src_path: str, dst_path: str, local_rows: np.ndarray, cluster: np.ndarray, remove: np.ndarray, batch_docs: int
) -> dict[str, int]:
    """Stream one document file to ``dst_path`` without removed rows and with ``dedup_cluster``.

    Args:
        local_rows: int64 sorted row numbers (in this file) of the documents in a component.
        cluster: int64 component id of each of those rows (others get -1).
        remove: bool, whether each of those rows is dropped.

    Output: same columns in the same order (an existing ``dedup_cluster`` is replaced) plus
    ``dedup_cluster`` int64; rows in input order; zstd, fixed settings; written to a temp file
    then ``os.replace``d, so readers never see a partial file. Returns ``{"in", "out"}`` counts.
    """
    pf = pq.ParquetFile(src_path)
    in_schema = pf.schema_arrow
    base_fields = [f for f in in_schema if f.name != "dedup_cluster"]
    out_schema = pa.schema(base_fields + [pa.field("dedup_cluster", pa.int64())], metadata=in_schema.metadata)
    tmp = f"{dst_path}.tmp-{os.getpid()}"
    n_in = n_out = 0
    try:
        with pq.ParquetWriter(tmp, out_schema, compression="zstd", write_statistics=True) as writer:
            row = 0
            for rb in pf.iter_batches(batch_size=batch_docs):
                n = rb.num_rows
                lo, hi = np.searchsorted(local_rows, [row, row + n])
                cl = np.full(n, -1, dtype=np.int64)
                keep = np.ones(n, dtype=bool)
                cl[local_rows[lo:hi] - row] = cluster[lo:hi]
                keep[local_rows[lo:hi] - row] = ~remove[lo:hi]
                table = pa.Table.from_batches([rb]).select([f.name for f in base_fields])
                table = table.append_column("dedup_cluster", pa.array(cl)).filter(pa.array(keep))
                writer.write_table(table.cast(out_schema))
                row += n
                n_in += n
                n_out += table.num_rows
        os.replace(tmp, dst_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"in": n_in, "out": n_out}


# ----------------------------------------------------------------------------------------------
# driver


def _scan_inputs(in_dir: Path) -> tuple[list[Path], np.ndarray, bool]:
    """Name-sorted input files, their global row offsets (int64, len n+1), any ``quality_score``?"""
    if not in_dir.is_dir():
        raise UserError(f"dedup: input directory {in_dir} does not exist; run the per-document stage first (curate run)")
    files = sorted(in_dir.glob("*.parquet"))
    if not files:
        raise UserError(f"dedup: no *.parquet files in {in_dir}; run the per-document stage first (curate run)")
    counts, has_quality = [], False
    for f in files:
        try:
            schema, num_rows = pq.read_schema(f), pq.ParquetFile(f).metadata.num_rows
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise UserError(f"dedup: cannot read {f} as Parquet ({exc}); delete it and rerun the stage that wrote it") from exc
        missing = {"id", "text"} - set(schema.names)
        if missing:
            raise UserError(f"dedup: {f} lacks column(s) {sorted(missing)}; it is not a document table (see DESIGN.md)")
        has_quality |= "quality_score" in schema.names
        counts.append(num_rows)
    return files, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), has_quality


def _find_edges(ray, files, offsets, cfg: DedupConfig, num_partitions: int, task_args: dict, seconds: dict):
    """Stages 1-2 on Ray: band rows of every file, shuffle on ``part``, bucket scan -> edges."""
    t = time.perf_counter()
    items = [{"path": str(f), "row_offset": int(offsets[i])} for i, f in enumerate(files)]
    fn_kwargs = {"cfg_dict": dataclasses.asdict(cfg), "num_partitions": num_partitions}
    band_ds = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(_band_rows_udf, batch_size=1, fn_kwargs=fn_kwargs, **task_args)
        .materialize()
    )
    seconds["signatures"] = time.perf_counter() - t
    t = time.perf_counter()
    edge_ds = (
        band_ds.groupby("part", num_partitions=num_partitions)
        .map_groups(_bucket_udf, batch_format="numpy", **task_args)
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


def _choose_removed(ray, files, offsets, bounds, nodes, comp, use_quality: bool, task_args: dict) -> np.ndarray:
    """Stage 4: bool per node, True unless it is its component's best by the keep rule."""
    read_remote = ray.remote(read_keep_columns).options(**task_args)
    refs = [
        read_remote.remote(str(files[i]), nodes[bounds[i] : bounds[i + 1]] - offsets[i])
        for i in range(len(files))
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


def _component_stats(nodes, comp, exact_nodes, exact_comp) -> dict:
    """Counts for dedup.json: exact groups, components with >= 2 distinct texts, size histogram."""
    rep = nodes.copy()  # exact-group representative of every node (itself when not in one)
    if len(exact_nodes):
        pos = np.searchsorted(exact_nodes, nodes).clip(max=len(exact_nodes) - 1)  # sorted queries: fast
        hit = exact_nodes[pos] == nodes
        rep[hit] = exact_comp[pos[hit]]
    comp_ids, comp_label = _relabel(comp)
    comp_sizes = np.bincount(comp_label, minlength=len(comp_ids))
    # distinct texts per component: every representative lies in exactly one component
    reps, rep_label = _relabel(rep)
    rep_comp = np.zeros(len(reps), dtype=np.int64)
    rep_comp[rep_label] = comp_label
    texts_per_comp = np.bincount(rep_comp, minlength=len(comp_ids))
    near = texts_per_comp >= 2
    n_exact_groups = len(_relabel(exact_comp)[0])
    return {
        "components": int(len(comp_ids)),
        "exact_groups": int(n_exact_groups),
        "exact_removed": int(len(exact_nodes) - n_exact_groups),
        "near_components": int(near.sum()),
        "near_histogram": _histogram(comp_sizes[near]),
    }


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _histogram(sizes: np.ndarray) -> dict[str, int]:
    ranges = [(2, 2), (3, 3), (4, 4), (5, 9), (10, 99), (100, 999), (1000, np.iinfo(np.int64).max)]
    names = ["2", "3", "4", "5-9", "10-99", "100-999", "1000+"]
    return {n: int(((sizes >= lo) & (sizes <= hi)).sum()) for n, (lo, hi) in zip(names, ranges)}


def _write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run_dedup(
    out_dir: str | Path, cfg: DedupConfig, input_subdir: str = "documents", output_subdir: str = "deduped"
) -> dict:
    """Run exact + MinHash dedup over ``out_dir/input_subdir/*.parquet``.

    Writes ``out_dir/output_subdir/<stem>.parquet`` for every input (same columns + int64
    ``dedup_cluster``: the smallest global row index of the document's duplicate component, -1
    when it has no duplicate; global row index = rows of the name-sorted files before it + row)
    and ``out_dir/stats/dedup.json``. Output files of an earlier run without a matching input
    are deleted. Uses the running Ray if ``ray.is_initialized()``, else starts (and stops) a
    local one. Deterministic: a rerun on the same input gives byte-identical files.

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
    out_dir = Path(out_dir)
    dst_dir = out_dir / output_subdir
    files, offsets, has_quality = _scan_inputs(out_dir / input_subdir)
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

        src, dst, exact = _find_edges(ray, files, offsets, cfg, num_partitions, task_args, seconds)

        t = time.perf_counter()
        nodes, comp = connected_components(src, dst)
        exact_nodes, exact_comp = connected_components(src[exact], dst[exact])
        seconds["components"] = time.perf_counter() - t

        t = time.perf_counter()
        bounds = np.searchsorted(nodes, offsets)  # nodes of file i: nodes[bounds[i]:bounds[i+1]]
        remove = _choose_removed(ray, files, offsets, bounds, nodes, comp, has_quality and cfg.keep != "id", task_args)
        seconds["keep"] = time.perf_counter() - t

        t = time.perf_counter()
        dst_dir.mkdir(parents=True, exist_ok=True)
        write_remote = ray.remote(write_deduped_file).options(**task_args)
        refs = [
            write_remote.remote(
                str(f), str(dst_dir / f.name), nodes[bounds[i] : bounds[i + 1]] - offsets[i],
                comp[bounds[i] : bounds[i + 1]], remove[bounds[i] : bounds[i + 1]], cfg.batch_docs,
            )
            for i, f in enumerate(files)
        ]
        written = ray.get(refs)
        stale = sorted(p.name for p in dst_dir.glob("*.parquet") if p.name not in {f.name for f in files})
        for name in stale:
            (dst_dir / name).unlink()
        for partial in dst_dir.glob("*.parquet.tmp-*"):  # left by a run killed mid-write
            partial.unlink(missing_ok=True)
        seconds["write"] = time.perf_counter() - t
    finally:
        ctx.enable_progress_bars, ctx.use_disk_based_hash_shuffle, ctx.shuffle_strategy = saved
        if started_ray:
            ray.shutdown()

    c = _component_stats(nodes, comp, exact_nodes, exact_comp)
    removed = int(remove.sum())
    stats = {
        "documents_in": n_docs,
        "documents_out": n_docs - removed,
        "documents_removed": removed,
        "files": len(files),
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
        "per_file": [{"file": f.name, "documents_in": w["in"], "documents_out": w["out"]} for f, w in zip(files, written)],
        "stale_outputs_removed": stale,
        "config": dataclasses.asdict(cfg),
        "peak_rss_driver_bytes": _peak_rss_bytes(),
    }
    seconds["total"] = time.perf_counter() - t_start
    stats["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    _write_json_atomic(out_dir / "stats" / "dedup.json", stats)
    return stats


# ----------------------------------------------------------------------------------------------
# CLI


def dedup_cmd(
    out: Path = typer.Argument(..., help="Pipeline output directory OUT (reads OUT/<input-subdir>, writes OUT/<output-subdir> and OUT/stats/dedup.json)."),
    input_subdir: str = typer.Option("documents", help="Subdirectory of OUT holding the document Parquet files."),
    output_subdir: str = typer.Option("deduped", help="Subdirectory of OUT to write the deduplicated files to."),
    exact: bool = typer.Option(True, "--exact/--no-exact", help="Remove exact duplicates of the normalized text."),
    minhash: bool = typer.Option(True, "--minhash/--no-minhash", help="Remove MinHash/LSH near duplicates."),
    num_perm: int = typer.Option(112, help="MinHash permutations (FineWeb: 112)."),
    bands: int = typer.Option(14, help="LSH bands; bands*rows must equal --num-perm (FineWeb: 14)."),
    rows: int = typer.Option(8, help="Rows (signature values) per LSH band (FineWeb: 8)."),
    threshold: float | None = typer.Option(None, help="Jaccard threshold; if given, bands/rows are derived with datasketch's optimal-parameter method and --bands/--rows are ignored."),
    shingle_size: int = typer.Option(5, help="Words per shingle (FineWeb: 5)."),
    seed: int = typer.Option(1, help="Seed of the MinHash permutations (datasketch's seed)."),
    hash_func: str = typer.Option("xxh3_words", help="Shingle hash: xxh3_words (fastest), xxh3 or sha1 (datasketch default)."),
    scheme: str = typer.Option("affine32", help="Permutation scheme: affine32 (datasketch>=2.0) or legacy (datasketch<2.0)."),
    keep: str = typer.Option("quality_then_id", help="Which document of a duplicate component to keep: quality_then_id (highest quality_score, ties: smallest id) or id (smallest id)."),
    batch_docs: int = typer.Option(1000, help="Documents read and hashed per step of a task (bounds task memory)."),
    max_batch_bytes: int = typer.Option(64 * 2**20, help="Largest text bytes per hashing step (bounds task memory)."),
    chunk_shingles: int = typer.Option(16384, help="Shingles per numpy step (working buffer num_perm x chunk x 4 bytes)."),
    max_edges: int = typer.Option(50_000_000, "--max-edges", help="Most candidate edges for connected components on the driver (~120 bytes each); above it the job stops with advice."),
    shuffle_rows_per_partition: int = typer.Option(10_000_000, help="Band rows (22 bytes each) per bucket-scan group."),
    shuffle: str = typer.Option("sort", help="Ray Data shuffle: sort (pull-based sort shuffle, fastest here) or hash (hash shuffle with aggregator actors)."),
    task_memory_mb: int = typer.Option(0, help="Memory (MiB) reserved per Ray task; 0 = no reservation."),
    ray_address: str | None = typer.Option(None, envvar="RAY_ADDRESS", help="Ray cluster address (default: start a local Ray)."),
) -> None:
    """Remove exact and MinHash near-duplicate documents (FineWeb settings: 5-gram shingles, 14x8 LSH)."""
    import ray

    cfg = DedupConfig(
        exact=exact, minhash=minhash, num_perm=num_perm, bands=bands, rows=rows, threshold=threshold,
        shingle_size=shingle_size, seed=seed, hash_func=hash_func, scheme=scheme, keep=keep,
        batch_docs=batch_docs, max_batch_bytes=max_batch_bytes, chunk_shingles=chunk_shingles,
        max_edges_single_worker=max_edges, shuffle_rows_per_partition=shuffle_rows_per_partition, shuffle=shuffle,
        task_memory_bytes=task_memory_mb * 2**20,
    )
    cfg.validate()
    started = False
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False)
        started = True
    try:
        s = run_dedup(out, cfg, input_subdir=input_subdir, output_subdir=output_subdir)
    finally:
        if started:
            ray.shutdown()
    typer.echo(
        f"dedup: {s['documents_in']:,} documents in, {s['documents_out']:,} out "
        f"({s['exact']['documents_removed']:,} exact, {s['minhash']['documents_removed']:,} near duplicates removed; "
        f"{s['minhash']['near_duplicate_components']:,} near-duplicate components) in {s['seconds']['total']:.1f} s; "
        f"stats: {Path(out) / 'stats' / 'dedup.json'}"
    )
