"""``curate finalize`` (PII + quality) on real documents of the bundled examples/warc: quality is on
by default in buckets mode and drops nothing; what the global steps drop is kept as examples
(``examples/final/``) and, with ``write_removed``, as full rows with their decision
(``removed/pii/``, ``removed/quality/``). Issue 19, items 3, 5 and 6."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from jaccard_gen import load_html_documents, load_wet_documents, write_documents

from webmill.config import load_config
from webmill.curate.examples import EXAMPLE_SCHEMA, example_key
from webmill.curate.finalize import run_finalize

FILES = {"a_wet": ("wet", "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"),
         "b_homepages": ("html", "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz"),
         "c_fr": ("html", "heritrix_2012_fiscalitefrg-com_fr.warc.gz")}


@pytest.fixture(scope="module")
def deduped(tmp_path_factory):
    """A template OUT with ``deduped/`` = 59 real documents of three bundled archives (7 hold an
    e-mail address); each test copies it."""
    out = tmp_path_factory.mktemp("tmpl")
    for name, (kind, archive) in FILES.items():
        docs = (load_wet_documents if kind == "wet" else load_html_documents)(archive)
        write_documents(docs, out / "deduped" / f"{name}.parquet")
    return out


def _fresh(deduped: Path, tmp_path: Path) -> Path:
    shutil.copytree(deduped, tmp_path / "out")
    return tmp_path / "out"


def _cfg(**over):
    cfg = load_config(overrides=over)
    cfg["ray"]["num_workers"] = 2
    return cfg


def _rows(out: Path, sub: str) -> list[dict]:
    return [r for p in sorted((out / sub).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def _bytes(out: Path, sub: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / sub).glob("*.parquet"))}


def test_quality_on_by_default_scores_and_buckets_and_drops_nothing(ray_local, deduped, tmp_path):
    out = _fresh(deduped, tmp_path)
    cfg = _cfg()
    assert cfg["quality"]["enabled"] and cfg["quality"]["mode"] == "buckets"
    stats = run_finalize(out, cfg)
    final = _rows(out, "final")
    q = stats["quality"]
    assert {"quality_score", "quality_bucket"} <= set(final[0])
    # the kept set is the one without quality scoring
    run_finalize(out, _cfg(quality={"enabled": False}), output_subdir="final_noq")
    noq = _rows(out, "final_noq")
    assert [r["id"] for r in final] == [r["id"] for r in noq] and len(final) == 59
    assert "quality_score" not in noq[0] and "quality_bucket" not in noq[0]
    assert [r["text"] for r in final] == [r["text"] for r in noq]
    # final.json's quality table: what the report's buckets table needs
    n_buckets = cfg["quality"]["n_buckets"]
    assert q["mode"] == "buckets" and q["documents_in"] == q["documents_out"] == 59
    assert q["model_path"] == "webmill_quality_v1.ftz"  # the bundled model: its name, no machine path
    assert len(q["bucket_edges"]) == n_buckets - 1 and sum(q["score_histogram"]) == 59
    sizes, words = [0] * n_buckets, [0] * n_buckets
    for r in final:
        sizes[r["quality_bucket"]] += 1
        words[r["quality_bucket"]] += len(r["text"].split())
        assert 0.0 <= r["quality_score"] <= 1.0
    assert q["bucket_sizes"] == sizes and q["bucket_words"] == words
    assert stats["dropped"].get("quality") == 0
    on_disk = json.loads((out / "stats" / "final.json").read_text())
    assert "_scores" not in on_disk["files"][0] and "_words" not in on_disk["files"][0]
    # nothing dropped, so the examples of the final step are empty tables (one per file)
    assert sorted(_bytes(out, "examples/final")) == [f"{n}.parquet" for n in FILES]
    assert sum(pq.read_metadata(out / "examples" / "final" / f"{n}.parquet").num_rows for n in FILES) == 0


def _check_bottom_k(out: Path, k: int, removed_subs: tuple[str, ...]) -> int:
    """examples/final/<name> = per reason the bottom-k by (example_key(id), id) of that file's
    removed rows; returns the number of example rows."""
    n = 0
    for name in FILES:
        ex = pq.read_table(out / "examples" / "final" / f"{name}.parquet")
        assert ex.schema.equals(EXAMPLE_SCHEMA)
        removed = [r for sub in removed_subs if (out / sub / f"{name}.parquet").exists()
                   for r in pq.read_table(out / sub / f"{name}.parquet").to_pylist()]
        rows = ex.to_pylist()
        n += len(rows)
        for reason in {r["reason"] for r in removed} | {r["reason"] for r in rows}:
            want = sorted((r for r in removed if r["reason"] == reason), key=lambda r: (example_key(r["id"]), r["id"]))[:k]
            got = [r for r in rows if r["reason"] == reason]
            assert [r["id"] for r in got] == [r["id"] for r in want], (name, reason)
            for g, w in zip(got, want):
                assert (g["stage"], g["drop_value"], g["drop_threshold"], g["drop_detail"]) == \
                       (w["stage"], w["drop_value"], w["drop_threshold"], w["drop_detail"])
    return n


def test_threshold_mode_removed_rows_carry_score_and_threshold(ray_local, deduped, tmp_path):
    out = _fresh(deduped, tmp_path)
    scored = run_finalize(out, _cfg())  # buckets: learn the scores to put the threshold at the median
    threshold = float(np.median([r["quality_score"] for r in _rows(out, "final")]))
    k = 2
    cfg = _cfg(quality={"mode": "threshold", "threshold": threshold}, pii={"email": "drop"},
               output={"write_removed": True, "examples_per_reason": k})
    stats = run_finalize(out, cfg)
    assert scored["documents_out"] == 59
    pii_rows, q_rows = _rows(out, "removed/pii"), _rows(out, "removed/quality")
    final = _rows(out, "final")
    # every document is in exactly one of final/, removed/pii/, removed/quality/
    ids = [r["id"] for r in final + pii_rows + q_rows]
    assert len(ids) == len(set(ids)) == 59
    assert len(pii_rows) == stats["dropped"]["pii_email"] >= 5 and len(q_rows) == stats["dropped"]["quality"] >= 20
    final_cols = list(pq.read_schema(sorted((out / "final").glob("*.parquet"))[0]).names)
    decision = ["stage", "reason", "drop_value", "drop_threshold", "drop_detail"]
    assert list(pq.read_schema(out / "removed" / "quality" / "a_wet.parquet").names) == final_cols + decision
    for r in q_rows:
        assert (r["stage"], r["reason"]) == ("quality", "quality")
        assert r["drop_value"] == pytest.approx(r["quality_score"]) and r["drop_threshold"] == threshold
        assert r["drop_value"] < r["drop_threshold"] and r["drop_detail"].startswith("quality_score ")
    for r in final:
        assert r["quality_score"] >= threshold
    for r in pii_rows:
        assert (r["stage"], r["reason"]) == ("pii", "pii_email")
        assert r["drop_value"] == r["pii_counts"]["email"] >= 1 and r["drop_threshold"] == 0
        # the scrubbed text: the placeholder, no address
        assert "<EMAIL_ADDRESS>" in r["text"] and not re.search(r"[\w.+-]+@[\w-]+\.\w+", r["text"])
        assert r["drop_detail"] == f"email hits {r['pii_counts']['email']} > 0"
    # examples: bounded, the bottom-k of the removed rows, deterministic across runs
    n = _check_bottom_k(out, k, ("removed/pii", "removed/quality"))
    assert 0 < n <= k * 2 * len(FILES)
    before = {s: _bytes(out, s) for s in ("final", "examples/final", "removed/pii", "removed/quality")}
    run_finalize(out, cfg)
    assert {s: _bytes(out, s) for s in before} == before
    # write_removed off: the removed/ files of the finalize step go away, examples stay
    run_finalize(out, _cfg(quality={"mode": "threshold", "threshold": threshold}, pii={"email": "drop"},
                           output={"examples_per_reason": k}))
    assert _bytes(out, "removed/pii") == {} == _bytes(out, "removed/quality")
    assert _bytes(out, "examples/final") == before["examples/final"] and _bytes(out, "final") == before["final"]


def test_top_fraction_drops_say_outside_top(ray_local, deduped, tmp_path):
    out = _fresh(deduped, tmp_path)
    cfg = _cfg(quality={"mode": "top_fraction", "top_fraction": 0.25}, output={"examples_per_reason": 50})
    stats = run_finalize(out, cfg)
    final = _rows(out, "final")
    assert len(final) == stats["documents_out"] == 15  # ceil(0.25 * 59)
    cut = min(r["quality_score"] for r in final)
    ex = _rows(out, "examples/final")
    assert len(ex) == 59 - 15  # 50 per reason and file: all of them
    for r in ex:
        assert r["reason"] == "quality" and r["drop_threshold"] == pytest.approx(cut)
        assert r["drop_value"] <= r["drop_threshold"] and "outside top 25%" in r["drop_detail"]
    assert stats["quality"]["top_fraction"] == 0.25
