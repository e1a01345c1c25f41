"""Incremental dedup (issue 18, item 4): the index of kept band keys (webmill/curate/dedup/index.py)
and ``run_dedup(..., against=[OLD_OUT])`` giving the result of deduplicating the union once."""

from __future__ import annotations

import dataclasses
import random
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jaccard_gen import jaccard_pair, load_html_documents, load_wet_documents, write_documents

from webmill.curate import minhash as mh
from webmill.curate.dedup import DedupConfig
from webmill.curate.dedup import index as dindex
from webmill.curate.dedup.graph import bucket_edges, connected_components
from webmill.curate.dedup.signatures import band_rows_for_file
from webmill.errors import UserError
from webmill.storage import as_storage

WET = "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"  # bundled in examples/warc


@pytest.fixture(scope="module")
def wet_docs():
    return load_wet_documents(WET)


@pytest.fixture(params=["local", "memory"])
def storage(request, tmp_path):
    if request.param == "local":
        return as_storage(tmp_path / "out")
    return as_storage(f"memory://dd-incr-{uuid.uuid4().hex[:8]}/out")


def _put_documents(storage, rel: str, docs: list[dict], tmp_path: Path, extra: dict | None = None) -> None:
    """Write real documents as ``OUT/<rel>`` through the storage layer."""
    local = write_documents(docs, tmp_path / f"src-{uuid.uuid4().hex[:6]}.parquet", extra=extra)
    storage.write_bytes(rel, local.read_bytes())


def _real_band_rows(storage, rel: str, cfg: DedupConfig) -> dict[str, np.ndarray]:
    """Stage 1's band rows of a real document file (row_offset 0, so doc = row in the file)."""
    parts = list(band_rows_for_file(storage, rel, 0, dataclasses.replace(cfg, write_index=False), 7))
    return {k: np.concatenate([p[k] for p in parts]) for k in ("band", "key", "doc")}


def _stage(storage, name: str, rows: dict, chunk: int = 500) -> None:
    with dindex.KeyStager(storage, name) as st:
        for i in range(0, len(rows["doc"]), chunk):
            st.add(rows["band"][i:i + chunk], rows["key"][i:i + chunk], rows["doc"][i:i + chunk])


# ---------------------------------------------------------------------------------------------- no Ray


def test_stage_publish_maps_kept_ordinals(storage, tmp_path, wet_docs, monkeypatch):
    monkeypatch.setattr(dindex, "INDEX_ROW_GROUP", 100)  # several flushes and row groups
    cfg = DedupConfig()
    _put_documents(storage, "documents/w.parquet", wet_docs, tmp_path)
    rows = _real_band_rows(storage, "documents/w.parquet", cfg)
    assert len(rows["doc"]) == 15 * len(wet_docs)  # 14 bands + exact per document (all have words)
    _stage(storage, "w.parquet", rows)
    assert storage.isfile("dedup_index/.staging/w.parquet")
    assert storage.parquet_file("dedup_index/.staging/w.parquet").metadata.num_row_groups >= 2

    removed = np.array([20, 3, 3, 24], np.int64)  # any order, duplicates allowed
    n = dindex.publish_file_index(storage, "w.parquet", removed, kept_offset=100)
    assert not storage.exists("dedup_index/.staging/w.parquet")
    table = storage.read_parquet("dedup_index/w.parquet")
    assert table.schema == dindex.INDEX_SCHEMA and n == table.num_rows == 15 * (len(wet_docs) - 3)
    # kept ordinal = row among the kept documents, after kept_offset
    kept_rows = [r for r in range(len(wet_docs)) if r not in {3, 20, 24}]
    ordinal = {row: 100 + i for i, row in enumerate(kept_rows)}
    keep = np.isin(rows["doc"], kept_rows)
    want = sorted(zip(rows["band"][keep].tolist(), rows["key"][keep].tolist(),
                      [ordinal[r] for r in rows["doc"][keep].tolist()]))
    got = list(zip(*(table.column(c).to_pylist() for c in ("band", "key", "doc"))))
    assert got == want  # same rows, sorted by (band, key, doc)
    # rerun after the staging file is gone: the published rows count, nothing rewritten
    before = storage.read_bytes("dedup_index/w.parquet")
    assert dindex.publish_file_index(storage, "w.parquet", removed, kept_offset=100) == n
    # a full rerun (stage + publish) gives the same bytes
    _stage(storage, "w.parquet", rows, chunk=77)
    assert dindex.publish_file_index(storage, "w.parquet", removed, kept_offset=100) == n
    assert storage.read_bytes("dedup_index/w.parquet") == before


def test_publish_without_staged_keys_is_a_user_error(storage):
    with pytest.raises(UserError, match="no staged keys for x.parquet.*rerun `curate dedup"):
        dindex.publish_file_index(storage, "x.parquet", np.empty(0, np.int64), 0)


def test_a_failed_stage_publishes_nothing_and_invalidates_the_meta(storage):
    storage.write_json("dedup_index/meta.json", {"format": dindex.INDEX_FORMAT})
    with pytest.raises(KeyError):
        with dindex.KeyStager(storage, "a.parquet") as st:
            st.add(np.array([0]), np.array([1], np.uint64), np.array([0]))
            raise KeyError("stage 1 failed")
    assert not storage.exists("dedup_index/meta.json")  # the index being rewritten is incomplete
    assert not storage.exists("dedup_index/.staging/a.parquet")
    assert storage.list("dedup_index", recursive=True) == []
    with pytest.raises(ValueError, match="lengths differ"):
        with dindex.KeyStager(storage, "b.parquet") as st:
            st.add(np.array([0, 1]), np.array([1], np.uint64), np.array([0]))
    assert storage.list("dedup_index", recursive=True) == []


def test_meta_records_offsets_and_sweeps(storage):
    for name, n_docs in (("a.parquet", 3), ("b.parquet", 0), ("c.parquet", 2)):
        _stage(storage, name, {"band": np.zeros(n_docs, np.int16), "key": np.arange(n_docs, dtype=np.uint64),
                               "doc": np.arange(n_docs, dtype=np.int64)})
    _stage(storage, "gone.parquet", {"band": np.zeros(1, np.int16), "key": np.ones(1, np.uint64),
                                     "doc": np.zeros(1, np.int64)})  # an input removed since
    storage.write_bytes("dedup_index/old.parquet", b"index of an earlier run's input")
    cfg = DedupConfig()
    with pytest.raises(UserError, match="a.parquet was not written"):
        dindex.write_index_meta(storage, cfg, ["a.parquet"], [3])
    assert dindex.publish_file_index(storage, "a.parquet", np.array([1]), 0) == 2
    assert dindex.publish_file_index(storage, "b.parquet", np.empty(0, np.int64), 2) == 0
    assert dindex.publish_file_index(storage, "c.parquet", np.empty(0, np.int64), 2) == 2
    assert storage.read_parquet("dedup_index/c.parquet").column("doc").to_pylist() == [2, 3]
    with pytest.raises(ValueError):
        dindex.write_index_meta(storage, cfg, ["a.parquet", "b.parquet", "c.parquet"], [2, 0])
    dindex.write_index_meta(storage, cfg, ["a.parquet", "b.parquet", "c.parquet"], [2, 0, 2])
    meta = storage.read_json("dedup_index/meta.json")
    assert meta["files"] == [{"name": "a.parquet", "kept": 2, "offset": 0}, {"name": "b.parquet", "kept": 0, "offset": 2},
                             {"name": "c.parquet", "kept": 2, "offset": 2}]
    assert meta["total_kept"] == 4 and meta["deduped_subdir"] == "deduped"
    assert meta["signature"] == dindex.signature_params(cfg) and meta["signature"]["bands"] == 14
    assert storage.list("dedup_index", recursive=True) == ["a.parquet", "b.parquet", "c.parquet", "meta.json"]


def _index(storage, cfg: DedupConfig, kept: list[int], ids: list[list[str]] | None = None, sub: str = "deduped"):
    """A complete index (one key per kept document) and, with ``ids``, its deduped files."""
    names = [f"f{i}.parquet" for i in range(len(kept))]
    offset = 0
    for i, (name, k) in enumerate(zip(names, kept)):
        _stage(storage, name, {"band": np.zeros(k, np.int16), "key": np.arange(offset, offset + k, dtype=np.uint64),
                               "doc": np.arange(k, dtype=np.int64)})
        dindex.publish_file_index(storage, name, np.empty(0, np.int64), offset)
        if ids is not None:
            storage.write_parquet(f"{sub}/{name}", pa.table({"id": ids[i], "text": ["t"] * k}), row_group_size=3)
        offset += k
    dindex.write_index_meta(storage, cfg, names, kept, output_subdir=sub)


def test_open_against_lays_out_node_ids(storage, tmp_path):
    cfg = DedupConfig()
    a, b = storage.sub("a"), storage.sub("b")
    _index(a, cfg, [3, 0, 2])
    _index(b, cfg, [4])
    ag = dindex.open_against([a.uri(), b], cfg, base=10, out=storage.sub("new"))
    assert ag.bases == [10, 15] and ag.total == 9 and ag.roots == [a.uri(), b.uri()]
    assert [(it["root"], it["rel"], it["base"]) for it in ag.items] == [
        (a.uri(), "dedup_index/f0.parquet", 10), (a.uri(), "dedup_index/f2.parquet", 10),
        (b.uri(), "dedup_index/f0.parquet", 15)]  # the empty file is left out
    assert dindex.open_against([], cfg, base=10).total == 0
    import pickle

    assert pickle.loads(pickle.dumps(ag)) == ag


@pytest.mark.parametrize("change, key", [
    ({"num_perm": 128, "bands": 16}, "num_perm"),
    ({"threshold": 0.8}, "bands"),  # bands/rows are compared resolved
    ({"shingle_size": 4}, "shingle_size"),
    ({"seed": 2}, "seed"),
    ({"hash_func": "sha1"}, "hash_func"),
    ({"scheme": "legacy"}, "scheme"),
    ({"exact": False}, "exact"),
    ({"char_shingles": {"zh": 3}}, "char_shingles"),
])
def test_open_against_refuses_other_signature_settings(storage, change, key):
    old = storage.sub("old")
    _index(old, DedupConfig(), [2])
    with pytest.raises(UserError, match=f"dedup --against {old.uri()}: its index was built with {key}=.*this run has {key}="):
        dindex.open_against([old], DedupConfig(**change), base=0)
    # settings that do not change the band keys may differ
    dindex.open_against([old], DedupConfig(keep="id", batch_docs=7, shuffle="hash", components="single"), base=0)


def test_open_against_refuses_a_missing_or_foreign_index(storage):
    cfg = DedupConfig()
    old = storage.sub("old")
    with pytest.raises(UserError, match=f"{old.uri('dedup_index/meta.json')} not found.*run `curate dedup {old.uri()}`"):
        dindex.open_against([old], cfg, base=0)
    _index(old, cfg, [2, 1])
    with pytest.raises(UserError, match="this is the run's own OUT"):
        dindex.open_against([old.uri()], cfg, base=0, out=old)
    with pytest.raises(UserError, match="given twice"):
        dindex.open_against([old, old.uri()], cfg, base=0)
    meta = old.read_json("dedup_index/meta.json")
    old.write_json("dedup_index/meta.json", dict(meta, version=99))
    with pytest.raises(UserError, match="version 99.*rebuild"):
        dindex.open_against([old], cfg, base=0)
    old.write_json("dedup_index/meta.json", meta)
    old.remove("dedup_index/f1.parquet")
    with pytest.raises(UserError, match="f1.parquet is missing"):
        dindex.open_against([old], cfg, base=0)


def test_against_rows_and_ids(storage, tmp_path, wet_docs, monkeypatch):
    """Earlier-run rows come back with stage 1's schema and node ids; ids resolve from deduped/."""
    monkeypatch.setattr(dindex, "INDEX_ROW_GROUP", 16)
    cfg = DedupConfig()
    old = storage.sub("old")
    _put_documents(old, "documents/w.parquet", wet_docs, tmp_path)
    rows = _real_band_rows(old, "documents/w.parquet", cfg)
    _stage(old, "w.parquet", rows)
    dindex.publish_file_index(old, "w.parquet", np.array([0, 5]), 0)
    kept_docs = [d for i, d in enumerate(wet_docs) if i not in (0, 5)]
    old.write_parquet("deduped/w.parquet", pa.table({"id": [d["id"] for d in kept_docs]}), row_group_size=4)
    dindex.write_index_meta(old, cfg, ["w.parquet"], [len(kept_docs)])
    other = storage.sub("other")
    ids2 = [[f"o{i}" for i in range(5)], [f"p{i}" for i in range(7)]]
    _index(other, cfg, [5, 7], ids2, sub="kept")

    ag = dindex.open_against([old, other], cfg, base=1000)
    assert ag.bases == [1000, 1000 + len(kept_docs)] and ag.total == len(kept_docs) + 12
    batch = {k: np.array([it[k] for it in ag.items], dtype=object) for k in ("root", "rel", "base", "options")}
    out = list(dindex.against_band_rows_udf(batch, num_partitions=7))
    assert len(out) > 2  # one dict per row group
    got = {k: np.concatenate([o[k] for o in out]) for k in ("part", "band", "key", "doc")}
    assert {k: v.dtype for k, v in got.items()} == {"part": np.int32, "band": np.int16, "key": np.uint64, "doc": np.int64}
    assert (got["part"] == (got["key"] % np.uint64(7)).astype(np.int32)).all()
    first = got["doc"] < ag.bases[1]
    assert int(first.sum()) == 15 * len(kept_docs) and got["doc"][first].min() == 1000
    assert sorted(got["doc"][~first].tolist()) == list(range(ag.bases[1], ag.bases[1] + 12))
    # the band keys of a kept document come back under its node
    row7 = wet_docs.index(kept_docs[5])
    assert sorted(got["key"][got["doc"] == 1005].tolist()) == sorted(rows["key"][rows["doc"] == row7].tolist())

    nodes = np.array([ag.bases[1] + 11, 1000, ag.bases[1] + 4, 1000 + len(kept_docs) - 1, ag.bases[1] + 5, 1005])
    assert dindex.resolve_against_ids(ag, nodes) == ["p6", kept_docs[0]["id"], "o4", kept_docs[-1]["id"], "p0",
                                                     kept_docs[5]["id"]]
    assert dindex.resolve_against_ids(ag, np.empty(0, np.int64)) == []
    with pytest.raises(ValueError, match="must lie in"):
        dindex.resolve_against_ids(ag, np.array([999]))
    other.write_parquet("kept/f1.parquet", pa.table({"id": ["p0"]}))  # that OUT changed since
    with pytest.raises(UserError, match="f1.parquet has 1 rows, its dedup index says 7"):
        dindex.resolve_against_ids(ag, np.array([ag.bases[1] + 5]))


# ---------------------------------------------------------------------------------------------- Ray


def _copy(doc: dict, tag: str, text: str | None = None) -> dict:
    return dict(doc, id=f"planted-{tag}", url=f"{doc['url']}#{tag}", text=doc["text"] if text is None else text)


def _near(doc: dict, tag: str, seed: int) -> dict:
    words, j = jaccard_pair(mh.normalize_words(doc["text"]), 0.9, random.Random(seed))
    assert 0.85 < j < 0.95
    return _copy(doc, tag, b" ".join(words).decode())


def _ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["id"]).column("id").to_pylist()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _reference(tmp: Path, earlier: list[Path], new_files: dict[str, list[dict]]) -> tuple[dict, Path]:
    """One dedup over the union: the earlier runs' kept documents (quality 1.0, files first by
    name) + this run's documents (quality 0.0). Returns the reference stats and its OUT."""
    from webmill.curate.dedup import run_dedup

    ref = tmp / "reference"
    for r, old in enumerate(earlier):
        for f in sorted((old / "deduped").glob("*.parquet")):
            t = pq.read_table(f)
            t = t.drop_columns(["dedup_cluster"] + [c for c in ("quality_score",) if c in t.column_names])
            t = t.append_column("quality_score", pa.array(np.ones(t.num_rows, np.float32)))
            (ref / "documents").mkdir(parents=True, exist_ok=True)
            pq.write_table(t, ref / "documents" / f"a{r}_{f.name}")
    for name, docs in new_files.items():
        write_documents(docs, ref / "documents" / f"b_{name}", extra={"quality_score": np.zeros(len(docs), np.float32)})
    return run_dedup(ref, DedupConfig(write_index=False)), ref


def _removed_by_earlier(ref: Path) -> int:
    """Documents of this run (files ``b_*``) whose candidate component (computed here from stage
    1's band rows and scipy) holds an earlier run's document (files ``a*``)."""
    st = as_storage(ref)
    names = st.list("documents", suffix=".parquet")
    band, key, doc, offset, first_new = [], [], [], 0, None
    for name in names:
        if name.startswith("b_") and first_new is None:
            first_new = offset
        for p in band_rows_for_file(st, f"documents/{name}", offset, DedupConfig(write_index=False), 3):
            band.append(p["band"]), key.append(p["key"]), doc.append(p["doc"])
        offset += st.parquet_file(f"documents/{name}").metadata.num_rows
    e = bucket_edges(np.concatenate(band), np.concatenate(key), np.concatenate(doc))
    nodes, comp = connected_components(e["src"], e["dst"])
    with_old = set(comp[nodes < first_new].tolist())
    return int(sum(1 for n, c in zip(nodes.tolist(), comp.tolist()) if n >= first_new and c in with_old))


def test_against_equals_deduplicating_the_union(ray_local, tmp_path):
    """Run A on X, run B on Y against A, run C on Z against [A, B]: each run keeps exactly the
    documents of its own that one dedup over (earlier kept documents + its documents) keeps when
    the earlier documents win; earlier OUTs stay byte-identical."""
    from webmill.curate.dedup import run_dedup

    # run A: X = fiscalitefrg.com ('/' = '/index.html') + 25 WET documents (three cdc.gov 404s)
    out_a = tmp_path / "A"
    fr = load_html_documents("heritrix_2012_fiscalitefrg-com_fr.warc.gz")
    wet = load_wet_documents(WET)
    write_documents(fr, out_a / "documents" / "x_fr.parquet")
    write_documents(wet, out_a / "documents" / "x_wet.parquet")
    stats_a = run_dedup(out_a, DedupConfig())
    assert stats_a["documents_removed"] == 3 and "against" not in stats_a
    meta_a = as_storage(out_a).read_json("dedup_index/meta.json")
    assert meta_a["total_kept"] == stats_a["documents_out"]
    kept_a = set(_ids(out_a / "deduped" / "x_fr.parquet") + _ids(out_a / "deduped" / "x_wet.parquet"))
    x_docs = fr + wet
    x_removed = [d for d in x_docs if d["id"] not in kept_a]
    long_kept = sorted((d for d in wet if d["id"] in kept_a and len(d["text"].split()) > 400), key=lambda d: d["id"])

    # run B: Y = researcher homepages + resiliparse sample, with planted copies
    hp = load_html_documents("wget_2024_researcher-homepages_dolma-sample-0000.warc.gz")
    rs = load_html_documents("cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz")
    near_x = _near(long_kept[0], "y-near-x", 1)
    y1 = hp + [_copy(long_kept[1], "y-exact-x-kept"), _copy(x_removed[0], "y-exact-x-removed"), near_x]
    y2 = rs + [_copy(near_x, "y-exact-of-near-x"), _copy(hp[2], "y-exact-y"), _near(hp[5], "y-near-y", 2)]
    y_files = {"y1.parquet": y1, "y2.parquet": y2}
    out_b = tmp_path / "B"
    for name, docs in y_files.items():
        write_documents(docs, out_b / "documents" / name, extra={"quality_score": np.zeros(len(docs), np.float32)})
    before_a = _snapshot(out_a)
    stats_b = run_dedup(out_b, DedupConfig(), against=[out_a])
    assert _snapshot(out_a) == before_a  # the earlier run is only read
    ref_stats, ref = _reference(tmp_path / "refB", [out_a], y_files)
    for name in y_files:
        assert _ids(out_b / "deduped" / name) == _ids(ref / "deduped" / f"b_{name}"), name
    kept_b = set(_ids(out_b / "deduped" / "y1.parquet") + _ids(out_b / "deduped" / "y2.parquet"))
    for planted in ("y-exact-x-kept", "y-exact-x-removed", "y-near-x", "y-exact-of-near-x"):
        assert f"planted-{planted}" not in kept_b  # duplicates of X's documents
    assert len({"planted-y-exact-y", hp[2]["id"]} & kept_b) == 1  # within Y: one of each pair stays
    assert len({"planted-y-near-y", hp[5]["id"]} & kept_b) == 1
    by_x = _removed_by_earlier(ref)
    assert by_x >= 4
    assert stats_b["against"]["documents_removed"] == by_x
    assert stats_b["against"]["documents"] == meta_a["total_kept"]
    assert stats_b["documents_removed"] == len(y1) + len(y2) - len(kept_b)
    assert as_storage(out_b).read_json("dedup_index/meta.json")["total_kept"] == len(kept_b)

    # run C against [A, B]: Z = infoculture.ru + crate example + whirlwind, with planted copies
    y_removed_by_y = next(i for i in ("planted-y-exact-y", hp[2]["id"]) if i not in kept_b)
    y_removed_doc = next(d for d in y1 + y2 if d["id"] == y_removed_by_y)
    z = (load_html_documents("wpull_2025_infoculture-ru_ru.warc.gz")
         + load_wet_documents("cc_CC-MAIN-2015-35_crate-example.warc.wet.gz")
         + load_wet_documents("cc_CC-MAIN-2024-22_whirlwind.warc.wet.gz"))
    z += [_copy(hp[0], "z-exact-y-kept"), _copy(near_x, "z-exact-y-removed-by-x"), _copy(y_removed_doc, "z-exact-y-removed-by-y"),
          _near(long_kept[2], "z-near-x", 3), _copy(rs[3], "z-exact-y-kept-2"), _copy(z[-1], "z-exact-z")]
    z_files = {"z.parquet": z}
    out_c = tmp_path / "C"
    write_documents(z, out_c / "documents" / "z.parquet", extra={"quality_score": np.zeros(len(z), np.float32)})
    before_b = _snapshot(out_b)
    stats_c = run_dedup(out_c, DedupConfig(), against=[out_a, out_b])
    assert _snapshot(out_a) == before_a and _snapshot(out_b) == before_b
    ref_stats, ref = _reference(tmp_path / "refC", [out_a, out_b], z_files)
    kept_c = _ids(out_c / "deduped" / "z.parquet")
    assert kept_c == _ids(ref / "deduped" / "b_z.parquet")
    for planted in ("z-exact-y-kept", "z-exact-y-removed-by-x", "z-exact-y-removed-by-y", "z-near-x", "z-exact-y-kept-2"):
        assert f"planted-{planted}" not in kept_c
    assert len({"planted-z-exact-z", z[-7]["id"]} & set(kept_c)) == 1
    assert stats_c["against"]["documents_removed"] == _removed_by_earlier(ref) >= 5
    assert stats_c["against"]["documents"] == meta_a["total_kept"] + len(kept_b)

    # the same Z against [A, B'] where B' deduplicated Y alone: A's and B''s kept documents share
    # buckets (components of earlier documents only), and Z still gets the union's result
    out_b2 = tmp_path / "B2"
    for name, docs in y_files.items():
        write_documents(docs, out_b2 / "documents" / name, extra={"quality_score": np.zeros(len(docs), np.float32)})
    run_dedup(out_b2, DedupConfig())
    out_c2 = tmp_path / "C2"
    write_documents(z, out_c2 / "documents" / "z.parquet", extra={"quality_score": np.zeros(len(z), np.float32)})
    stats_c2 = run_dedup(out_c2, DedupConfig(), against=[out_a, out_b2])
    ref_stats, ref = _reference(tmp_path / "refC2", [out_a, out_b2], z_files)
    assert _ids(out_c2 / "deduped" / "z.parquet") == _ids(ref / "deduped" / "b_z.parquet")
    assert stats_c2["against"]["documents_removed"] == _removed_by_earlier(ref)
