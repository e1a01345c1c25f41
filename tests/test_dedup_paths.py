"""Issue 18 integration of the dedup job: the single-worker and the distributed components give
byte-identical outputs and equal counts, ``auto`` switches on the edge count, edges repeated over
bands are removed, and ``removed/dedup/`` holds every removed document once with its component
and kept document. Real documents: bundled examples/warc (always) and ../shared/data/warc."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from dedup_fixtures import needs_data, read_outputs
from typer.testing import CliRunner

from webmill.curate import minhash as mh
from webmill.curate.dedup import DedupConfig, connected_components, exact_groups, run_dedup, unique_edges
from webmill.errors import UserError

COUNTS = ("documents_in", "documents_out", "documents_removed", "exact", "components", "candidate_edges",
          "unique_edges", "per_file")
MINHASH_COUNTS = ("near_duplicate_components", "component_size_histogram", "documents_removed")


# ---------------------------------------------------------------------------------------------- no Ray


def test_unique_edges_drops_band_copies_and_keeps_exact():
    src = np.array([1, 1, 1, 2, 1, 5], dtype=np.int64)
    dst = np.array([4, 3, 4, 9, 4, 6], dtype=np.int64)
    exact = np.array([False, False, True, False, False, False])
    s, d, e = unique_edges(src, dst, exact)
    assert list(zip(s.tolist(), d.tolist(), e.tolist())) == [(1, 3, False), (1, 4, True), (2, 9, False), (5, 6, False)]
    s, d, e = unique_edges(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool))
    assert len(s) == len(d) == len(e) == 0


def test_exact_groups_equal_components_of_the_stars():
    rng = np.random.default_rng(0)
    src, dst = [], []
    docs = rng.permutation(10_000)
    start = 0
    for size in rng.integers(2, 30, size=200):  # disjoint exact groups, each a star from its smallest
        g = np.sort(docs[start:start + size])
        start += size
        src += [g[0]] * (size - 1)
        dst += g[1:].tolist()
    src, dst = np.array(src, np.int64), np.array(dst, np.int64)
    nodes, groups = exact_groups(src, dst)
    want_nodes, want = connected_components(src, dst)
    assert nodes.tolist() == want_nodes.tolist() and groups.tolist() == want.tolist()


@pytest.mark.parametrize("kwargs, key", [
    ({"components": "gpu"}, "components"),
    ({"distributed_min_edges": -1}, "distributed_min_edges"),
    ({"edges_per_partition": 0}, "edges_per_partition"),
    ({"max_component_rounds": 0}, "max_component_rounds"),
    ({"char_shingles": {"zh": 0}}, "char_shingles.zh"),
    ({"char_shingles": ["zh"]}, "char_shingles"),
    ({"write_removed": 1}, "write_removed"),
    ({"write_index": "yes"}, "write_index"),
])
def test_new_config_keys_are_validated(kwargs, key):
    with pytest.raises(UserError, match=key):
        DedupConfig(**kwargs).validate()


def test_char_shingles_table_in_toml(tmp_path):
    from webmill.config import load_config, kwargs_of

    toml = tmp_path / "c.toml"
    toml.write_text('[dedup]\ncomponents = "distributed"\nwrite_removed = true\n[dedup.char_shingles]\nzh = 4\nja = 5\n')
    cfg = DedupConfig(**kwargs_of(load_config(toml)["dedup"]))
    cfg.validate()
    assert cfg.char_shingles == {"zh": 4, "ja": 5} and cfg.components == "distributed" and cfg.write_removed
    toml.write_text('[dedup]\ncomponents = 3\n')
    with pytest.raises(UserError, match="components"):
        load_config(toml)


def test_cli_char_shingles_parsing():
    from webmill.curate.cli.dedup import parse_char_shingles

    assert parse_char_shingles("zh=5, ja=4") == {"zh": 5, "ja": 4}
    assert parse_char_shingles("none") == {}
    with pytest.raises(UserError, match="--char-shingles"):
        parse_char_shingles("zh:5")


# ---------------------------------------------------------------------------------------------- Ray


def _same_results(d: dict, a: str, b: str, sa: dict, sb: dict) -> None:
    out = d["out"]
    for name in d["files"]:
        assert (out / a / f"{name}.parquet").read_bytes() == (out / b / f"{name}.parquet").read_bytes(), name
    for k in COUNTS:
        assert sa[k] == sb[k], k
    for k in MINHASH_COUNTS:
        assert sa["minhash"][k] == sb["minhash"][k], k


def _paths_agree(d: dict, edges_per_partition: int) -> tuple[dict, dict]:
    single = run_dedup(d["out"], DedupConfig(components="single"), output_subdir="p_single")
    dist = run_dedup(d["out"], DedupConfig(components="distributed", edges_per_partition=edges_per_partition),
                     output_subdir="p_dist")
    assert single["components_path"] == "single" and dist["components_path"] == "distributed"
    # band copies are removed before the components: fewer unique than candidate edges
    assert 0 < single["unique_edges"] < single["candidate_edges"]
    parts = dist["distributed_components"]["partitions"]
    assert parts == -(-2 * dist["candidate_edges"] // edges_per_partition) > 2  # more partitions than CPUs
    assert dist["distributed_components"]["input_edges"] == dist["candidate_edges"]
    assert "distributed_components" not in single
    _same_results(d, "p_single", "p_dist", single, dist)
    return single, dist


def test_single_and_distributed_components_give_the_same_bytes(ray_local, ex_dir):
    single, _ = _paths_agree(ex_dir, edges_per_partition=8)
    assert single["documents_out"] == len(ex_dir["docs"]) - 4  # as test_dedup's end-to-end test
    # auto: distributed above distributed_min_edges, single at or below
    auto = run_dedup(ex_dir["out"], DedupConfig(distributed_min_edges=1), output_subdir="p_auto")
    assert auto["components_path"] == "distributed"
    _same_results(ex_dir, "p_single", "p_auto", single, auto)


@needs_data
def test_single_and_distributed_components_on_shared_crawls(ray_local, doc_dir):
    single, dist = _paths_agree(doc_dir, edges_per_partition=64)
    assert single["exact"]["duplicate_groups"] >= 9


def test_single_path_edge_limit_points_to_distributed(ray_local, ex_dir):
    with pytest.raises(UserError, match="max_edges_single_worker.*--components distributed"):
        run_dedup(ex_dir["out"], DedupConfig(components="single", max_edges_single_worker=1), output_subdir="never")
    # auto never refuses: above the single-worker limit it goes distributed (distributed_min_edges: default)
    stats = run_dedup(ex_dir["out"], DedupConfig(max_edges_single_worker=1), output_subdir="p_limit")
    assert stats["components_path"] == "distributed" and stats["candidate_edges"] < DedupConfig().distributed_min_edges


def _check_removed(d: dict, sub: str, stats: dict) -> None:
    out, docs = d["out"], d["docs"]
    kept = read_outputs(out, sub)
    removed = read_outputs(out, "removed/dedup")
    by_id = {doc["id"]: (i, doc) for i, doc in enumerate(docs)}
    assert set(removed) == set(by_id) - set(kept)
    n_rows = sum(pq.read_metadata(p).num_rows for p in (out / "removed" / "dedup").glob("*.parquet"))
    assert n_rows == len(removed) == stats["documents_removed"] > 0  # each removed document once
    for name in d["files"]:
        in_names = pq.read_schema(out / "documents" / f"{name}.parquet").names
        assert pq.read_schema(out / "removed" / "dedup" / f"{name}.parquet").names == \
            in_names + ["dedup_cluster", "kept_id", "reason"]
    n_exact = 0
    for doc_id, row in removed.items():
        gidx, doc = by_id[doc_id]
        assert row["text"] == doc["text"] and row["url"] == doc["url"]
        winner = kept[row["kept_id"]]  # the kept document is in the output, in the same component
        assert winner["dedup_cluster"] == row["dedup_cluster"] >= 0 and row["dedup_cluster"] <= gidx
        same_text = mh.normalize_text(doc["text"]) == mh.normalize_text(winner["text"])
        assert row["reason"] == ("dedup_exact" if same_text else "dedup_near")
        n_exact += same_text
    assert n_exact == stats["exact"]["documents_removed"]
    assert removed["synthetic-near-duplicate"]["reason"] == "dedup_near"
    assert removed["synthetic-near-duplicate"]["kept_id"] == d["source_id"]


def test_removed_documents_with_either_path(ray_local, ex_dir):
    out = ex_dir["out"]
    for components in ("single", "distributed"):
        stats = run_dedup(out, DedupConfig(components=components, write_removed=True), output_subdir="r_out")
        _check_removed(ex_dir, "r_out", stats)
    # write_removed off: nothing there (an earlier run's files are removed with the rest of its outputs)
    stats = run_dedup(out, DedupConfig(), output_subdir="r_out")
    assert not list((out / "removed" / "dedup").glob("*"))
    assert stats["documents_removed"] == 4


def test_cli_components_and_removed(ray_local, ex_dir):
    from webmill.curate.cli.dedup import dedup_cmd

    out = ex_dir["out"]
    app = typer.Typer()
    app.command()(dedup_cmd)
    res = CliRunner().invoke(app, [str(out), "--components", "distributed", "--edges-per-partition", "8",
                                   "--write-removed", "--char-shingles", "none", "--output-subdir", "cli_d"])
    assert res.exit_code == 0, res.output
    assert "distributed components" in res.output
    stats = __import__("json").loads((out / "stats" / "dedup.json").read_text())
    assert stats["config"]["char_shingles"] == {} and stats["config"]["write_removed"] is True
    _check_removed(ex_dir, "cli_d", stats)
    res = CliRunner().invoke(app, [str(out), "--components", "gpu"])
    assert isinstance(res.exception, UserError) and "components" in str(res.exception)


def test_removed_documents_name_the_earlier_runs_document(ray_local, ex_dir, tmp_path):
    """--against: a document removed because an earlier run kept its duplicate names that run's
    document as kept_id (b_wet = run A: one cdc.gov 404 page and the near duplicate;
    c_wet = run B: two more copies of that page and the near duplicate's source)."""
    import shutil

    for run, name in (("a", "b_wet"), ("b", "c_wet")):
        (tmp_path / run / "documents").mkdir(parents=True)
        shutil.copy(ex_dir["out"] / "documents" / f"{name}.parquet", tmp_path / run / "documents")
    run_dedup(tmp_path / "a", DedupConfig())
    kept_a = read_outputs(tmp_path / "a")
    for components in ("single", "distributed"):
        stats = run_dedup(tmp_path / "b", DedupConfig(components=components, write_removed=True),
                          against=[tmp_path / "a"])
        assert stats["components_path"] == components
        removed = read_outputs(tmp_path / "b", "removed/dedup")
        cdc_a = [i for i, r in kept_a.items() if "cdc.gov/tb/?404" in r["url"]]
        assert len(cdc_a) == 1 and "synthetic-near-duplicate" in kept_a
        cdc_b = {i: r for i, r in removed.items() if "cdc.gov/tb/?404" in r["url"]}
        assert len(cdc_b) == 2 and {r["kept_id"] for r in cdc_b.values()} == set(cdc_a)
        assert {r["reason"] for r in cdc_b.values()} == {"dedup_exact"}
        assert len({r["dedup_cluster"] for r in cdc_b.values()}) == 1  # one component, a node of this run
        src = removed[ex_dir["source_id"]]  # quality 0.5 does not beat an earlier run's document
        assert src["kept_id"] == "synthetic-near-duplicate" and src["reason"] == "dedup_near"
        assert set(removed) == set(cdc_b) | {ex_dir["source_id"]}
        assert stats["against"]["documents_removed"] == stats["documents_removed"] == 3
        assert stats["exact"]["documents_removed"] == 2 and stats["minhash"]["documents_removed"] == 1


def test_distributed_keep_order_equals_the_arrow_sort(tmp_path):
    """member_rows + keep_partition (numpy lexsort) pick the document choose_kept's Arrow sort
    picks, on the ties that matter: equal quality, NaN and missing quality, equal and non-ASCII
    ids, and an earlier run's document (node >= n_docs) that always wins."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from webmill.curate.dedup.keep import keep_partition, member_rows
    from webmill.storage import as_storage

    rng = np.random.default_rng(7)
    n = 400
    ids = rng.choice(["a", "b", "é", "z", "ab", "Ä", "日本", "b"], size=n).tolist()
    q = rng.choice(np.array([0.5, 0.9, np.nan, None], dtype=object), p=[0.15, 0.05, 0.4, 0.4], size=n).tolist()
    pq.write_table(pa.table({"id": ids, "text": [""] * n, "quality_score": pa.array(q, pa.float64())}),
                   tmp_path / "d.parquet")
    node = np.arange(n, dtype=np.int64)
    group = np.sort(rng.integers(0, 60, size=n))
    first = np.r_[True, group[1:] != group[:-1]]
    comp = node[np.flatnonzero(first)][np.cumsum(first) - 1]  # smallest node of each group, as components give
    old = np.array([n + 5], np.int64)  # an earlier run's document in the first component
    labels = {"node": node, "comp": comp}
    none = {"node": np.empty(0, np.int64), "rep": np.empty(0, np.int64)}
    st = as_storage(tmp_path)
    rows = member_rows(st, "d.parquet", 0, labels, none, True)
    old_rows = member_rows(st, None, n, {"node": old, "comp": comp[:1]}, none, True)
    rows = {k: np.concatenate([rows[k], old_rows[k]]) for k in rows}
    decisions, stats = keep_partition(rows, n, None, need_ids=False)

    table = pa.table({"comp": np.r_[comp, comp[:1]], "later": np.r_[np.ones(n, np.int8), np.zeros(1, np.int8)],
                      "q": pa.array(q + [None], pa.float64()), "id": ids + [None], "node": np.r_[node, old]})
    keys = [("comp", "ascending"), ("later", "ascending"), ("q", "descending"), ("id", "ascending"), ("node", "ascending")]
    order = pc.sort_indices(table, sort_keys=[(k, o, "at_end") for k, o in keys]).to_numpy()
    c = table.column("comp").to_numpy()[order]
    best = set(table.column("node").to_numpy()[order][np.r_[True, c[1:] != c[:-1]]].tolist())
    kept_here = set(decisions["node"][~decisions["remove"]].tolist()) | {int(old[0])}
    assert kept_here == best
    assert stats["removed"] == n - len(best - {int(old[0])})
    assert stats["removed_by_earlier"] == int((comp == comp[0]).sum())
