"""Distributed connected components (webmill/curate/dedup/components.py) against scipy, and the
regrouping helpers. Embedded Ray with 2 CPUs."""

from __future__ import annotations

import random
import tempfile

import numpy as np
import pytest
from jaccard_gen import jaccard_pair, load_wet_documents, real_base_documents, write_documents

from webmill.curate.dedup import DedupConfig, band_rows_for_file, bucket_edges, connected_components
from webmill.curate.dedup.components import (
    collect,
    distributed_components,
    partition_of,
    regroup_by_partition,
    regroup_by_range,
)
from webmill.errors import UserError
from webmill.storage import as_storage


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="ray-cc-", dir="/tmp"))
    yield ray
    ray.shutdown()


def _put_split(ray, src, dst, pieces: int) -> list:
    """Edges split into ``pieces`` refs of uneven sizes (some empty), with an extra key."""
    cuts = np.sort(np.random.default_rng(len(src)).integers(0, len(src) + 1, pieces - 1))
    return [ray.put({"src": s, "dst": d, "exact": np.zeros(len(s), bool)})
            for s, d in zip(np.split(src, cuts), np.split(dst, cuts))]


def _check(ray, src, dst, partitions: int, pieces: int = 7, **kw) -> dict:
    """distributed_components == scipy (smallest-node labels); returns info."""
    refs = _put_split(ray, np.asarray(src, np.int64), np.asarray(dst, np.int64), pieces)
    label_refs, info = distributed_components(ray, refs, partitions, **kw)
    assert len(refs) == (0 if kw.get("consume") else pieces)  # consume=True empties the list
    assert len(label_refs) == partitions
    parts = ray.get(label_refs)
    for p, part in enumerate(parts):  # each node in its own partition, sorted unique
        assert np.all(partition_of(part["node"], partitions) == p)
        assert np.all(np.diff(part["node"]) > 0)
    got = collect(ray, label_refs, "node")
    nodes, comp = connected_components(np.asarray(src, np.int64), np.asarray(dst, np.int64))
    assert np.array_equal(got["node"], nodes)
    assert np.array_equal(got["comp"], comp)
    assert info["partitions"] == partitions and info["input_edges"] == len(src)
    return info


def _planted(rng, sizes, id_space: int):
    """Random connected graphs of the given sizes on shuffled ids (a random spanning tree plus
    extra random edges each), duplicates and both directions mixed in."""
    ids = rng.choice(id_space, size=sum(sizes), replace=False).astype(np.int64)
    src, dst, start = [], [], 0
    for s in sizes:
        members = ids[start:start + s]
        start += s
        if s == 1:
            src.append(members), dst.append(members)  # self-loop: a node of its own
            continue
        parent = members[rng.integers(0, np.arange(1, s))]  # tree: node i -> one of 0..i-1
        extra = rng.integers(0, s, size=(s // 2, 2))
        src += [members[1:], members[extra[:, 0]]]
        dst += [parent, members[extra[:, 1]]]
    src, dst = np.concatenate(src), np.concatenate(dst)
    dup = rng.random(len(src)) < 0.3  # 30 % of the edges again, half of them reversed
    flip = rng.random(dup.sum()) < 0.5
    src2 = np.where(flip, dst[dup], src[dup])
    dst2 = np.where(flip, src[dup], dst[dup])
    src, dst = np.concatenate([src, src2]), np.concatenate([dst, dst2])
    order = rng.permutation(len(src))
    return src[order], dst[order]


def test_partition_of_balanced_and_in_range():
    p = partition_of(np.arange(1_000_000, dtype=np.int64), 13)
    counts = np.bincount(p, minlength=13)
    assert p.dtype == np.int64 and p.min() == 0 and p.max() == 12
    assert counts.max() / counts.min() < 1.01  # consecutive ids spread evenly
    assert np.array_equal(partition_of(np.array([5, -7]), 1), [0, 0])


@pytest.mark.parametrize("seed, partitions", [(0, 3), (1, 8)])
def test_random_planted_components_equal_scipy(ray_local, seed, partitions):
    rng = np.random.default_rng(seed)
    sizes = [1] * 50 + [2] * 300 + list(rng.integers(3, 10, 200)) + list(rng.integers(10, 300, 20)) + [3000]
    src, dst = _planted(rng, sizes, 10**12)
    info = _check(ray_local, src, dst, partitions, pieces=11)
    pairs = {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist()) if a != b}
    assert info["unique_edges"] == len(pairs)
    assert info["max_partition_rows"] > 0


@pytest.mark.parametrize("shuffled", [False, True])
def test_long_chain_rounds_are_logarithmic(ray_local, shuffled):
    """A path (worst case for label propagation: n - 1 rounds). Measured here: 11 / 15 rounds for
    sorted ids and 9 / 13 for shuffled ids at n = 2^10 / 2^14, i.e. <= log2(n) + 1."""
    rounds = {}
    for k in (10, 14):
        n = 2**k
        ids = np.random.default_rng(k).permutation(n).astype(np.int64) * 3 + 11 if shuffled else np.arange(n, dtype=np.int64)
        rounds[k] = _check(ray_local, ids[:-1], ids[1:], 4)["rounds"]
        assert rounds[k] <= k + 2
    assert rounds[14] - rounds[10] <= 2 * (14 - 10)  # grows with log n, not with n (16x more nodes)


def test_large_star_centre_not_smallest(ray_local):
    rng = np.random.default_rng(5)
    leaves = rng.choice(10**9, size=20_000, replace=False).astype(np.int64) + 1
    centre = np.int64(5 * 10**8)  # about half of the leaves are smaller
    src = np.full(len(leaves), centre)
    info = _check(ray_local, np.concatenate([src, leaves[:100]]), np.concatenate([leaves, src[:100]]), 5)
    assert info["unique_edges"] == 20_000
    assert info["rounds"] <= 4


def test_isolated_nodes_and_self_loops(ray_local):
    src = np.array([7, 7, 9, 3, 3, 100, 4], np.int64)  # 7, 9: only self-loops; 3-100 edge; 4-4 + 4-5
    dst = np.array([7, 7, 9, 100, 3, 3, 4], np.int64)
    info = _check(ray_local, np.append(src, 4), np.append(dst, 5), 3)
    assert info["unique_edges"] == 2


def test_empty_input(ray_local):
    refs = [ray_local.put({"src": np.empty(0, np.int64), "dst": np.empty(0, np.int64)}) for _ in range(3)]
    labels, info = distributed_components(ray_local, refs, 4)
    got = collect(ray_local, labels, "node")
    assert len(got["node"]) == 0 and got["comp"].dtype == np.int64
    assert info["rounds"] == 1 and info["input_edges"] == 0 and info["unique_edges"] == 0
    # even tiny results live in the object store, not inline in the driver (components._remote)
    locations = ray_local.experimental.get_object_locations(labels)
    assert all(loc["node_ids"] for loc in locations.values())
    labels, info = distributed_components(ray_local, [], 2)
    assert sum(len(t["node"]) for t in ray_local.get(labels)) == 0


def test_many_partitions_more_than_cpus(ray_local):
    rng = np.random.default_rng(9)
    src, dst = _planted(rng, list(rng.integers(2, 40, 400)), 10**6)
    _check(ray_local, src, dst, 16, pieces=3, consume=True)
    _check(ray_local, src, dst, 1, pieces=2)


def test_max_rounds_is_a_user_error(ray_local):
    ids = np.arange(4096, dtype=np.int64)
    refs = [ray_local.put({"src": ids[:-1], "dst": ids[1:]})]
    with pytest.raises(UserError, match="dedup.max_component_rounds"):
        distributed_components(ray_local, refs, 2, max_rounds=3)


def test_regroup_by_range_and_partition(ray_local):
    rng = np.random.default_rng(2)
    tables = []
    for i in range(4):
        n = int(rng.integers(0, 500))
        tables.append({"node": rng.integers(-5, 1000, n).astype(np.int64),
                       "src": np.full(n, i, np.int64), "row": np.arange(n),
                       "name": np.array([f"d{x}" for x in range(n)], dtype="S6")})
    refs = [ray_local.put(t) for t in tables]
    whole = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    bounds = np.array([0, 10, 10, 400, 990])
    groups = ray_local.get(regroup_by_range(ray_local, refs, "node", bounds))
    assert len(groups) == 4
    for g, part in enumerate(groups):
        sel = (whole["node"] >= bounds[g]) & (whole["node"] < bounds[g + 1])
        order = np.argsort(whole["node"][sel], kind="stable")  # stable: ref order, then row order
        for k in whole:
            assert part[k].dtype == whole[k].dtype
            assert np.array_equal(part[k], whole[k][sel][order])
    parts = ray_local.get(regroup_by_partition(ray_local, refs, "node", 5))
    for p, part in enumerate(parts):
        sel = partition_of(whole["node"], 5) == p
        order = np.argsort(whole["node"][sel], kind="stable")
        for k in whole:
            assert np.array_equal(part[k], whole[k][sel][order])
    got = collect(ray_local, refs, "node")
    order = np.argsort(whole["node"], kind="stable")
    assert all(np.array_equal(got[k], whole[k][order]) for k in whole)


def test_same_components_as_scipy_on_real_dedup_edges(ray_local, tmp_path):
    """Band rows of real WET documents (bundled examples/warc) plus chains of near-duplicate edits
    and exact copies -> graph.bucket_edges -> both component paths agree."""
    rng = random.Random(4)
    base = load_wet_documents("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz")
    words = real_base_documents()
    docs = list(base)
    for i, w in enumerate(words[:12]):  # a chain of edits of edits (J ~ 0.85 each) + exact copies
        for step in range(rng.randint(1, 5)):
            w, _ = jaccard_pair(w, 0.85, rng)
            docs.append(dict(base[0], id=f"edit-{i}-{step}", text=b" ".join(w).decode()))
            if step % 2:
                docs.append(dict(docs[-1], id=f"copy-{i}-{step}"))
    random.Random(1).shuffle(docs)
    half = len(docs) // 2
    write_documents(docs[:half], tmp_path / "documents" / "a.parquet")
    write_documents(docs[half:], tmp_path / "documents" / "b.parquet")
    storage = as_storage(tmp_path)
    cfg = DedupConfig()
    rows = [r for rel, off in (("documents/a.parquet", 0), ("documents/b.parquet", half))
            for r in band_rows_for_file(storage, rel, off, cfg, 4)]
    edges = bucket_edges(*(np.concatenate([r[k] for r in rows]) for k in ("band", "key", "doc")))
    assert len(edges["src"]) > 30
    nodes, comp = connected_components(edges["src"], edges["dst"])
    assert len(np.unique(comp)) >= 10
    _check(ray_local, edges["src"], edges["dst"], 3, pieces=4)
