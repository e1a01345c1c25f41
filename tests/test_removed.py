"""``OUT/removed/`` and ``OUT/examples/documents/`` of the per-document stages, through the real
:class:`FileProcessor` on bundled WARCs: every dropped document with a Document is in
``removed/`` once, with the full document schema and what decided its drop; language drops are
split by language; a rerun leaves no stale file; the examples per reason are the bottom-N by
:func:`example_key` of that reason's removed ids, byte-identical across runs."""

from __future__ import annotations

import operator
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webmill.config import load_config
from webmill.curate.documents import FileProcessor
from webmill.curate.examples import EXAMPLE_SCHEMA, example_key
from webmill.curate.outputs import REMOVED_SCHEMA
from webmill.curate.stages import DOCUMENT_STAGES, reason_stage
from webmill.storage import Storage

#: Common Crawl pages, mostly Chinese/Russian (prefilter skips, zh/de language drops, a C4 drop);
#: academic home pages (Gopher drops); a live fetch with many reasons (FineWeb, lang_low_score)
FILES = ("cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz",
         "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz",
         "livefetch_2025_pipestream-sample-malformed.warc.gz",
         "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz")
RECORD_REASONS = {r for s in DOCUMENT_STAGES if s.kind == "record" for r in s.reasons}
PER_REASON = 2
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
DETAIL = re.compile(r"^(\w+) (\S+) (<=|>=|<|>) (\S+)$")


def run(out: Path, examples_warc: Path, names=FILES, **over) -> dict[str, dict]:
    """Process ``names`` into ``out``; ``{stem: stats}``."""
    cfg = load_config(None, {"extract": {"timeout_s": 30.0},
                             "output": {"write_removed": True, "examples_per_reason": PER_REASON},
                             **over})
    proc = FileProcessor(cfg, out)
    try:
        stats = [proc.process(str(examples_warc / n)) for n in names]
    finally:
        proc.close()
    return {s["stem"]: s for s in stats}


@pytest.fixture(scope="module")
def outa(tmp_path_factory, examples_warc):
    out = tmp_path_factory.mktemp("removed") / "a"
    return out, run(out, examples_warc)


def removed_tables(out: Path) -> dict[str, pa.Table]:
    st = Storage(out)
    return {rel: st.read_parquet(f"removed/{rel}") for rel in st.list("removed", recursive=True)}


def test_removed_rows_have_the_full_schema_and_their_stage(outa):
    out, stats = outa
    tables = removed_tables(out)
    assert tables
    langs = set()
    for rel, t in tables.items():
        assert t.schema.equals(REMOVED_SCHEMA), rel
        parts = rel.split("/")
        stem = parts[-1].removesuffix(".parquet")
        assert stem in stats
        rows = t.to_pylist()
        assert rows, rel
        for r in rows:
            assert r["stage"] == parts[0] == reason_stage(r["reason"]), (rel, r["reason"])
            assert r["id"] and r["url"] and r["crawl_date"] is not None and r["record_offset"] >= 0
            assert r["source_file"] == Path(stats[stem]["input"]).name
            assert r["domain"] and r["domain"] in r["url"].lower()
            assert r["drop_detail"], (rel, r["reason"])  # every drop says what decided it
            # text as far as the stage got: none before extraction, the extracted text after it
            if r["stage"] == "url_filter" or r["reason"] in ("extract_skipped_language", "extract_not_html"):
                assert r["text"] == ""
            elif r["reason"] != "extract_empty":
                assert r["text"].strip()
        if parts[0] == "language":  # removed/language/<lang>/<stem>.parquet, that language inside
            assert len(parts) == 3
            assert {r["language"] for r in rows} == {parts[1]}
            assert all(0 < r["language_score"] == pytest.approx(r["drop_value"]) for r in rows)
            langs.add(parts[1])
        else:
            assert len(parts) == 2, rel
    assert {"zh", "de", "en"} <= langs  # lang_not_kept of zh and de pages, lang_low_score of en
    skipped = [r for t in tables.values() for r in t.to_pylist()
               if r["reason"] == "extract_skipped_language"]
    assert len(skipped) == 13  # the prefilter's language and score are in the row
    assert {r["language"] for r in skipped} >= {"zh", "ru"}
    for r in skipped:
        assert r["language_score"] == pytest.approx(r["drop_value"])
        assert r["drop_value"] >= r["drop_threshold"] == 0.9


def test_every_document_dropped_with_a_document_is_removed_exactly_once(outa):
    out, stats = outa
    tables = removed_tables(out)
    kept_ids = set()
    for stem in stats:
        kept_ids |= set(pq.read_table(out / "documents" / f"{stem}.parquet").column("id").to_pylist())
    for stem, s in stats.items():
        mine = [t for rel, t in tables.items() if rel.endswith(f"/{stem}.parquet")]
        reasons = Counter(r for t in mine for r in t.column("reason").to_pylist())
        want = Counter({k: v for k, v in s["dropped"].items() if k not in RECORD_REASONS})
        assert reasons == want, stem
        assert sum(want.values()) > 0
    ids = [i for t in tables.values() for i in t.column("id").to_pylist()]
    assert len(ids) == len(set(ids)) and not set(ids) & kept_ids


def test_value_and_threshold_fail_with_the_stated_operator(outa):
    out, _ = outa
    rows = [r for t in removed_tables(out).values() for r in t.to_pylist()]
    checked = Counter()
    for r in rows:
        m = DETAIL.match(r["drop_detail"].split(" (")[0])
        if r["stage"] in ("gopher_repetition", "gopher_quality", "fineweb") or \
                r["reason"] == "c4_too_few_sentences":
            assert m, r["drop_detail"]  # every statistic rule writes "<stat> <value> <op> <thr>"
        if not m:
            continue
        stat, v, op, thr = m.groups()
        assert r["drop_value"] is not None and r["drop_threshold"] is not None, r["reason"]
        assert OPS[op](r["drop_value"], r["drop_threshold"]), r["drop_detail"]
        assert float(thr) == pytest.approx(r["drop_threshold"]), r["drop_detail"]
        assert float(v) == pytest.approx(r["drop_value"], rel=5e-3, abs=5e-4), r["drop_detail"]
        checked[r["reason"]] += 1
    # the shared rules' reasons seen on these files, each with a checked comparison
    assert {"gopher_short_doc", "gopher_below_alpha_words", "fineweb_line_punct_ratio",
            "c4_too_few_sentences"} <= set(checked), checked
    low = [r for r in rows if r["reason"] == "lang_low_score"]
    assert low and all(r["drop_value"] < r["drop_threshold"] == 0.65 for r in low)
    not_kept = [r for r in rows if r["reason"] == "lang_not_kept"]
    assert not_kept and all(r["drop_detail"].startswith(f"{r['language']} (") and
                            r["drop_detail"].endswith("not in [en]") for r in not_kept)


def test_examples_are_the_bottom_n_of_each_reasons_removed_ids(outa, tmp_path, examples_warc):
    out, stats = outa
    tables = removed_tables(out)
    n_reasons_cut = 0
    for stem in stats:
        ex = pq.read_table(out / "examples" / "documents" / f"{stem}.parquet")
        assert ex.schema.equals(EXAMPLE_SCHEMA)
        by_reason: dict[str, list[str]] = {}
        for t in (t for rel, t in tables.items() if rel.endswith(f"/{stem}.parquet")):
            for i, reason in zip(t.column("id").to_pylist(), t.column("reason").to_pylist()):
                by_reason.setdefault(reason, []).append(i)
        got: dict[str, list[str]] = {}
        for r in ex.to_pylist():
            got.setdefault(r["reason"], []).append(r["id"])
            assert r["sample_key"] == example_key(r["id"])
        assert set(got) == set(by_reason), stem
        for reason, ids in by_reason.items():
            want = sorted(ids, key=lambda i: (example_key(i), i))[:PER_REASON]
            assert got[reason] == want, (stem, reason)
            n_reasons_cut += len(ids) > PER_REASON
    assert n_reasons_cut >= 3  # the bottom-N choice was really made somewhere
    # the same bytes from a second run
    again = tmp_path / "b"
    run(again, examples_warc)
    for stem in stats:
        rel = Path("examples") / "documents" / f"{stem}.parquet"
        assert (again / rel).read_bytes() == (out / rel).read_bytes()


def test_a_rerun_leaves_no_stale_removed_or_examples_file(tmp_path, examples_warc):
    """Reprocessing a stem with a config that keeps Chinese: its removed/language/zh/ file goes
    (and a planted one of a language that never occurs), the de one is rewritten, other steps'
    removed/ files stay; examples_per_reason = 0 removes the examples table; write_removed off
    writes no removed/ file."""
    name = FILES[0]
    out = tmp_path / "o"
    stem = next(iter(run(out, examples_warc, names=[name])))
    assert (out / "removed" / "language" / "zh" / f"{stem}.parquet").is_file()
    planted = [out / "removed" / "language" / "xx" / f"{stem}.parquet",
               out / "removed" / "language" / f"{stem}.parquet"]  # the layout before languages
    other = out / "removed" / "dedup" / f"{stem}.parquet"
    for p in planted + [other]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    run(out, examples_warc, names=[name], language={"languages": ["en", "zh"]})
    assert not (out / "removed" / "language" / "zh" / f"{stem}.parquet").exists()
    assert (out / "removed" / "language" / "de" / f"{stem}.parquet").is_file()
    assert not any(p.exists() for p in planted) and other.read_bytes() == b"x"
    assert (out / "examples" / "documents" / f"{stem}.parquet").is_file()
    s = run(out, examples_warc, names=[name], output={"write_removed": False, "examples_per_reason": 0})
    assert sum(s[stem]["dropped"].values()) > 0
    assert not (out / "examples" / "documents" / f"{stem}.parquet").exists()
    assert Storage(out).list("removed", recursive=True) == [f"dedup/{stem}.parquet"]
