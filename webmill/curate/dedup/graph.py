"""Stages 2-3 of dedup and their statistics: the bucket scan (in Ray Data tasks), connected
components of the candidate graph (in the driver), and the component counts of ``dedup.json``.
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


def component_stats(nodes, comp, exact_nodes, exact_comp) -> dict:
    """Counts for ``dedup.json``.

    Args:
        nodes, comp: from :func:`connected_components` over all edges (int64, same shape).
        exact_nodes, exact_comp: the same over the exact-text edges only.

    Returns:
        ``components`` (int), ``exact_groups`` (int), ``exact_removed`` (int: exact duplicates
        beyond the first of each group), ``near_components`` (components holding >= 2 distinct
        normalized texts) and ``near_histogram`` (their sizes, see :func:`_histogram`).
    """
    rep = nodes.copy()  # exact-group representative of every node (itself when not in one)
    if len(exact_nodes):
        pos = np.searchsorted(exact_nodes, nodes).clip(max=len(exact_nodes) - 1)  # sorted queries: fast
        hit = exact_nodes[pos] == nodes
        rep[hit] = exact_comp[pos[hit]]
    comp_ids, comp_label = relabel(comp)
    comp_sizes = np.bincount(comp_label, minlength=len(comp_ids))
    # distinct texts per component: every representative lies in exactly one component
    reps, rep_label = relabel(rep)
    rep_comp = np.zeros(len(reps), dtype=np.int64)
    rep_comp[rep_label] = comp_label
    texts_per_comp = np.bincount(rep_comp, minlength=len(comp_ids))
    near = texts_per_comp >= 2
    n_exact_groups = len(relabel(exact_comp)[0])
    return {
        "components": int(len(comp_ids)),
        "exact_groups": int(n_exact_groups),
        "exact_removed": int(len(exact_nodes) - n_exact_groups),
        "near_components": int(near.sum()),
        "near_histogram": _histogram(comp_sizes[near]),
    }


def _histogram(sizes: np.ndarray) -> dict[str, int]:
    """Counts of component sizes in the bins 2, 3, 4, 5-9, 10-99, 100-999, 1000+."""
    ranges = [(2, 2), (3, 3), (4, 4), (5, 9), (10, 99), (100, 999), (1000, np.iinfo(np.int64).max)]
    names = ["2", "3", "4", "5-9", "10-99", "100-999", "1000+"]
    return {n: int(((sizes >= lo) & (sizes <= hi)).sum()) for n, (lo, hi) in zip(names, ranges)}
