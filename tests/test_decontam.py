"""Benchmark decontamination (issue 19, item 4): an eval set built from sentences of real
documents (examples/warc, so it runs on a fresh clone): planted hits all found, near misses
(one word changed in every 13-word window) not found, the index agrees with a brute-force set
of n-grams, flag mode keeps everything and flags exactly the hits, bad eval files are clear
errors, the stage off leaves the outputs as they were, and `curate run --decontaminate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webmill.config import config_hash, load_config
from webmill.curate.decontam import INDEX_REL, load_filter, parse_sets, prepare_index, read_items
from webmill.curate.documents import FileProcessor
from webmill.curate.minhash import normalize_words
from webmill.errors import UserError
from webmill.filters.base import Document
from webmill.filters.decontam import DecontamFilter, NgramIndex, ngram_hashes, word_hashes

ROOT = Path(__file__).resolve().parents[1]
# a WET file (no extraction) and a wget crawl of researcher homepages: 19 kept English documents
FILES = ("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", "wget_2024_researcher-homepages_dolma-sample-0000.warc.gz")
N = 13
CHANGED = "qqxzyplugh"  # a word no document has


def _cfg(**decontam):
    over = {"extract": {"timeout_s": 30.0}}
    if decontam:
        over["decontaminate"] = decontam
    return load_config(None, over)


def _process(cfg, out: Path) -> dict:
    proc = FileProcessor(cfg, out)
    try:
        return {f: proc.process(str(ROOT / "examples" / "warc" / f)) for f in FILES}
    finally:
        proc.close()


def _table(out: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(out / "documents" / f"{f.split('.')[0]}.parquet") for f in FILES])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The documents kept without decontamination (the eval sets are made from them)."""
    out = tmp_path_factory.mktemp("decontam_base")
    stats = _process(_cfg(), out)
    t = _table(out)
    assert t.num_rows >= 12
    return out, stats, t.column("id").to_pylist(), t.column("text").to_pylist()


def _grams(words: list, n: int) -> set:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@pytest.fixture(scope="module")
def evals(base, tmp_path_factory):
    """planted.jsonl: a 20-word span of every even document, as a question; near.txt: 25 words of
    every odd document with word 13 changed (every 13-word window differs in one word); short:
    a 9-word span (indexed whole) and a 7-word one (skipped)."""
    _, _, ids, texts = base
    d = tmp_path_factory.mktemp("evals")
    planted, near = [], []
    for i, text in enumerate(texts):
        raw = text.split()
        k = len(raw) // 3
        if i % 2 == 0:
            planted.append({"question": "Question: " + " ".join(raw[k:k + 20]) + " ?", "answer": "A"})
        else:
            w = [x.decode() for x in normalize_words(text)]
            k = len(w) // 3
            span = w[k:k + 25]
            span[12] = CHANGED
            near.append(" ".join(span))
    (d / "planted.jsonl").write_text("".join(json.dumps(x) + "\n" for x in planted))
    (d / "near.txt").write_text("\n".join(near) + "\n")
    w1 = [x.decode() for x in normalize_words(texts[1])]
    (d / "short.jsonl").write_text(json.dumps({"text": " ".join(w1[:9])}) + "\n"
                                   + json.dumps({"text": "only seven words are in this item"}) + "\n")
    return d


def _sets(d: Path) -> list:
    return [{"path": str(d / "planted.jsonl"), "field": "question"}, str(d / "near.txt")]


def _expected(texts: list[str], items_by_set: dict[str, list[str]], n=N, min_words=8) -> list[list[str]]:
    """Brute force: per document, the sets sharing a normalized n-gram (or a whole short item)."""
    refs = {}
    for name, items in items_by_set.items():
        g = set()
        for it in items:
            w = normalize_words(it)
            g |= _grams(w, n) if len(w) >= n else ({tuple(w)} if len(w) >= min_words else set())
        refs[name] = g
    lengths = {len(x) for g in refs.values() for x in g}
    out = []
    for text in texts:
        w = normalize_words(text)
        doc = set().union(*(_grams(w, n) for n in lengths))
        out.append([name for name, g in refs.items() if doc & g])
    return out


def test_ngram_hash_follows_the_dedup_normalization():
    a = word_hashes("The Quick, brown fox -- jumps over the lazy dog!")
    b = word_hashes("the quick brown FOX jumps over the lazy dog")
    assert np.array_equal(ngram_hashes(a, 5), ngram_hashes(b, 5)) and len(ngram_hashes(a, 5)) == 5
    assert ngram_hashes(a, 9)[0] != ngram_hashes(a[:8], 8)[0]  # lengths are salted apart
    assert len(ngram_hashes(a, 10)) == 0
    c = word_hashes("the quick brown fox jumps over the lazy cat")
    assert ngram_hashes(a, 9)[0] != ngram_hashes(c, 9)[0]


def test_planted_hits_found_near_misses_not(base, evals, tmp_path):
    _, _, ids, texts = base
    cfg = _cfg(enabled=True, sets=_sets(evals))
    info = prepare_index(tmp_path, cfg)
    assert [s["name"] for s in info["sets"]] == ["planted", "near"]
    assert info["sets"][0]["items"] == (len(texts) + 1) // 2 and info["sets"][0]["ngrams"] > 0
    f = load_filter(tmp_path, cfg)
    planted = [json.loads(x)["question"] for x in (evals / "planted.jsonl").read_text().splitlines()]
    near = (evals / "near.txt").read_text().split("\n")[:-1]
    want = _expected(texts, {"planted": planted, "near": near})
    got = []
    for text in texts:
        keep, reason = f.filter(Document(text=text))
        got.append(reason)
    for i, (reason, exp) in enumerate(zip(got, want)):
        assert reason == (f"decontam_{exp[0]}" if exp else None), (i, reason, exp)
        if i % 2 == 0:
            assert reason == "decontam_planted", i  # every planted hit is found
    assert not any("near" in e for e in want)  # the near misses share no 13-gram with any document
    assert sum(f.documents.values()) == sum(map(len, want))
    assert f.ngrams["planted"] >= 8 * len(planted)  # 20-word spans: 8 windows each, at least


def test_short_items_are_indexed_whole_or_skipped(base, evals, tmp_path):
    _, _, _, texts = base
    cfg = _cfg(enabled=True, sets=[str(evals / "short.jsonl")])
    info = prepare_index(tmp_path, cfg)
    s = info["sets"][0]
    assert (s["name"], s["items"], s["items_whole"], s["items_skipped"]) == ("short", 2, 1, 1)
    assert info["lengths"] == [9, 13]
    f = load_filter(tmp_path, cfg)
    assert f.filter(Document(text=texts[1])) == (False, "decontam_short")
    want = _expected(texts, {"short": [json.loads(x)["text"] for x in (evals / "short.jsonl").read_text().splitlines()]})
    assert [f.filter(Document(text=t))[1] for t in texts] == [("decontam_short" if w else None) for w in want]


def test_remove_and_flag_modes_in_the_file_processor(base, evals, tmp_path):
    out0, stats0, ids, texts = base
    sets = _sets(evals)
    planted = [json.loads(x)["question"] for x in (evals / "planted.jsonl").read_text().splitlines()]
    want = _expected(texts, {"planted": planted, "near": (evals / "near.txt").read_text().split("\n")[:-1]})
    hit_ids = {i for i, w in zip(ids, want) if w}
    assert len(hit_ids) >= (len(ids) + 1) // 2

    rm = tmp_path / "remove"
    cfg = _cfg(enabled=True, sets=sets)
    prepare_index(rm, cfg)
    stats = _process(cfg, rm)
    kept = _table(rm)
    assert kept.column("id").to_pylist() == [i for i in ids if i not in hit_ids]
    assert kept.schema.names == pq.read_table(out0 / "documents" / f"{FILES[0].split('.')[0]}.parquet").schema.names
    assert sum(s["dropped"].get("decontam_planted", 0) for s in stats.values()) == len(hit_ids)
    for f, s in stats.items():
        assert s["records"] == s["kept"] + sum(s["dropped"].values()) + s["errors"]
        assert s["stages"]["decontaminate"] == s["kept"]
        assert set(s["decontaminate"]["sets"]) == {"planted", "near"}
        assert s["decontaminate"]["sets"]["near"] == {"documents": 0, "ngrams": 0}
    assert sum(s["decontaminate"]["sets"]["planted"]["documents"] for s in stats.values()) == len(hit_ids)

    fl = tmp_path / "flag"
    cfg = _cfg(enabled=True, sets=sets, action="flag")
    prepare_index(fl, cfg)
    stats = _process(cfg, fl)
    t = _table(fl)
    assert t.column("id").to_pylist() == ids  # nothing dropped
    flags = dict(zip(t.column("id").to_pylist(), t.column("decontam_sets").to_pylist()))
    assert {i for i, v in flags.items() if v} == hit_ids
    assert all(v == ["planted"] for v in flags.values() if v)
    assert not any(r.startswith("decontam_") for s in stats.values() for r in s["dropped"])


def test_off_by_default_leaves_outputs_unchanged(base, evals, tmp_path):
    """Off (the default, or enabled = false with sets listed): documents byte-identical and the
    config hash that of a config without the table (the hash runs had before the stage existed).
    On with a set that hits nothing: the documents are byte-identical too."""
    out0, stats0, _, _ = base
    assert load_config()["decontaminate"]["enabled"] is False
    cfg = _cfg()
    legacy = dict(cfg)
    legacy.pop("decontaminate")
    assert config_hash(cfg) == config_hash(legacy) == stats0[FILES[0]]["config_hash"]
    off = tmp_path / "off"
    _process(_cfg(enabled=False, sets=_sets(evals)), off)
    miss = tmp_path / "miss"
    cfg = _cfg(enabled=True, sets=[str(evals / "near.txt")])
    prepare_index(miss, cfg)
    assert config_hash(cfg) != config_hash(legacy)
    _process(cfg, miss)
    for f in FILES:
        rel = f"documents/{f.split('.')[0]}.parquet"
        assert (off / rel).read_bytes() == (out0 / rel).read_bytes() == (miss / rel).read_bytes()
    assert not (off / "decontam").exists()


def test_bad_eval_files_are_clear_errors(tmp_path):
    good = "the plane face of a plano convex lens of focal length twenty centimetres is silvered"
    f = tmp_path / "mixed.jsonl"
    f.write_text(json.dumps({"text": good}) + "\n{not json\n" + json.dumps({"question": "x"}) + "\n"
                 + json.dumps({"text": 3}) + "\n" + json.dumps(["a"]) + "\n")
    es = parse_sets([str(f)])[0]
    assert list(read_items(str(f), "text", es)) == [good]
    assert es.bad_count == 4
    assert [(b["line"], b["error"][:12]) for b in es.bad] == [(2, "not JSON (Ex"), (3, "no field 'te"),
                                                              (4, "'text' is in"), (5, "not a JSON o")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": good}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl has no usable item; first bad line 1: no field 'text'"):
        list(read_items(str(bad)))
    with pytest.raises(UserError, match=r"eval file not found: .*missing.jsonl"):
        parse_sets([str(tmp_path / "missing.jsonl")])
    with pytest.raises(UserError, match=r"eval file not found: .*nothing-\*.jsonl"):
        parse_sets([str(tmp_path / "nothing-*.jsonl")])
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(UserError, match=r"x.csv: unknown format"):
        parse_sets([str(tmp_path / "x.csv")])
    pq.write_table(pa.table({"q": [good]}), tmp_path / "p.parquet")
    with pytest.raises(UserError, match=r"p.parquet: no column 'text' \(columns: q\)"):
        list(read_items(str(tmp_path / "p.parquet")))
    assert list(read_items(str(tmp_path / "p.parquet"), "q")) == [good]
    with pytest.raises(UserError, match=r"two eval sets are named 'mixed'"):
        NgramIndex.build([("mixed", [good]), ("mixed", [good])])
    with pytest.raises(UserError, match=r"\[decontaminate\] action must be one of remove, flag"):
        load_config(overrides={"decontaminate": {"action": "drop"}})
    with pytest.raises(UserError, match=r"min_words \(14\) must not exceed ngram \(13\)"):
        load_config(overrides={"decontaminate": {"min_words": 14}})
    with pytest.raises(UserError, match=r"sets is empty"):
        prepare_index(tmp_path / "o", load_config(overrides={"decontaminate": {"enabled": True}}))
    with pytest.raises(UserError, match=r"index.npz is missing; build it first"):
        FileProcessor(load_config(overrides={"decontaminate": {"enabled": True, "sets": [str(f)]}}), tmp_path / "o2")
    cfg = load_config(overrides={"decontaminate": {"enabled": True, "sets": [str(f)]}})
    prepare_index(tmp_path / "o3", cfg)
    cfg["decontaminate"]["ngram"] = 12
    with pytest.raises(UserError, match=r"built for another \[decontaminate\] config"):
        load_filter(tmp_path / "o3", cfg)
    with pytest.raises(UserError, match=r"action must be one of"):
        DecontamFilter(NgramIndex.build([("a", [good])])[0], "drop")


def test_index_is_sorted_uint64_with_set_ids_in_config_order(evals, tmp_path):
    cfg = _cfg(enabled=True, sets=[{"path": str(evals / "*.txt"), "name": "Near Misses"},
                                   {"path": str(evals / "planted.jsonl"), "field": "question"}])
    info = prepare_index(tmp_path, cfg)
    with np.load(tmp_path / INDEX_REL) as z:
        h, s = z["hashes"], z["set_ids"]
        assert h.dtype == np.uint64 and s.dtype == np.uint16 and np.all(h[1:] >= h[:-1])
        assert list(z["names"]) == ["near_misses", "planted"]
    assert len(h) == info["hashes"] == sum(x["ngrams"] for x in info["sets"])
    import hashlib

    assert info["sha256"] == hashlib.sha256((tmp_path / INDEX_REL).read_bytes()).hexdigest()


@pytest.mark.slow  # ~40 s: an embedded Ray run
def test_curate_run_with_decontaminate(base, evals, tmp_path):
    """`curate run FILE --decontaminate EVAL` on examples/warc (embedded Ray): the hits are dropped
    with reason decontam_planted, and the report has the per-set section."""
    _, _, ids, texts = base
    cfg = tmp_path / "test.toml"
    cfg.write_text("[extract]\ntimeout_s = 30.0\n[ray]\nnum_workers = 1\n")
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", "from webmill.curate.cli import main; main()", "run",
                        str(ROOT / "examples" / "warc" / FILES[1]), "-o", str(out), "-c", str(cfg),
                        "--decontaminate", str(evals / "planted.jsonl"), "--no-dedup", "--no-pii",
                        "--no-tokenize"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 2 and "no usable item; first bad line 1: no field 'text'" in p.stderr, p.stderr[-2000:]
    jl = tmp_path / "planted_text.jsonl"
    jl.write_text("".join(json.dumps({"text": json.loads(x)["question"]}) + "\n"
                          for x in (evals / "planted.jsonl").read_text().splitlines()))
    p = subprocess.run([sys.executable, "-c", "from webmill.curate.cli import main; main()", "run",
                        str(ROOT / "examples" / "warc" / FILES[1]), "-o", str(out), "-c", str(cfg),
                        "--decontaminate", str(jl), "--no-dedup", "--no-pii", "--no-tokenize"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "decontaminate: planted_text:" in p.stderr
    stats = json.loads((out / "stats" / f"{FILES[1].split('.')[0]}.json").read_text())
    n_hit = stats["dropped"]["decontam_planted_text"]
    assert n_hit == stats["decontaminate"]["sets"]["planted_text"]["documents"] >= 7
    rep = json.loads((out / "report" / "stats.json").read_text())
    assert rep["decontaminate"]["sets"][0]["name"] == "planted_text"
    assert rep["decontaminate"]["sets"][0]["documents_hit"] == n_hit
    assert "decontaminate" in [r["stage"] for r in rep["funnel"]]
    assert "<h2 id=\"decontaminate\">Decontamination</h2>" in (out / "report" / "report.html").read_text()
