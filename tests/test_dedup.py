"""The dedup Ray job: config checks, bucket scan, components, and end to end on real documents."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from dedup_fixtures import EXAMPLES_WARC, needs_data, read_outputs
from jaccard_gen import load_wet_documents, write_documents
from typer.testing import CliRunner

from webmill.curate import minhash as mh
from webmill.curate.dedup import (
    DedupConfig,
    bucket_edges,
    connected_components,
    read_keep_columns,
    run_dedup,
    write_deduped_file,
)
from webmill.errors import UserError
from webmill.storage import TEMP_TAG, as_storage



# ---------------------------------------------------------------------------------------------- no Ray


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"bands": 13}, "bands\\*rows"),
        ({"num_perm": 0}, "num_perm"),
        ({"exact": False, "minhash": False}, "enable at least one"),
        ({"hash_func": "md5"}, "hash_func"),
        ({"scheme": "affine64"}, "scheme"),
        ({"keep": "longest"}, "keep"),
        ({"threshold": 1.2}, "threshold"),
        ({"batch_docs": 0}, "batch_docs"),
    ],
)
def test_config_validation_names_the_key(kwargs, key):
    with pytest.raises(UserError, match=key):
        DedupConfig(**kwargs).validate()


def test_threshold_derives_bands_and_rows():
    cfg = DedupConfig(threshold=0.8, bands=1, rows=1)  # bands/rows ignored when threshold is set
    cfg.validate()
    assert cfg.resolved_bands_rows() == mh.optimal_bands_rows(0.8, 112)
    assert DedupConfig().resolved_bands_rows() == (14, 8)


def test_bucket_edges_star_per_bucket():
    band = np.array([0, 0, 0, 1, 1, -1, -1, 0, 2], dtype=np.int16)
    key = np.array([5, 5, 5, 5, 7, 9, 9, 6, 5], dtype=np.uint64)
    doc = np.array([30, 10, 20, 10, 20, 40, 41, 10, 10], dtype=np.int64)
    e = bucket_edges(band, key, doc)
    got = sorted(zip(e["src"].tolist(), e["dst"].tolist(), e["exact"].tolist()))
    # bucket (0,5) = {10,20,30}: 10->20, 10->30; (-1,9) = {40,41} exact; singletons give nothing
    assert got == [(10, 20, False), (10, 30, False), (40, 41, True)]
    e = bucket_edges(band[:1], key[:1], doc[:1])
    assert len(e["src"]) == 0


def test_connected_components_smallest_member():
    src = np.array([5, 9, 100, 7], dtype=np.int64)
    dst = np.array([9, 2, 101, 100], dtype=np.int64)
    nodes, comp = connected_components(src, dst)
    assert nodes.tolist() == [2, 5, 7, 9, 100, 101]
    assert comp.tolist() == [2, 2, 7, 2, 7, 7]
    nodes, comp = connected_components(np.empty(0, np.int64), np.empty(0, np.int64))
    assert len(nodes) == len(comp) == 0


def test_empty_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run_dedup(tmp_path, DedupConfig())
    (tmp_path / "documents").mkdir()
    with pytest.raises(UserError, match="no \\*.parquet"):
        run_dedup(tmp_path, DedupConfig())


def test_input_without_text_column_is_a_user_error(tmp_path):
    import pyarrow as pa

    (tmp_path / "documents").mkdir()
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), tmp_path / "documents" / "bad.parquet")
    with pytest.raises(UserError, match="bad.parquet lacks column"):
        run_dedup(tmp_path, DedupConfig())
    (tmp_path / "documents" / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="cannot read .*bad.parquet"):
        run_dedup(tmp_path, DedupConfig())


def test_missing_input_on_an_fsspec_url_names_the_url():
    with pytest.raises(UserError, match="memory://dd-missing/out/documents does not exist"):
        run_dedup("memory://dd-missing/out", DedupConfig())


def test_write_deduped_file_same_bytes_on_memory_fs_and_disk(tmp_path):
    """Stage 5 (and the keep columns of stage 4) in this process: an fsspec filesystem gives the
    bytes a local directory gives."""
    import fsspec

    docs = load_wet_documents(str(EXAMPLES_WARC / "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"))
    write_documents(docs, tmp_path / "documents" / "w.parquet",
                    extra={"quality_score": np.linspace(0, 1, len(docs)).astype(np.float32)})
    fsspec.filesystem("memory").pipe_file("/dd-write/documents/w.parquet",
                                          (tmp_path / "documents" / "w.parquet").read_bytes())
    rows = np.array([19, 20, 21], dtype=np.int64)  # the three identical cdc.gov 404 pages
    cluster = np.full(3, 19, dtype=np.int64)
    remove = np.array([True, True, False])
    counts = {}
    for root in (tmp_path, "memory://dd-write"):
        st = as_storage(root)
        counts[str(root)] = write_deduped_file(st, "documents/w.parquet", "deduped/w.parquet", rows, cluster,
                                               remove, batch_docs=7)
        keep_cols = read_keep_columns(st, "documents/w.parquet", rows)
        assert keep_cols.column("id").to_pylist() == [docs[i]["id"] for i in rows]
        assert keep_cols.column("q").to_pylist() == pytest.approx([19 / 24, 20 / 24, 21 / 24], abs=1e-6)
        assert st.list("deduped") == ["w.parquet"]  # no temp file left behind
    local = (tmp_path / "deduped" / "w.parquet").read_bytes()
    assert fsspec.filesystem("memory").cat_file("/dd-write/deduped/w.parquet") == local
    assert counts[str(tmp_path)] == counts["memory://dd-write"] == {"in": 25, "out": 23}
    table = pq.read_table(tmp_path / "deduped" / "w.parquet")
    assert table.column_names == pq.read_schema(tmp_path / "documents" / "w.parquet").names + ["dedup_cluster"]
    assert table.column("dedup_cluster").to_pylist() == [-1] * 19 + [19] + [-1] * 3
    assert pq.ParquetFile(tmp_path / "deduped" / "w.parquet").metadata.num_row_groups == 4  # one per batch of 7


# ---------------------------------------------------------------------------------------------- Ray


def _check_end_to_end(d: dict, stats: dict) -> tuple[dict, list]:
    """The promises of run_dedup on fixture ``d`` after ``run_dedup(d["out"], DedupConfig())``;
    returns the kept rows by id and the exact-duplicate groups computed here independently."""
    out, docs = d["out"], d["docs"]
    kept = read_outputs(out)

    # every input file has an output with the input columns (in order) + dedup_cluster int64
    for name in d["files"]:
        in_schema = pq.read_schema(out / "documents" / f"{name}.parquet")
        out_schema = pq.read_schema(out / "deduped" / f"{name}.parquet")
        assert out_schema.names == in_schema.names + ["dedup_cluster"]
        assert str(out_schema.field("dedup_cluster").type) == "int64"

    # exact duplicates: groups by normalized text computed here independently
    groups = defaultdict(list)
    for gidx, doc in enumerate(docs):
        groups[mh.normalize_text(doc["text"])].append((gidx, doc))
    dup_groups = [g for g in groups.values() if len(g) > 1]
    for g in dup_groups:
        survivors = [doc["id"] for _, doc in g if doc["id"] in kept]
        assert len(survivors) == 1, [doc["url"] for _, doc in g]
        assert kept[survivors[0]]["dedup_cluster"] == min(i for i, _ in g)
    assert stats["exact"]["documents_removed"] == sum(len(g) - 1 for g in dup_groups)
    assert stats["exact"]["duplicate_groups"] == len(dup_groups)

    # '/' and '/index.html' of fiscalitefrg.com: equal quality -> the smaller id is kept
    fr = [doc for doc in docs if doc["url"] in ("http://www.fiscalitefrg.com/", "http://www.fiscalitefrg.com/index.html")]
    assert len(fr) == 2 and [doc["id"] for doc in fr if doc["id"] in kept] == [min(doc["id"] for doc in fr)]
    # quality beats id
    assert d["cdc_best"] in kept

    # the synthetic near duplicate (J ~ 0.9) is removed; its source (quality 0.5 > none) is kept
    assert 0.85 < d["near_j"] < 0.95
    assert "synthetic-near-duplicate" not in kept and d["source_id"] in kept
    near_gidx = next(i for i, doc in enumerate(docs) if doc["id"] == "synthetic-near-duplicate")
    assert kept[d["source_id"]]["dedup_cluster"] == near_gidx  # the near duplicate's file comes first
    assert stats["minhash"]["documents_removed"] >= 1 and stats["minhash"]["near_duplicate_components"] >= 1
    singles = [doc["id"] for g in groups.values() if len(g) == 1 for _, doc in g if doc["id"] != d["source_id"]]
    assert all(kept[i]["dedup_cluster"] == -1 for i in singles if i in kept)

    # stats
    assert stats["documents_in"] == len(docs) and stats["documents_out"] == len(kept)
    assert stats["documents_removed"] == stats["exact"]["documents_removed"] + stats["minhash"]["documents_removed"]
    assert stats["minhash"]["s_curve"]["0.8"] == pytest.approx(0.923548, abs=1e-5)
    assert set(stats["seconds"]) >= {"signatures", "shuffle_buckets", "components", "keep", "write", "total"}
    assert stats["peak_rss_driver_bytes"] > 0
    assert json.loads((out / "stats" / "dedup.json").read_text())["documents_out"] == len(kept)

    # rerun: byte-identical files; a stale output and a killed writer's temp file are removed
    before = {p.name: p.read_bytes() for p in (out / "deduped").glob("*.parquet")}
    (out / "deduped" / "zz_stale.parquet").write_bytes(b"from an earlier run")
    (out / "deduped" / f".a.parquet{TEMP_TAG}1-0").write_bytes(b"partial")
    (out / "deduped" / "b.parquet.tmp-12").write_bytes(b"partial, older name")
    assert run_dedup(out, DedupConfig())["stale_outputs_removed"] == ["zz_stale.parquet"]
    after = {p.name: p.read_bytes() for p in (out / "deduped").glob("*.parquet")}
    assert before == after
    assert sorted(p.name for p in (out / "deduped").iterdir()) == sorted(before)
    return kept, dup_groups


def test_dedup_end_to_end_and_deterministic(ray_local, ex_dir):
    stats = run_dedup(ex_dir["out"], DedupConfig())
    assert stats["components_path"] == "single"  # auto: few edges
    kept, dup_groups = _check_end_to_end(ex_dir, stats)
    assert len(dup_groups) == 2  # fiscalitefrg '/' = '/index.html'; three cdc.gov 404 pages across b and c
    assert stats["documents_out"] == len(ex_dir["docs"]) - 1 - 2 - 1


@needs_data
def test_dedup_end_to_end_on_shared_crawls(ray_local, doc_dir):
    stats = run_dedup(doc_dir["out"], DedupConfig())
    kept, dup_groups = _check_end_to_end(doc_dir, stats)
    assert len(dup_groups) >= 9  # 7 gov.uk groups (within and across crawls A/B), fiscalitefrg, cdc.gov
    # cross-file: crawl B's copies of crawl A pages are gone (same quality (none): smaller id = crawl A)
    b_kept = pq.read_table(doc_dir["out"] / "deduped" / "b_ukwa.parquet").column("url").to_pylist()
    assert "http://data.gov.uk/about" not in b_kept and "http://data.gov.uk/faq" not in b_kept


def test_out_as_a_file_url_gives_the_local_bytes(ray_local, ex_dir):
    """OUT given as an fsspec URL (file://, which the Ray workers can reach, unlike memory://)."""
    out = ex_dir["out"]
    local = run_dedup(out, DedupConfig(), output_subdir="via_path")
    remote = run_dedup(as_storage(f"file://{out}"), DedupConfig(), output_subdir="via_url")
    names = sorted(p.name for p in (out / "via_path").iterdir())
    assert names == [f"{n}.parquet" for n in ex_dir["files"]]
    assert sorted(p.name for p in (out / "via_url").iterdir()) == names
    for name in names:
        assert (out / "via_url" / name).read_bytes() == (out / "via_path" / name).read_bytes(), name
    assert remote["per_file"] == local["per_file"] and remote["documents_out"] == local["documents_out"]


def test_exact_only_keeps_near_duplicates(ray_local, ex_dir):
    out = ex_dir["out"]
    stats = run_dedup(out, DedupConfig(minhash=False), output_subdir="exact_only")
    kept = read_outputs(out, "exact_only")
    assert "synthetic-near-duplicate" in kept
    assert stats["minhash"]["documents_removed"] == 0 and stats["exact"]["documents_removed"] == 3


def test_edge_limit_and_cli(ray_local, ex_dir):
    from webmill.curate.cli.dedup import dedup_cmd

    out = ex_dir["out"]
    with pytest.raises(UserError, match="max_edges_single_worker"):
        run_dedup(out, DedupConfig(components="single", max_edges_single_worker=1), output_subdir="never")
    app = typer.Typer()
    app.command()(dedup_cmd)
    res = CliRunner().invoke(app, [str(out), "--bands", "13"])
    assert isinstance(res.exception, UserError) and "bands*rows" in str(res.exception)
    res = CliRunner().invoke(app, [f"file://{out}", "--no-exact", "--threshold", "0.8", "--output-subdir", "cli"])
    assert res.exit_code == 0, res.output
    assert "documents in" in res.output and f"stats: {out}/stats/dedup.json" in res.output
    assert len(list((out / "cli").glob("*.parquet"))) == 3


@pytest.mark.parametrize("components", ["single", "distributed"])
def test_documents_without_words_and_an_empty_file(ray_local, tmp_path, components):
    """No candidate edge at all (MinHash alone on documents without words), then one exact
    group, on either components path (the distributed one with no edge block at all)."""
    base = {"id": "", "url": "", "domain": "", "crawl_date": None, "source_file": "s", "record_offset": 0,
            "text": "", "language": "", "language_score": 0.0}
    docs = [dict(base, id="a", text=""), dict(base, id="b", text=None), dict(base, id="c", text="... !!")]
    write_documents(docs, tmp_path / "documents" / "a.parquet")
    write_documents([], tmp_path / "documents" / "b.parquet")
    # MinHash alone: no word, no shingle, no candidate
    stats = run_dedup(tmp_path, DedupConfig(exact=False, components=components))
    assert stats["documents_out"] == 3 and stats["candidate_edges"] == stats["unique_edges"] == 0
    # exact: the three normalize to "" and are one group; the smallest id is kept
    stats = run_dedup(tmp_path, DedupConfig(components=components, write_removed=True))
    assert stats["components_path"] == components
    out = pq.read_table(tmp_path / "deduped" / "a.parquet").to_pydict()
    assert out["id"] == ["a"] and out["dedup_cluster"] == [0] and stats["exact"]["documents_removed"] == 2
    assert pq.read_table(tmp_path / "deduped" / "b.parquet").num_rows == 0
    removed = pq.read_table(tmp_path / "removed" / "dedup" / "a.parquet").to_pydict()
    assert removed["id"] == ["b", "c"] and removed["kept_id"] == ["a", "a"] and removed["dedup_cluster"] == [0, 0]
    assert removed["reason"] == ["dedup_exact"] * 2
    assert pq.read_table(tmp_path / "removed" / "dedup" / "b.parquet").num_rows == 0
