"""Fast tests of the rephrasing stage (no LLM needed): segmentation, cleaning, validation,
routing, cache keying, cache-only runs and failure pass-through against a closed port."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest

from webmill.curate.rephrase import (
    RephraseConfig, RequestCache, cache_key, clean_output, route, run_rephrase, segment_encoder, split_segments,
    support, synthetic_id, validate_output,
)
from webmill.curate.rephrase.llm import Generation
from webmill.curate.rephrase.prompts import PROMPT_VERSION, STOP, STYLES, build_prompt, completion_prompt
from webmill.errors import UserError
from webmill.filters.language import LanguageFilter


@pytest.fixture(scope="module")
def enc():
    return segment_encoder()


@pytest.fixture(scope="module")
def docs(wet_documents):
    """The 25 real WET documents of examples/warc (tests/fixtures_llm.py)."""
    return wet_documents


# ---------------------------------------------------------------------------- segmentation

def test_segments_are_whole_lines_under_the_limit(docs, enc):
    """WET text: one paragraph per line. Segments respect the limit and, when every line fits,
    are runs of whole lines that together give back the document."""
    for d in docs:
        for limit in (64, 256, 512):
            segs = split_segments(d["text"], limit, enc)
            assert segs, d["url"]
            assert all(len(enc.encode_ordinary(s)) <= limit for s in segs), (d["url"], limit)
            lines = [x.strip() for x in d["text"].strip().split("\n") if x.strip()]
            if all(len(enc.encode_ordinary(x)) <= limit for x in lines):
                assert [x for s in segs for x in s.split("\n")] == lines
    # packing is greedy: with a big limit, a short document is one segment
    short = min(docs, key=lambda d: len(d["text"]))
    assert split_segments(short["text"], 4096, enc) == [short["text"].strip()]


def test_blank_line_paragraphs_are_kept_together(enc):
    p1 = "The first paragraph has a line.\nAnd a second line that belongs to it."
    p2 = "The second paragraph is here."
    segs = split_segments(f"{p1}\n\n{p2}\n\n\n{p1}", 20, enc)
    assert segs[0] == p1  # the single newline inside a paragraph is not a boundary
    assert all(len(enc.encode_ordinary(s)) <= 20 for s in segs)
    assert split_segments(f"{p1}\n\n{p2}", 1000, enc) == [f"{p1}\n\n{p2}"]


def test_long_paragraph_splits_at_sentence_ends(enc):
    sentence = "Tomatoes need six to eight hours of direct sun every day. "
    segs = split_segments(sentence * 40, 50, enc)
    assert len(segs) > 1
    for s in segs:
        assert len(enc.encode_ordinary(s)) <= 50
        assert s.endswith("day.")  # never cut inside a sentence when sentences fit
    assert " ".join(segs) == (sentence * 40).strip()


def test_overlong_sentence_and_cjk_are_split_without_inventing_spaces(enc):
    cjk = "这是一个很长的中文句子没有空格" * 60 + "。" + "第二句。" * 30
    segs = split_segments(cjk, 32, enc)
    assert all(len(enc.encode_ordinary(s)) <= 32 for s in segs)
    assert "".join(segs) == cjk
    assert split_segments("   \n\n ", 10, enc) == []
    with pytest.raises(ValueError):
        split_segments("text", 0, enc)


# ---------------------------------------------------------------------------- cleaning/validation

def test_clean_output_removes_preamble_labels_closers_and_template_echo():
    raw = ("Sure! Here is the rewritten text:\n\n**Encyclopedia version:**\nThe tomato is a plant.\n"
           "It needs sun.\n\nI hope this helps! Let me know if you need anything else.")
    assert clean_output(raw) == "The tomato is a plant.\nIt needs sun."
    assert clean_output("Facts:\n- A\n- B\n\n=====\n\nWeb text:\nmore") == "- A\n- B"
    assert clean_output("```\nText in a fence\n```") == "Text in a fence"
    # an output cut by the token limit loses its unfinished sentence / line
    assert clean_output("One. Two is here. Three is cut mid", truncated=True) == "One. Two is here."
    assert clean_output("- fact one.\n- fact two\n- fact thr", truncated=True) == "- fact one.\n- fact two"
    assert clean_output("One. Two is here. Three is cut mid") == "One. Two is here. Three is cut mid"
    qa = "Question: A?\nAnswer: B.\n\nQuestion: C?\nAnswer: D.\n\nQuestion: E?"
    assert clean_output(qa, truncated=True) == "Question: A?\nAnswer: B.\n\nQuestion: C?\nAnswer: D."
    # a content sentence that starts like a preamble but is the only line is kept
    assert clean_output("Certainly the largest city is Paris.") == "Certainly the largest city is Paris."


def test_validate_output_reasons():
    lid = LanguageFilter(languages="all")
    src = ("The town library opened in 1905 and moved to a larger building in 1962. It holds about "
           "80,000 books and a local history archive, and it is open six days a week.")
    good = ("The town library was founded in 1905 and relocated to a larger building in 1962. Its "
            "collection comprises roughly 80,000 volumes together with an archive of local history.")
    kw = dict(expected_language="en", lid=lid)
    assert validate_output(src, good, "wikipedia", **kw) is None
    assert validate_output(src, "  ", "wikipedia", **kw) == "empty"
    assert validate_output(src, good, "wikipedia", finish_reason="length", **kw) == "truncated"
    assert validate_output(src, good, "wikipedia", finish_reason="length", allow_truncated=True, **kw) is None
    assert validate_output(src, "Sure, here it is. " + good, "wikipedia", **kw) == "preamble"
    assert validate_output(src, "A library.", "wikipedia", **kw) == "too_short"
    assert validate_output(src, good * 4, "wikipedia", **kw) == "too_long"
    assert validate_output(src, src.upper(), "wikipedia", **kw) == "copy"
    near = src.replace("about 80,000", "some 80,000").replace("six days", "6 days")
    assert validate_output(src, near, "wikipedia", **kw) == "copy"  # an echo with two words changed
    assert validate_output(src, near, "wikipedia", max_similarity=1.0, **kw) is None
    loop = "the library is open and the library is open and the library is open " * 3
    assert validate_output(src, loop, "wikipedia", **kw) == "repetitive"
    german = ("Die Stadtbibliothek wurde 1905 eröffnet und zog 1962 in ein größeres Gebäude um. Sie "
              "besitzt etwa 80.000 Bücher und ein Archiv zur Ortsgeschichte.")
    assert validate_output(src, german, "wikipedia", **kw) == "language_mismatch"
    assert validate_output(src, german, "wikipedia") is None  # no expected language: no check
    # the worked example of the prompt copied into the answer
    leak = good + " Deep watering about twice a week encourages deep roots."
    assert validate_output(src, leak, "extract_knowledge", **kw) == "example_leak"
    # invented content: most content words are not in the source
    invented = ("The library was built by the railway company, which also ran a theatre, a hospital "
                "and several schools for the children of its workers until the strike of 1931.")
    assert validate_output(src, invented, "wikipedia", min_support=0.5, **kw) == "unsupported"
    assert validate_output(src, good, "wikipedia", min_support=0.5, **kw) is None
    assert support(src, invented) < 0.3 < 0.6 < support(src, good)
    assert support(src, "The library holds 90,000 books.") < support(src, "The library holds 80,000 books.") == 1.0
    # condensed styles may be much shorter than the source
    assert validate_output(src, "Library: founded 1905, moved 1962, 80,000 books.", "distill", **kw) is None


def test_prompts_cover_every_style_and_end_with_the_label():
    for style in STYLES:
        p = build_prompt(style, "Some text.", "completions")
        assert p.text.endswith(p.label + "\n") and "Some text." in p.text and list(p.stop) == STOP
        assert not any(s in p.text.split("Some text.")[-1] for s in STOP)
        c = build_prompt(style, "Some text.", "chat")
        assert [m["role"] for m in c.messages] == ["system", "user"] and "Some text." in c.messages[1]["content"]
    assert completion_prompt("qa", "x") != completion_prompt("distill", "x")
    with pytest.raises(ValueError):
        build_prompt("poem", "x", "chat")


# ---------------------------------------------------------------------------- routing

def test_routing_is_deterministic_and_follows_buckets():
    cfg = RephraseConfig()
    ids = [f"doc-{i}" for i in range(4000)]
    low = [route(i, 3, cfg) for i in ids]
    assert all(r == ["wikipedia"] for r in low)
    high = [route(i, 15, cfg) for i in ids]
    assert all(len(r) == 1 and r[0] in cfg.high_styles for r in high)
    counts = Counter(r[0] for r in high)
    assert set(counts) == set(cfg.high_styles) and min(counts.values()) > 800  # ~1000 each
    assert [route(i, 15, cfg) for i in reversed(ids)] == high[::-1]  # order-independent
    assert route("x", 10, cfg)[0] in cfg.high_styles and route("x", 9, cfg) == ["wikipedia"]
    assert all(route(i, None, cfg) == ["wikipedia"] for i in ids[:100])
    assert route("x", 12, RephraseConfig(styles_per_document="all")) == list(cfg.high_styles)
    assert route("x", 12, RephraseConfig(high_styles=[])) == []
    # another seed permutes the style choice
    assert [route(i, 15, RephraseConfig(seed=1)) for i in ids[:200]] != high[:200]


def test_sampling_fraction_is_deterministic_by_id():
    ids = [f"doc-{i}" for i in range(10000)]
    cfg = RephraseConfig(fraction=0.3)
    picked = [i for i in ids if route(i, None, cfg)]
    assert 2800 < len(picked) < 3200
    assert picked == [i for i in ids if route(i, None, RephraseConfig(fraction=0.3))]
    # a larger fraction is a superset (same hash, higher cut)
    assert set(picked) <= {i for i in ids if route(i, None, RephraseConfig(fraction=0.5))}
    assert not any(route(i, None, RephraseConfig(fraction=0.0)) for i in ids[:500])


def test_config_validation_names_the_key():
    with pytest.raises(UserError, match="unknown config key \\[rephrase\\] 'temprature'"):
        RephraseConfig.from_dict({"temprature": 0.1})
    with pytest.raises(UserError, match="low_styles"):
        RephraseConfig(low_styles=["poem"])
    with pytest.raises(UserError, match="fraction"):
        RephraseConfig.from_dict({"fraction": 1.5})
    with pytest.raises(UserError, match="max_tokens must be int"):
        RephraseConfig.from_dict({"max_tokens": "many"})
    c = RephraseConfig.from_config({"rephrase": {"enabled": False, "low_styles": "distill", "fraction": 1}})
    assert c.low_styles == ("distill",) and c.fraction == 1


# ---------------------------------------------------------------------------- cache

def test_cache_key_depends_on_every_part():
    base = ("m", "wikipedia", PROMPT_VERSION, "completions", "text")
    keys = {cache_key(*base)}
    for i, alt in enumerate(("m2", "qa", PROMPT_VERSION + "x", "chat", "text ")):
        parts = list(base)
        parts[i] = alt
        keys.add(cache_key(*parts))
    assert len(keys) == 6
    assert cache_key(*base) == cache_key(*base) and len(cache_key(*base)) == 64


def test_request_cache_persists_in_wal_mode(tmp_path):
    path = tmp_path / "c" / "rephrase.sqlite"
    c = RequestCache(path)
    k = cache_key("m", "qa", PROMPT_VERSION, "chat", "abc")
    assert c.get(k) is None
    c.put(k, Generation("Question: a?\nAnswer: b.", 7, "stop"), model="m", style="qa", api="chat", text="abc")
    c.close()
    c2 = RequestCache(path)
    assert c2.get(k) == Generation("Question: a?\nAnswer: b.", 7, "stop") and len(c2) == 1
    c2.close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="bad.sqlite"):
        RequestCache(bad)


# ---------------------------------------------------------------------------- stage without a model

def _closed_port_cfg(url: str, **kw) -> RephraseConfig:
    base = dict(backend="openai", base_url=url, model="gemma-3-270m",
                max_retries=1, timeout_s=2.0, concurrency=2, max_segment_tokens=256)
    base.update(kw)
    return RephraseConfig(**base)


def test_server_down_documents_pass_through_counted(tmp_path, docs, write_final, closed_port_url):
    sel = sorted(docs, key=lambda d: len(d["text"]))[:4]  # short documents: few segments, fast
    write_final(tmp_path, sel, buckets=[2, 5, 12, 18])
    cfg = _closed_port_cfg(closed_port_url, max_consecutive_failures=0, max_segment_tokens=128)
    stats = run_rephrase(tmp_path, cfg)
    table = pq.read_table(tmp_path / "rephrased" / "part-0.parquet")
    assert table.column("id").to_pylist() == [d["id"] for d in sel]
    assert table.column("text").to_pylist() == [d["text"] for d in sel]
    assert table.column("synthetic_style").null_count == 4 and table.column("parent_id").null_count == 4
    assert "quality_bucket" in table.column_names
    assert stats["rephrase_failed"] == 4 and stats["synthetic_documents"] == 0
    assert stats["requests_failed"] == stats["segments"] > 4 and stats["requests_ok"] == 0
    assert stats["request_errors"] and stats["documents_out"] == 4
    on_disk = json.loads((tmp_path / "stats" / "rephrase.json").read_text())
    assert on_disk["rephrase_failed"] == 4 and on_disk["by_style"]["wikipedia"]["failed"] == 2


def test_circuit_breaker_stops_asking_a_dead_server(tmp_path, docs, write_final, closed_port_url):
    write_final(tmp_path, docs[:6])
    stats = run_rephrase(tmp_path, _closed_port_cfg(closed_port_url, max_consecutive_failures=2, concurrency=1))
    assert stats["rephrase_failed"] == 6
    assert stats["requests_failed"] == 2
    assert stats["requests_skipped_server_down"] == stats["segments"] - 2


def test_cached_answers_are_used_without_a_server(tmp_path, docs, write_final, closed_port_url):
    """Resume: answers in the cache are reused (here the server does not even exist)."""
    d = dict(docs[1])
    d["text"] = ("The town library opened in 1905 and moved to a larger building in 1962.\n"
                 "It holds about 80,000 books and a local history archive.")
    write_final(tmp_path, [d, docs[2]], buckets=[3, 3])
    cfg = _closed_port_cfg(closed_port_url, fraction=1.0, keep_originals=False, max_consecutive_failures=1)
    answer = ("Encyclopedia version:\nThe town library was founded in 1905 and relocated to a larger building "
              "in 1962.\nIts collection comprises roughly 80,000 volumes and an archive of local history.")
    cache = RequestCache(tmp_path / "cache" / "rephrase.sqlite")
    [seg] = split_segments(d["text"], cfg.max_segment_tokens)
    cache.put(cache_key(cfg.model, "wikipedia", PROMPT_VERSION, cfg.api, seg), Generation(answer, 40, "stop"))
    cache.close()
    stats = run_rephrase(tmp_path, cfg)
    t = pq.read_table(tmp_path / "rephrased" / "part-0.parquet").to_pylist()
    # the original of the rephrased doc is replaced; the failed one passes through
    assert [r["id"] for r in t] == [synthetic_id(d["id"], "wikipedia"), docs[2]["id"]]
    syn = t[0]
    assert syn["text"].startswith("The town library was founded in 1905") and "Encyclopedia" not in syn["text"]
    assert (syn["synthetic_style"], syn["parent_id"], syn["synthetic_model"]) == ("wikipedia", d["id"], "gemma-3-270m")
    assert syn["url"] == d["url"] and syn["quality_bucket"] == 3 and syn["language"] == "en"
    assert t[1]["parent_id"] is None and t[1]["text"] == docs[2]["text"]
    assert stats["cache_hits"] == 1 and stats["synthetic_documents"] == 1 and stats["rephrase_failed"] == 1
    assert stats["by_style"]["wikipedia"] == {"requested": 2, "rephrased": 1, "rejected": 0, "failed": 1}
    # rephrasing the output again leaves synthetic rows alone
    stats2 = run_rephrase(tmp_path, cfg, input_subdir="rephrased", output_subdir="again")
    assert stats2["documents_sampled"] == 1


def test_missing_input_is_a_one_line_user_error(tmp_path):
    (tmp_path / "final").mkdir()
    r = subprocess.run([sys.executable, "-c", "from webmill.curate.cli import main; main()", "rephrase",
                        str(tmp_path), "--backend", "openai", "--model", "m"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: no Parquet files in") and len(r.stderr.strip().splitlines()) == 1


def test_table_without_text_column_names_the_file(tmp_path, closed_port_url):
    import pyarrow as pa

    (tmp_path / "final").mkdir()
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "final" / "x.parquet")
    with pytest.raises(UserError, match="x.parquet: no 'text' column"):
        run_rephrase(tmp_path, _closed_port_cfg(closed_port_url))
