"""Examples of dedup's removed documents (issue 19, item 5): ``OUT/examples/dedup/<name>.parquet``
holds, per file and reason, the bottom-k of the removed documents by ``example_key(id)``; collected
while the deduplicated files are streamed, on both components paths; ``deduped/`` bytes do not
depend on them."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dedup_fixtures import EXAMPLES_WARC
from jaccard_gen import jaccard_pair, load_wet_documents, write_documents

from webmill.curate import minhash as mh
from webmill.curate.dedup import DedupConfig, run_dedup
from webmill.curate.examples import EXAMPLE_CHARS, EXAMPLE_SCHEMA, example_key, read_examples
from webmill.errors import UserError

FILES = ("a_wet", "b_copies")
K = 3


@pytest.fixture(scope="module")
def dup_dir(tmp_path_factory):
    """OUT/documents: a_wet = the 25 real WET documents of the bundled sample (three identical
    cdc.gov 404 pages among them); b_copies = an exact copy of each (ids "zz-..." sort after:
    the copies are removed) and 6 near copies (J ~ 0.9) of the longest ones."""
    out = tmp_path_factory.mktemp("out")
    wet = load_wet_documents(str(EXAMPLES_WARC / "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"))
    copies = [dict(d, id=f"zz-copy-{i:02d}", url=d["url"] + "#copy") for i, d in enumerate(wet)]
    rng = random.Random(7)
    longest = sorted(wet, key=lambda d: -len(d["text"]))[:6]
    near = []
    for i, d in enumerate(longest):
        words, _ = jaccard_pair(mh.normalize_words(d["text"]), 0.9, rng)
        near.append(dict(d, id=f"zz-near-{i}", url=d["url"] + "#near", text=b" ".join(words).decode()))
    write_documents(wet, out / "documents" / "a_wet.parquet")
    write_documents(copies + near, out / "documents" / "b_copies.parquet")
    return out


def _bytes(out: Path, sub: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / sub).glob("*.parquet"))}


def test_examples_are_the_bottom_k_of_removed_rows(ray_local, dup_dir):
    out = dup_dir
    stats = run_dedup(out, DedupConfig(write_removed=True, examples_per_reason=K))
    assert stats["config"]["examples_per_reason"] == K
    assert sorted(_bytes(out, "examples/dedup")) == [f"{n}.parquet" for n in FILES]
    by_reason_total = {}
    for name in FILES:
        ex = pq.read_table(out / "examples" / "dedup" / f"{name}.parquet")
        assert ex.schema.equals(EXAMPLE_SCHEMA)
        removed = pq.read_table(out / "removed" / "dedup" / f"{name}.parquet").to_pylist()
        rows = ex.to_pylist()
        for reason in ("dedup_exact", "dedup_near"):
            gone = [r for r in removed if r["reason"] == reason]
            by_reason_total[reason] = by_reason_total.get(reason, 0) + len(gone)
            want = sorted(gone, key=lambda r: (example_key(r["id"]), r["id"]))[:K]
            got = [r for r in rows if r["reason"] == reason]
            assert [r["id"] for r in got] == [r["id"] for r in want], (name, reason)
            for g, w in zip(got, want):
                assert g["stage"] == "dedup" and g["url"] == w["url"]
                assert g["drop_detail"] == f"duplicate of {w['kept_id']}"
                assert g["text"] == w["text"][:EXAMPLE_CHARS] and g["n_chars"] == len(w["text"])
                assert g["sample_key"] == example_key(w["id"])
                assert g["drop_value"] is None and g["drop_threshold"] is None
    # bounded: b_copies lost 25 exact copies (+ the near copies) but keeps K examples per reason
    b = pq.read_table(out / "examples" / "dedup" / "b_copies.parquet").column("reason").to_pylist()
    assert b.count("dedup_exact") == K and by_reason_total["dedup_exact"] >= 25
    assert 1 <= b.count("dedup_near") <= K and by_reason_total["dedup_near"] >= 5
    assert all(r.startswith("zz-") for r in pq.read_table(out / "examples" / "dedup" / "b_copies.parquet")
               .column("id").to_pylist())
    # the run's sample as the report reads it: K per reason at most
    merged = read_examples(out, reasons=["dedup_exact"], n=K)
    assert merged.num_rows == K


def test_examples_do_not_change_deduped_and_are_deterministic(ray_local, dup_dir):
    out = dup_dir
    run_dedup(out, DedupConfig(examples_per_reason=K))
    deduped, examples = _bytes(out, "deduped"), _bytes(out, "examples/dedup")
    assert examples and deduped
    # off: deduped/ byte-identical, examples/dedup/ emptied (no stale sample of an earlier run)
    run_dedup(out, DedupConfig(examples_per_reason=0))
    assert _bytes(out, "deduped") == deduped
    assert _bytes(out, "examples/dedup") == {}
    # the distributed components path gives the same examples, byte for byte; a rerun too
    run_dedup(out, DedupConfig(examples_per_reason=K, components="distributed"))
    assert _bytes(out, "deduped") == deduped and _bytes(out, "examples/dedup") == examples
    run_dedup(out, DedupConfig(examples_per_reason=K))
    assert _bytes(out, "examples/dedup") == examples


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_examples_per_reason_is_checked(value):
    with pytest.raises(UserError, match="examples_per_reason"):
        DedupConfig(examples_per_reason=value).validate()
