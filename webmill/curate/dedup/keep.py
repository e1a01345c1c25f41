"""Stage 4 of dedup: which document of each duplicate component is kept, and, for the removed
ones, the kept document's ``id`` and why (``OUT/removed/dedup/``).

Keep rule (docs/dedup.md "What counts as a duplicate"): per component, the highest
``quality_score`` (missing, null or NaN = lowest), ties -> smallest ``id`` -> smallest global
row index. Documents of earlier runs (``--against``; nodes ``>= n_docs``) are never read and
always kept: a component holding one keeps it (the smallest such node) and loses every document
of this run.

The labels (node, component) are on the driver here: one Ray task per input file reads ``id``
and ``quality_score`` of its component members; the driver sorts them. Memory: ~60 bytes per
component member (Arrow ``id`` strings), independent of the number of edges.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webmill.curate.dedup.files import read_keep_columns
from webmill.storage import Storage

REASON_EXACT, REASON_NEAR = "dedup_exact", "dedup_near"


def choose_kept(ray, storage: Storage, rels: list[str], offsets: np.ndarray, nodes: np.ndarray, comp: np.ndarray,
                n_docs: int, use_quality: bool, task_args: dict) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Apply the keep rule to every component.

    Args:
        rels: input files (relative to ``storage``) in name order; ``offsets`` their int64 global
            row offsets (``len(rels) + 1``).
        nodes, comp: int64 sorted component members and the smallest node of each one's component.
        n_docs: documents of this run (nodes at or above are earlier runs' documents).
        use_quality: False = ``keep="id"`` or no ``quality_score`` column anywhere.

    Returns:
        ``(remove, kept, ids)``: bool per node (True = dropped; never for an earlier run's
        document), int64 per node (the node kept in its component) and the string ``id`` of each
        node of this run (``nodes[:len(ids)]``).
    """
    n_new = int(np.searchsorted(nodes, n_docs))
    bounds = np.searchsorted(nodes[:n_new], offsets)  # members of file i: nodes[bounds[i]:bounds[i+1]]
    read_remote = ray.remote(read_keep_columns).options(**task_args)
    refs = [
        read_remote.remote(storage, rels[i], nodes[bounds[i]: bounds[i + 1]] - offsets[i])
        for i in range(len(rels)) if bounds[i + 1] > bounds[i]
    ]
    empty = pa.table({"id": pa.array([], pa.string()), "q": pa.array([], pa.float64())})
    table = pa.concat_tables([empty] + ray.get(refs))  # in file order, hence in node order
    ids = table.column("id").combine_chunks()
    q = table.column("q").combine_chunks() if use_quality else pa.nulls(n_new, pa.float64())
    n_old = len(nodes) - n_new
    members = pa.table({
        "comp": pa.array(comp),
        "later": pa.array(np.r_[np.ones(n_new, np.int8), np.zeros(n_old, np.int8)]),  # earlier runs first
        "q": pa.concat_arrays([q, pa.nulls(n_old, pa.float64())]),
        "id": pa.concat_arrays([ids, pa.nulls(n_old, pa.string())]),
        "node": pa.array(nodes),
    })
    sort_keys = [("comp", "ascending", "at_end"), ("later", "ascending", "at_end"), ("q", "descending", "at_end"),
                 ("id", "ascending", "at_end"), ("node", "ascending", "at_end")]
    order = pc.sort_indices(members, sort_keys=sort_keys).to_numpy().astype(np.int64)
    comp_sorted = comp[order]
    heads = np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]]) if len(order) else order
    best = order[heads]
    kept = np.empty(len(nodes), dtype=np.int64)
    kept[order] = np.repeat(nodes[best], np.diff(np.r_[heads, len(order)]))
    remove = np.ones(len(nodes), dtype=bool)
    remove[best] = False
    remove[n_new:] = False  # earlier runs' documents are never touched
    return remove, kept, ids


def removal_details(nodes: np.ndarray, kept: np.ndarray, ids: pa.Array, rep: np.ndarray,
                    old_ids) -> tuple[np.ndarray, np.ndarray]:
    """``kept_id`` and ``exact`` of every node (meaningful for removed nodes).

    Args:
        nodes, kept: from :func:`choose_kept`; ``ids`` the ids of this run's nodes.
        rep: int64 exact-group representative of each node
            (:func:`~webmill.curate.dedup.graph.exact_representatives`).
        old_ids: callable ``int64 nodes -> list[str]`` giving the ids of earlier runs' documents
            (:func:`webmill.curate.dedup.index.resolve_against_ids`).

    Returns:
        ``(kept_id, exact)``: object array, the kept document's id; bool, True when the node is
        an exact duplicate (same normalized text) of it (reason ``"dedup_exact"``, else
        ``"dedup_near"``).
    """
    n_new = len(ids)
    kept_pos = np.searchsorted(nodes, kept)
    kept_id = np.empty(len(nodes), dtype=object)
    mine = kept_pos < n_new
    if mine.any():
        kept_id[mine] = np.asarray(ids.to_pylist(), dtype=object)[kept_pos[mine]]
    if (~mine).any():
        old, inverse = np.unique(kept[~mine], return_inverse=True)
        kept_id[~mine] = np.asarray(old_ids(old), dtype=object)[inverse]
    return kept_id, rep == rep[kept_pos]


# ---------------------------------------------------------------------------------------------- distributed


def exact_pairs(block: dict) -> dict[str, np.ndarray]:
    """Ray task: ``{"node", "rep"}`` (int64) of the exact-text edges of one edge block: each end
    with its exact group's smallest member (the star's centre ``src``, see
    :func:`~webmill.curate.dedup.graph.exact_groups`); rows may repeat."""
    exact = np.asarray(block["exact"], bool)
    src, dst = np.asarray(block["src"], np.int64)[exact], np.asarray(block["dst"], np.int64)[exact]
    return {"node": np.concatenate([dst, src]), "rep": np.concatenate([src, src])}


def member_rows(storage: Storage, rel: str | None, offset: int, labels: dict, pairs: dict,
                use_quality: bool) -> dict[str, np.ndarray]:
    """Ray task: the keep-rule keys of the component members of one input file.

    Args:
        rel: the input file (relative to ``storage``), or None for the earlier runs' documents
            (never read: they sort first).
        offset: global row index of the file's first row.
        labels: ``{"node", "comp"}`` int64 of the file's members, sorted by node.
        pairs: ``{"node", "rep"}`` int64 exact-group rows of the file's nodes (:func:`exact_pairs`).

    Returns:
        equal-length arrays, one row per member: ``comp``, ``node``, ``rep`` (int64; exact-group
        representative, the node itself outside a group), ``later`` (int8, 0 = earlier run),
        ``qclass`` (int8: 0 value, 1 NaN, 2 missing), ``negq`` (float64, -quality_score),
        ``idnull`` (int8) and ``id`` (UTF-8 bytes, numpy ``'S'``): sorting by (comp, later,
        qclass, negq, idnull, id, node) puts each component's kept document first, the order
        :func:`choose_kept` gets from Arrow (byte order of UTF-8 = code point order).
    """
    node, comp = np.asarray(labels["node"], np.int64), np.asarray(labels["comp"], np.int64)
    n = len(node)
    rep = node.copy()
    if len(pairs["node"]) and n:
        pnode, first = np.unique(np.asarray(pairs["node"], np.int64), return_index=True)
        pos = np.searchsorted(pnode, node).clip(max=len(pnode) - 1)
        hit = pnode[pos] == node
        rep[hit] = np.asarray(pairs["rep"], np.int64)[first[pos[hit]]]
    if rel is None or n == 0:
        ids, q = pa.nulls(n, pa.string()), pa.nulls(n, pa.float64())
    else:
        table = read_keep_columns(storage, rel, node - offset)
        ids, q = table.column("id").combine_chunks(), table.column("q").combine_chunks()
        if not use_quality:
            q = pa.nulls(n, pa.float64())
    qv = q.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
    qnull = q.is_null().to_numpy(zero_copy_only=False) if n else np.zeros(0, bool)
    qclass = np.where(qnull, 2, np.where(np.isnan(qv), 1, 0)).astype(np.int8)
    id_bytes = ids.cast(pa.binary()).fill_null(b"").to_numpy(zero_copy_only=False)
    return {
        "comp": comp, "node": node, "rep": rep,
        "later": np.full(n, 0 if rel is None else 1, np.int8), "qclass": qclass,
        "negq": np.where(qclass == 0, -qv, 0.0), "idnull": ids.is_null().to_numpy(zero_copy_only=False).astype(np.int8),
        "id": np.asarray(id_bytes.tolist(), dtype="S") if n else np.zeros(0, "S1"),
    }


def keep_partition(rows: dict, n_docs: int, against, need_ids: bool):
    """Ray task (``num_returns=2``): the keep rule and the statistics of whole components.

    Args:
        rows: :func:`member_rows` rows of every member of some components (all members of a
            component are in the same partition: the rows were grouped by ``comp``).
        n_docs: documents of this run (nodes at or above are earlier runs' documents).
        against: the :class:`~webmill.curate.dedup.index.Against` (ids of earlier documents that
            are kept: :func:`~webmill.curate.dedup.index.resolve_against_ids`), when ``need_ids``.
        need_ids: fill ``kept_id`` (for ``removed/dedup``); else it is empty bytes.

    Returns:
        ``(decisions, stats)``: decisions = ``node``, ``cluster`` (comp), ``remove`` (bool),
        ``kept_id`` ('S' UTF-8), ``exact`` (bool: same exact group as the kept document) for the
        nodes of this run; stats = the additive counts of
        :func:`~webmill.curate.dedup.graph.component_stats` plus ``removed`` and
        ``removed_by_earlier``.
    """
    from webmill.curate.dedup.graph import component_stats

    order = np.lexsort((rows["node"], rows["id"], rows["idnull"], rows["negq"], rows["qclass"], rows["later"],
                        rows["comp"]))
    comp, node, rep, ids = rows["comp"][order], rows["node"][order], rows["rep"][order], rows["id"][order]
    n = len(node)
    heads = np.flatnonzero(np.r_[True, comp[1:] != comp[:-1]]) if n else np.zeros(0, np.int64)
    best = np.repeat(heads, np.diff(np.r_[heads, n]))  # row of each row's kept document
    kept = node[best]
    remove = (node != kept) & (node < n_docs)
    mine = node < n_docs
    kept_id = np.zeros(n, "S1")
    if need_ids and n:
        kept_id = ids[best]
        old = kept >= n_docs
        if old.any():
            from webmill.curate.dedup.index import resolve_against_ids

            uniq, inverse = np.unique(kept[old], return_inverse=True)
            names = np.asarray([s.encode("utf-8") for s in resolve_against_ids(against, uniq)], dtype="S")
            kept_id = kept_id.astype(np.result_type(kept_id.dtype, names.dtype))
            kept_id[old] = names[inverse]
    # component_stats wants sorted nodes and the exact groups as (nodes, smallest member)
    by_node = np.argsort(node, kind="stable")
    in_group = np.isin(node, rep[rep != node]) | (rep != node)
    ex = by_node[in_group[by_node]]
    c = component_stats(node[by_node], comp[by_node], node[ex], rep[ex], n_docs=n_docs)
    stats = {**c, "removed": int(remove.sum()), "removed_by_earlier": int((remove & (kept >= n_docs)).sum())}
    decisions = {"node": node[mine], "cluster": comp[mine], "remove": remove[mine], "kept_id": kept_id[mine],
                 "exact": (rep == rep[best])[mine]}
    return decisions, stats


def _removed_count(decisions: dict) -> int:
    return int(np.count_nonzero(decisions["remove"]))


def sum_stats(parts: list[dict]) -> dict:
    """Sum of :func:`keep_partition` statistics (histograms bin by bin)."""
    total: dict = {}
    for s in parts:
        for k, v in s.items():
            if isinstance(v, dict):
                h = total.setdefault(k, {})
                for b, x in v.items():
                    h[b] = h.get(b, 0) + x
            else:
                total[k] = total.get(k, 0) + v
    return total


def distributed_keep(ray, storage: Storage, rels: list[str], offsets: np.ndarray, label_refs: list,
                     edge_refs: list, against, use_quality: bool, num_partitions: int, need_ids: bool,
                     task_args: dict) -> tuple[list, list[int], dict]:
    """Stage 4 without collecting anything per document on the driver.

    Labels and exact pairs go to their files (``regroup_by_range`` on node, bounds = file
    offsets, plus one range for the earlier runs' nodes), one task per file reads its members'
    keep columns (:func:`member_rows`), the rows are regrouped by component
    (``regroup_by_partition``), one task per partition applies the keep rule
    (:func:`keep_partition`) and the decisions go back to the files. Same removed set, kept ids
    and statistics as :func:`choose_kept` + ``component_stats`` (tests/test_dedup_paths.py).

    Returns:
        ``(decision_refs, removed_per_file, stats)``: one ObjectRef per input file to its
        decisions sorted by node (:func:`keep_partition`), the removed count of each file, and
        the summed statistics.
    """
    from webmill.curate.dedup.components import regroup_by_partition, regroup_by_range

    n_docs = int(offsets[-1])
    bounds = np.asarray(offsets, np.int64)
    if against is not None and against.total:
        bounds = np.r_[bounds, n_docs + against.total]
    opts = ray.remote(exact_pairs).options(**task_args)
    pair_refs = [opts.remote(r) for r in edge_refs] or [ray.put({"node": np.empty(0, np.int64),
                                                                 "rep": np.empty(0, np.int64)})]
    labels = regroup_by_range(ray, label_refs, "node", bounds, task_args)
    pairs = regroup_by_range(ray, pair_refs, "node", bounds, task_args)
    del pair_refs
    members = ray.remote(member_rows).options(**task_args)
    files = list(rels) + ([None] if len(bounds) > len(offsets) else [])
    member_refs = [members.remote(storage, rel, int(bounds[i]), labels[i], pairs[i], use_quality)
                   for i, rel in enumerate(files)]
    del labels, pairs
    grouped = regroup_by_partition(ray, member_refs, "comp", num_partitions, task_args)
    del member_refs
    keep = ray.remote(keep_partition).options(num_returns=2, **task_args)
    outs = [keep.remote(g, n_docs, against, need_ids) for g in grouped]
    del grouped
    stats = sum_stats(ray.get([o[1] for o in outs]))
    decision_refs = regroup_by_range(ray, [o[0] for o in outs], "node", np.asarray(offsets, np.int64), task_args)
    del outs
    count = ray.remote(_removed_count).options(**task_args)
    removed_per_file = ray.get([count.remote(d) for d in decision_refs])
    return decision_refs, removed_per_file, stats
