"""Stages 2-3 of dedup and their statistics: the bucket scan (in Ray Data tasks), edge
deduplication and connected components of the candidate graph on the driver (the single-worker
path; the distributed one is :mod:`webmill.curate.dedup.components`), the exact-duplicate groups
(stars, no components needed) and the component counts of ``dedup.json``.
"""

from __future__ import annotations

import numpy as np

from webmill.curate.dedup.config import EXACT_BAND


# stage 2: bucket scan


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


def bucket_udf(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data ``map_groups`` function: :func:`bucket_edges` of one group of band rows."""
    return bucket_edges(group["band"], group["key"], group["doc"])


# stage 3: connected components


def unique_edges(src: np.ndarray, dst: np.ndarray, exact: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate edges without the copies that several LSH bands (and the exact key) give.

    Args:
        src, dst: int64 edge ends as :func:`bucket_edges` emits them (``src < dst``: the bucket's
            smallest document first), so equal pairs are equal rows.
        exact: bool, whether the edge came from the exact-text key.

    Returns:
        ``(src, dst, exact)`` sorted by ``(src, dst)`` with each pair once; ``exact`` is True if
        any copy was exact. One lexsort: ~3 x 8 bytes per edge of extra memory.
    """
    if len(src) == 0:
        return src.astype(np.int64), dst.astype(np.int64), exact.astype(bool)
    order = np.lexsort((~exact, dst, src))  # exact copies first within a pair
    src, dst, exact = src[order], dst[order], exact[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    return src[first], dst[first], exact[first]


def exact_groups(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(nodes, group)`` of the exact-text edges without a components pass.

    Every exact group is one bucket of the exact key (band -1), whose edges are a star from its
    smallest document (:func:`bucket_edges`), and a document has one exact key: so the group of
    ``dst`` is ``src`` and the centre's group is itself. Input: int64 ``src``/``dst`` of the
    exact edges (copies allowed). Output: sorted unique int64 ``nodes`` and int64 ``group`` (the
    smallest node of each node's group), the same as :func:`connected_components` on them.
    """
    ends = np.concatenate([dst, src]).astype(np.int64)
    group = np.concatenate([src, src]).astype(np.int64)
    nodes, first = np.unique(ends, return_index=True)
    return nodes, group[first]


def relabel(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

    nodes, ends = relabel(np.concatenate([src, dst]))
    if len(nodes) == 0:
        return nodes, nodes.copy()
    n_edges = len(src)
    graph = csr_matrix((np.ones(n_edges, dtype=np.int8), (ends[:n_edges], ends[n_edges:])), shape=(len(nodes), len(nodes)))
    del ends
    n_comp, labels = scipy_cc(graph, directed=False)
    smallest = np.full(n_comp, len(nodes), dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(len(nodes)))  # nodes are sorted: smallest index = smallest node
    return nodes, nodes[smallest[labels]]


# statistics


def exact_representatives(nodes: np.ndarray, exact_nodes: np.ndarray, exact_comp: np.ndarray) -> np.ndarray:
    """int64 exact-group representative (smallest member) of each of the sorted ``nodes``;
    a node in no exact group is its own representative."""
    rep = nodes.copy()
    if len(exact_nodes) and len(nodes):
        pos = np.searchsorted(exact_nodes, nodes).clip(max=len(exact_nodes) - 1)  # sorted queries: fast
        hit = exact_nodes[pos] == nodes
        rep[hit] = exact_comp[pos[hit]]
    return rep


def component_stats(nodes, comp, exact_nodes, exact_comp, n_docs: int | None = None) -> dict:
    """Counts for ``dedup.json``.

    Args:
        nodes, comp: from :func:`connected_components` over all edges (int64, same shape).
        exact_nodes, exact_comp: the same over the exact-text edges only.
        n_docs: documents of this run; nodes ``>= n_docs`` are kept documents of earlier runs
            (``--against``): components without a node of this run are left out, and an exact
            group holding an earlier document loses all its documents of this run.

    Returns:
        ``components`` (int), ``exact_groups`` (int), ``exact_removed`` (int: documents of this
        run removed as exact duplicates: beyond the first of each group, all of a group with an
        earlier run's document), ``near_components`` (components holding >= 2 distinct
        normalized texts) and ``near_histogram`` (their sizes, see :func:`_histogram`).
    """
    if n_docs is not None:
        mine = comp < n_docs  # comp = smallest node: < n_docs iff the component has one of ours
        nodes, comp = nodes[mine], comp[mine]
        mine = exact_comp < n_docs
        exact_nodes, exact_comp = exact_nodes[mine], exact_comp[mine]
    rep = exact_representatives(nodes, exact_nodes, exact_comp)
    comp_ids, comp_label = relabel(comp)
    comp_sizes = np.bincount(comp_label, minlength=len(comp_ids))
    # distinct texts per component: every representative lies in exactly one component
    reps, rep_label = relabel(rep)
    rep_comp = np.zeros(len(reps), dtype=np.int64)
    rep_comp[rep_label] = comp_label
    texts_per_comp = np.bincount(rep_comp, minlength=len(comp_ids))
    near = texts_per_comp >= 2
    group_ids, group_label = relabel(exact_comp)
    n_exact_groups = len(group_ids)
    exact_removed = len(exact_nodes) - n_exact_groups
    if n_docs is not None and len(exact_nodes):
        with_old = np.zeros(n_exact_groups, dtype=bool)
        with_old[group_label[exact_nodes >= n_docs]] = True
        exact_removed = int((exact_nodes < n_docs).sum()) - int((~with_old).sum())
    return {
        "components": int(len(comp_ids)),
        "exact_groups": int(n_exact_groups),
        "exact_removed": int(exact_removed),
        "near_components": int(near.sum()),
        "near_histogram": _histogram(comp_sizes[near]),
    }


def _histogram(sizes: np.ndarray) -> dict[str, int]:
    """Counts of component sizes in the bins 2, 3, 4, 5-9, 10-99, 100-999, 1000+."""
    ranges = [(2, 2), (3, 3), (4, 4), (5, 9), (10, 99), (100, 999), (1000, np.iinfo(np.int64).max)]
    names = ["2", "3", "4", "5-9", "10-99", "100-999", "1000+"]
    return {n: int(((sizes >= lo) & (sizes <= hi)).sum()) for n, (lo, hi) in zip(names, ranges)}
