"""Distributed connected components and regrouping of column arrays, as plain Ray tasks + numpy.

Connected components of the candidate graph with no process whose memory grows with the number
of edges: alternating large-star / small-star (Kiveris, Lattanzi, Mirrokni, Rastogi, Vassilvitskii
2014, "Connected Components in MapReduce and Beyond", SoCC; O(log n) rounds in practice, O(log² n)
proved). The driver holds only ObjectRefs and per-task counters; each task holds one partition.

Graph layout: directed rows ``(u, v)`` hash-partitioned by ``u`` (:func:`partition_of`). Every
step is one task per partition: concatenate the P chunks it receives, sort-unique the rows
by (u, v) (one int64 key of their local ranks; this also removes the duplicate edges given by
several LSH bands), compute per node ``m(u) = min(u, min Γ(u))`` with ``np.minimum.reduceat``, emit rows and scatter
them to the P partitions of the next step (``num_returns=P``).

* **large-star** (input: symmetric rows, both directions): for each row with ``v > u`` emit the
  edge ``v -> m(u)``, stored one way only (at ``v``): the next small-star at ``x`` only needs the
  neighbours ``<= x``.
* **small-star** (input: rows ``x -> y`` with ``y < x``): ``m = min(x, N(x))``; emit the edges
  ``{v, m}`` for every ``v`` in ``N(x) ∪ {x}``, ``v != m``, stored both ways.
* **convergence**, inside each large-star task and without an extra pass: the graph is a forest of
  stars centred on each component's smallest node iff no node ``u`` with ``m(u) < u`` has
  degree > 1. The large-star task counts such nodes and also returns ``(node, m(node))`` of its
  partition; when the count summed over all tasks is 0 those are the labels.
* a node whose only row is a self-loop ``(u, u)`` ("u exists") has degree 0; every step re-emits
  its self-loop, so it ends as a component of its own.

Memory per task: the ``R`` rows it receives (16 bytes each) plus ~4x that while sorting and
scattering (ranks, sort key, permuted copies, outputs): ~80 bytes per row (measured: 0.27 GiB
private for 2·10⁶ rows, ~0.1 GiB of it Python + Ray), so the default
``edges_per_partition`` = 8·10⁶ rows ≈ 0.65 GB per task. The partition holding a component's smallest
node receives every edge of that component in the last rounds (the star), so one component of
``s`` nodes needs one task of ~80·2s bytes. Object store: at most the input and output of one
step alive (≈ 2 copies of the symmetric edge rows); earlier steps' refs are dropped as soon as
their consumers are submitted.

Driver: P² ObjectRefs per step (each task scatters to P partitions), none of them inline
(see :func:`_remote`), plus Ray's lineage of retryable tasks (measured 0.7 GiB private at
P = 100, the same at 10⁷ and 10⁸ edges; capped by Ray's ``max_lineage_bytes``; 0.19 GiB with
``task_args={"max_retries": 0}``). Each chunk is one object-store object, so time grows with P²:
10⁷ edges took 61 s at P = 10 and 335 s at P = 100 (bench/dedup_components.py); keep P at a
few times the CPUs by making ``edges_per_partition`` as large as task memory allows.
"""

from __future__ import annotations

import time

import numpy as np

from webmill.curate.dedup.graph import relabel
from webmill.errors import UserError

_FIB = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: Fibonacci hashing (Knuth, TAOCP 6.4)
_EMPTY = np.empty(0, np.int64)


def partition_of(node: np.ndarray, num_partitions: int) -> np.ndarray:
    """Partition of each node: int64 array of ``node``'s shape, values in ``[0, num_partitions)``.

    Multiplicative (Fibonacci) hash of the int64 node id, high 32 bits mapped to the range by
    multiply-shift (Lemire 2019), so runs of consecutive ids spread evenly. ``num_partitions``
    must be in ``[1, 2^31)``.
    """
    h = (np.asarray(node, dtype=np.int64).view(np.uint64) * _FIB) >> np.uint64(32)
    return ((h * np.uint64(num_partitions)) >> np.uint64(32)).astype(np.int64)


# ------------------------------------------------------------------------------ scatter helpers


def _split_by(dest: np.ndarray, count: int, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Rows of ``arrays`` split into ``count`` dicts by ``dest`` (int64 in [0, count)), keeping
    the row order within each. Returned arrays are views of one permuted copy."""
    small = dest.astype(np.uint16) if count <= 65536 else dest  # uint16: numpy's stable radix sort
    order = np.argsort(small, kind="stable")
    counts = np.bincount(dest, minlength=count)
    ends = np.cumsum(counts)
    starts = ends - counts
    ordered = {k: a[order] for k, a in arrays.items()}
    return [{k: a[s:e] for k, a in ordered.items()} for s, e in zip(starts, ends)]


def _as_list(refs, n: int) -> list:
    return [refs] if n == 1 else list(refs)


def _remote(ray, fn, num_returns: int, task_args: dict | None):
    """``ray.remote(fn)`` with ``task_args`` and every return value put in the object store.

    Ray inlines return values below ``max_direct_call_object_size`` (100 KiB) into the owner,
    here the driver; with P² chunks per step of ~rows/P² rows that would put the whole graph in
    the driver once rows/P² < 6,400. ``RAY_max_direct_call_object_size=0`` in the task's
    environment (merged with the job's ``env_vars`` by Ray) sends every chunk to the object store.
    """
    opts = dict(task_args or {})
    env = dict(opts.get("runtime_env") or {})
    env["env_vars"] = {**(env.get("env_vars") or {}), "RAY_max_direct_call_object_size": "0"}
    opts["runtime_env"] = env
    return ray.remote(fn).options(num_returns=num_returns, **opts)


def _concat(chunks, keys) -> dict[str, np.ndarray]:
    """Concatenation of same-keyed dicts of arrays, in order (empty chunks are fine)."""
    chunks = list(chunks)
    return {k: np.concatenate([c[k] for c in chunks]) for k in keys}


# ------------------------------------------------------------------------------ regrouping


def _scatter_range(table: dict, column: str, bounds: np.ndarray):
    g = len(bounds) - 1
    group = np.searchsorted(bounds, table[column], side="right") - 1
    inside = (group >= 0) & (group < g)
    parts = _split_by(group[inside], g, {k: np.asarray(a)[inside] for k, a in table.items()})
    return parts[0] if g == 1 else parts


def _scatter_partition(table: dict, column: str, num_partitions: int):
    parts = _split_by(partition_of(table[column], num_partitions), num_partitions,
                      {k: np.asarray(a) for k, a in table.items()})
    return parts[0] if num_partitions == 1 else parts


def _gather_sorted(column: str, *chunks: dict) -> dict[str, np.ndarray]:
    table = _concat(chunks, chunks[0].keys())
    order = np.argsort(table[column], kind="stable")
    return {k: a[order] for k, a in table.items()}


def _regroup(ray, refs: list, column: str, groups: int, scatter, scatter_arg, task_args) -> list:
    if not refs:
        raise ValueError("regroup: refs is empty (the keys of the output are unknown)")
    scatter_task = _remote(ray, scatter, groups, task_args)
    pieces = [_as_list(scatter_task.remote(r, column, scatter_arg), groups) for r in refs]
    gather = _remote(ray, _gather_sorted, 1, task_args)
    return [gather.remote(column, *[p[g] for p in pieces]) for g in range(groups)]


def regroup_by_range(ray, refs: list, column: str, bounds: np.ndarray, task_args: dict | None = None) -> list:
    """Rows of all ``refs`` regrouped into the ranges ``[bounds[g], bounds[g+1])`` of ``column``.

    Args:
        ray: the ``ray`` module (initialized).
        refs: ObjectRefs, each to a dict of equal-length numpy arrays with the same keys
            (``column`` among them); at least one.
        column: the key whose values are compared with ``bounds``.
        bounds: sorted 1-d array, ``len(bounds) >= 2``.
        task_args: passed to ``.options()`` of every task (e.g. ``{"memory": bytes}``).

    Returns:
        ``len(bounds) - 1`` ObjectRefs; ref ``g`` holds the rows with
        ``bounds[g] <= row[column] < bounds[g+1]``, sorted by ``column`` (stable: equal values
        keep the order of ``refs``, then of rows), same keys and dtypes. Other rows are dropped.
        One scatter task per ref (memory ~3x its table) and one gather task per range (~3x its
        rows).
    """
    bounds = np.asarray(bounds)
    if bounds.ndim != 1 or len(bounds) < 2:
        raise ValueError(f"regroup_by_range: bounds needs >= 2 values, got shape {bounds.shape}")
    return _regroup(ray, refs, column, len(bounds) - 1, _scatter_range, bounds, task_args)


def regroup_by_partition(ray, refs: list, column: str, num_partitions: int, task_args: dict | None = None) -> list:
    """Rows of all ``refs`` regrouped by ``partition_of(row[column], num_partitions)``.

    Same arguments as :func:`regroup_by_range` (``column`` must be integer, ids as int64); the
    other arrays may have any numpy dtype, fixed-width bytes (``'S'``) included. Returns
    ``num_partitions`` ObjectRefs; ref ``p`` holds the rows of partition ``p`` sorted by
    ``column`` (stable).
    """
    return _regroup(ray, refs, column, num_partitions, _scatter_partition, num_partitions, task_args)


def collect(ray, refs: list, sort_by: str) -> dict[str, np.ndarray]:
    """All rows of ``refs`` (dicts of equal-length arrays, same keys) concatenated in this process
    and sorted by ``sort_by`` (stable). Memory: the whole table, twice; for tests and small runs."""
    tables = ray.get(list(refs))
    if not tables:
        return {}
    return _gather_sorted(sort_by, *tables)


# ------------------------------------------------------------------------------ components: tasks


def _prepare(table: dict, num_partitions: int):
    """Edges of one input ref -> both directions scattered by first node; plus the row count."""
    src = np.asarray(table["src"], dtype=np.int64)
    dst = np.asarray(table["dst"], dtype=np.int64)
    u, v = np.concatenate([src, dst]), np.concatenate([dst, src])
    return (*_split_by(partition_of(u, num_partitions), num_partitions, {"u": u, "v": v}), len(src))


def _received(chunks) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rows of the chunks sorted by (u, v) and deduplicated; group starts per node; rows received."""
    u = np.concatenate([_EMPTY] + [c["u"] for c in chunks])
    v = np.concatenate([_EMPTY] + [c["v"] for c in chunks])
    received = len(u)
    # sort-unique by (u, v) through one int64 key of the local ranks: ~35 % faster than
    # np.lexsort((v, u)) on 4·10⁶ rows (measured), and the dedup is a comparison of neighbours
    u_ids, u_rank = relabel(u)
    v_ids, v_rank = relabel(v)
    del u, v
    nv = max(len(v_ids), 1)
    key = u_rank * nv + v_rank
    del u_rank, v_rank
    key.sort()
    if len(key):
        keep = np.empty(len(key), dtype=bool)
        keep[0] = True
        np.not_equal(key[1:], key[:-1], out=keep[1:])
        key = key[keep]
    u, v = u_ids[key // nv], v_ids[key % nv]
    del key
    new = np.empty(len(u), dtype=bool)
    new[:1] = True
    np.not_equal(u[1:], u[:-1], out=new[1:])
    return u, v, np.flatnonzero(new), received


def _per_node(u, v, starts):
    """node, m(node) = min(node, neighbours), degree (non-self neighbours), m repeated per row."""
    node = u[starts]
    if len(u) == 0:
        return node, node.copy(), _EMPTY, _EMPTY
    m = np.minimum(np.minimum.reduceat(v, starts), node)
    degree = np.add.reduceat((v != u).astype(np.int64), starts)
    m_row = np.repeat(m, np.diff(np.append(starts, len(u))))
    return node, m, degree, m_row


def _large_star(num_partitions: int, *chunks):
    """One large-star step on a partition: P edge chunks, labels and stats."""
    u, v, starts, received = _received(chunks)
    node, m, degree, m_row = _per_node(u, v, starts)
    isolated = node[degree == 0]
    up = v > u
    out_u = np.concatenate([v[up], isolated])
    out_v = np.concatenate([m_row[up], isolated])
    stats = {"not_star": int(((m < node) & (degree > 1)).sum()), "received": received,
             "unique_undirected": int(up.sum())}
    del u, v, m_row, up
    parts = _split_by(partition_of(out_u, num_partitions), num_partitions, {"u": out_u, "v": out_v})
    return (*parts, {"node": node, "comp": m}, stats)


def _small_star(num_partitions: int, *chunks):
    """One small-star step on a partition (rows x -> y with y < x, or self-loops): P chunks, stats."""
    u, v, starts, received = _received(chunks)
    node, m, degree, m_row = _per_node(u, v, starts)
    isolated = node[degree == 0]
    linked = degree > 0
    other = v != m_row  # rows (x, v) with v != m(x): edge {v, m}
    a = np.concatenate([v[other], node[linked], isolated])  # {x, m(x)} for every x with neighbours
    b = np.concatenate([m_row[other], m[linked], isolated])
    del u, v, m_row, other
    # both directions, self-loops once
    loop = a == b
    out_u = np.concatenate([a, b[~loop]])
    out_v = np.concatenate([b, a[~loop]])
    parts = _split_by(partition_of(out_u, num_partitions), num_partitions, {"u": out_u, "v": out_v})
    return (*parts, {"received": received})


# ------------------------------------------------------------------------------ components: driver


def distributed_components(ray, edge_refs: list, num_partitions: int, task_args: dict | None = None,
                           max_rounds: int = 200, consume: bool = False) -> tuple[list, dict]:
    """Connected components of the undirected graph given by ``edge_refs``, as Ray tasks.

    Args:
        ray: the ``ray`` module (initialized).
        edge_refs: ObjectRefs, each to a dict ``{"src": int64 array, "dst": int64 array}`` of
            edges ``src[i] -- dst[i]`` (any sizes, empty allowed, extra keys ignored; duplicate
            edges, both directions and self-loops ``(u, u)`` = "u exists" are fine).
        num_partitions: P >= 1, tasks per step; choose ~ 2·edges / ``edges_per_partition``.
        task_args: passed to ``.options()`` of every task (e.g. ``{"memory": bytes}``).
        max_rounds: most large-star/small-star rounds (config ``dedup.max_component_rounds``).
        consume: empty the list ``edge_refs`` (``list.clear()``) once the first step is
            submitted, so that the object store frees the input edges as soon as that step has
            read them (when the caller holds no other reference to them).

    Returns:
        ``(label_refs, info)``: ``label_refs`` is P ObjectRefs, ref ``p`` to
        ``{"node": int64 sorted unique, "comp": int64}`` for the nodes with
        ``partition_of(node, P) == p``; ``comp`` is the smallest node of the node's component;
        every node of an edge is in exactly one ref. ``info``: ``rounds`` (large-star steps,
        the last one finds the star forest), ``input_edges`` (rows of ``edge_refs``),
        ``unique_edges`` (undirected, without self-loops), ``partitions``,
        ``max_partition_rows`` (most rows one task received), ``seconds`` and
        ``round_seconds`` (list, wall time of each round).

    Raises:
        UserError: the graph is not a star forest after ``max_rounds`` rounds.
        ValueError: ``num_partitions`` outside ``[1, 65536]``.
    """
    if not 1 <= num_partitions <= 65536:
        raise ValueError(f"distributed_components: num_partitions must be in [1, 65536], got {num_partitions}")
    p = num_partitions
    t0 = time.perf_counter()
    prepare = _remote(ray, _prepare, p + 1, task_args)
    large = _remote(ray, _large_star, p + 2, task_args)
    small = _remote(ray, _small_star, p + 1, task_args)
    outs = [prepare.remote(r, p) for r in edge_refs]
    if consume:
        edge_refs.clear()
    input_edges = sum(ray.get([o[p] for o in outs]))
    chunks = [[o[q] for o in outs] for q in range(p)]  # chunks[q]: inputs of partition q
    del outs
    info = {"rounds": 0, "input_edges": int(input_edges), "unique_edges": 0, "partitions": p,
            "max_partition_rows": 0, "round_seconds": []}
    small_stats: list = []
    t_round = time.perf_counter()
    while True:
        outs = [large.remote(p, *chunks[q]) for q in range(p)]
        del chunks
        stats = ray.get([o[p + 1] for o in outs] + small_stats)
        info["rounds"] += 1
        if info["rounds"] == 1:
            info["unique_edges"] = sum(s["unique_undirected"] for s in stats)
        info["max_partition_rows"] = max([info["max_partition_rows"]] + [s["received"] for s in stats])
        now = time.perf_counter()
        info["round_seconds"].append(now - t_round)
        t_round = now
        if sum(s.get("not_star", 0) for s in stats[:p]) == 0:
            labels = [o[p] for o in outs]
            break
        if info["rounds"] >= max_rounds:
            raise UserError(
                f"connected components: not converged after {max_rounds} large-star/small-star rounds; "
                "raise dedup.max_component_rounds (rounds grow with log2 of the largest component)")
        chunks = [[o[q] for o in outs] for q in range(p)]
        del outs
        outs = [small.remote(p, *chunks[q]) for q in range(p)]
        small_stats = [o[p] for o in outs]
        chunks = [[o[q] for o in outs] for q in range(p)]
        del outs
    del outs
    info["seconds"] = time.perf_counter() - t0
    return labels, info
