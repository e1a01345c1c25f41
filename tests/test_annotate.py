"""``curate annotate``: rubric answers, sampling, config, prompts, and runs over real documents.

Fast tests need no model: answer parsing, sampling over the real ids/domains of the bundled
25-document WET file, config errors, prompt contents, and the stage's plumbing (rows, stats, cache,
failures, stale files) against real HTTP: the ``openai_server`` fixture (a stdlib HTTP server
speaking the OpenAI JSON, answering a chat request with the document's sentences in reverse
order, so a document whose first sentence is ``Score: N.`` is answered with a last ``Score: N``)
and a closed port. The slow tests run the real Gemma 3 270M GGUF in-process (llama_cpp backend)
and behind llama-cpp-python's OpenAI-compatible server (openai backend).
"""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from webmill.config import load_config
from webmill.curate.annotate import (
    ANNOTATION_SCHEMA, EDU_RUBRIC, RUBRIC_VERSION, AnnotateConfig, build_prompt, load_rubric, parse_answer,
    parse_score, pick, run_annotate, sample_documents, sample_key, truncate,
)
from webmill.errors import UserError
from webmill.storage import Storage


def _domain(url: str) -> str:
    return url.split("/")[2]


# ---------------------------------------------------------------------------- answers

@pytest.mark.parametrize("answer,score", [
    ("Score: 4", 4), ("score 4/5", 4), ("**Score:** 3", 3), ("Educational score: 2", 2),
    ("The page explains photosynthesis clearly.\n\nScore: 5", 5), ("It scores 3 points.", 3),
    ("Total score = 0.", 0), ("4", 4), ("**4/5**", 4),
    # the last explicit mention wins
    ("Criterion 1 gives score 1, so far.\nAfter all criteria: Score: 3", 3), ("Score: 5\nOn reflection, score: 2", 2),
])
def test_parse_score_chat(answer, score):
    assert parse_answer(answer, "chat") == (score, None)
    assert parse_score(answer) == score


@pytest.mark.parametrize("answer,error", [
    ("Score: 7", "out_of_range"), ("score: -1", "out_of_range"), ("Score: 3.5", "out_of_range"),
    ("score 8/10", "out_of_range"), ("Score: 2\nfinal score: 6", "out_of_range"),
    ("", "unparseable"), ("The page is an advert.", "unparseable"), ("Score: N", "unparseable"),
    ("1. The page holds some knowledge.", "unparseable"),  # a list item is no score in a chat answer
])
def test_parse_score_chat_errors(answer, error):
    assert parse_answer(answer, "chat") == (None, error)
    assert parse_score(answer) is None


def test_parse_score_completions():
    assert [parse_score(a, "completions") for a in (" 3", "2 points", " 0\n", " 4/5", " 1.")] == [3, 2, 0, 4, 1]
    assert parse_answer(" 9", "completions") == (None, "out_of_range")
    assert parse_answer(" The page", "completions") == (None, "unparseable")
    assert parse_answer(" 2\nPage: more Score: 5", "completions") == (5, None)  # explicit mention wins


# ---------------------------------------------------------------------------- sampling

@pytest.fixture(scope="module")
def ids_domains(wet_documents):
    return [d["id"] for d in wet_documents], [_domain(d["url"]) for d in wet_documents]


def _chosen_ids(files, **kw) -> list[str]:
    s = sample_documents(files, **kw)
    by_name = {name: ids for name, ids, _, _ in files}
    return sorted(by_name[name][r] for name, rows in s.rows.items() for r in rows)


def _split(ids, domains, cuts):
    files, start = [], 0
    for i, end in enumerate(cuts + [len(ids)]):
        files.append((f"part-{i}.parquet", ids[start:end], domains[start:end], [True] * (end - start)))
        start = end
    return files


def test_sampling_is_deterministic_and_independent_of_the_file_split(ids_domains):
    ids, domains = ids_domains
    one = _split(ids, domains, [])
    three = _split(ids, domains, [4, 17])
    rev = [(f"r{i}", list(reversed(x[1])), list(reversed(x[2])), x[3]) for i, x in enumerate(three)]
    for kw in (dict(n=7), dict(fraction=0.5), dict(n=10, stratify="domain"), dict(n=5, fraction=0.6, seed=3)):
        a = _chosen_ids(one, **kw)
        assert a == _chosen_ids(one, **kw) == _chosen_ids(three, **kw) == _chosen_ids(rev, **kw), kw
    # n: exactly the n smallest keys; a larger n contains the smaller sample; the seed changes it
    keys = sorted((sample_key(i, 0), i) for i in ids)
    assert _chosen_ids(one, n=7) == sorted(i for _, i in keys[:7])
    assert set(_chosen_ids(one, n=4)) < set(_chosen_ids(one, n=9))
    assert _chosen_ids(one, n=7, seed=1) != _chosen_ids(one, n=7)


def test_sampling_fraction_and_empty_texts(ids_domains):
    ids, domains = ids_domains
    many = [f"{i}#{k}" for i in ids for k in range(200)]  # 5000 ids
    files = [("a", many, [""] * len(many), [True] * len(many))]
    for frac in (0.1, 0.5):
        s = sample_documents(files, fraction=frac)
        assert abs(s.sampled / len(many) - frac) < 0.03, (frac, s.sampled)
    assert set(_chosen_ids(files, fraction=0.1)) < set(_chosen_ids(files, fraction=0.5))
    assert sample_documents(files, fraction=0.0).sampled == 0
    has_text = [i % 3 != 0 for i in range(len(ids))]
    s = sample_documents([("a", ids, domains, has_text)])
    assert (s.documents_in, s.empty, s.sampled) == (25, 9, 16)
    assert all(has_text[r] for r in s.rows["a"])


def test_stratify_by_domain_covers_the_domains(ids_domains):
    ids, domains = ids_domains
    n_domains = len(set(domains))  # 15 domains; biomedsearch.com holds 5 documents, cdc.gov 4
    files = _split(ids, domains, [])
    for n in (5, n_domains, 20):
        s = sample_documents(files, n=n, stratify="domain")
        assert s.sampled == n and s.domains == min(n, n_domains), (n, s.domains)
    plain = sample_documents(files, n=n_domains)
    assert plain.domains < n_domains  # hash order alone repeats domains
    # round-robin: no domain gets a second document before every domain has one
    order = pick([sample_key(i) for i in ids], domains, n=0, stratify="domain")
    assert len({domains[i] for i in order[:n_domains]}) == n_domains
    with pytest.raises(ValueError):
        pick([1, 2], None, n=1, stratify="domain")


# ---------------------------------------------------------------------------- config

def test_config_errors_name_the_key():
    assert AnnotateConfig().token_limit == 4 and AnnotateConfig(api="chat").token_limit == 300
    for table, key in (({"bogus": 1}, "'bogus'"), ({"n": "ten"}, "n must be int"), ({"n": -1}, "n: must be >= 0"),
                       ({"fraction": 1.5}, "fraction"), ({"stratify": "url"}, "stratify"), ({"api": "json"}, "api"),
                       ({"backend": "openai"}, "model"), ({"max_doc_chars": 10}, "max_doc_chars"),
                       ({"concurrency": 0}, "concurrency"), ({"temperature": True}, "temperature")):
        with pytest.raises(UserError, match=r"\[annotate\]") as e:
            AnnotateConfig.from_dict(table)
        assert key in str(e.value), (table, str(e.value))
    # the pipeline config knows the table (registered class section): unknown keys and bad types fail there too
    assert load_config(overrides={"annotate": {"n": 5, "stratify": "domain"}})["annotate"]["n"] == 5
    with pytest.raises(UserError, match=r"\[annotate\] 'bogus'"):
        load_config(overrides={"annotate": {"bogus": 1}})
    with pytest.raises(UserError, match=r"\[annotate\] n must be int"):
        load_config(overrides={"annotate": {"n": "x"}})


# ---------------------------------------------------------------------------- prompts

def test_prompts_hold_the_rubric_and_the_truncated_document(wet_documents, tmp_path):
    text = max(wet_documents, key=lambda d: len(d["text"]))["text"]  # 57k characters
    doc = truncate(text, 1500)
    assert 750 < len(doc) <= 1500 and text.strip().startswith(doc) and not doc[-1].isspace()
    edu = load_rubric("edu")
    chat = build_prompt(edu, doc, "chat")
    system, user = chat.messages
    assert system["role"] == "system" and user["role"] == "user"
    assert EDU_RUBRIC in user["content"] and user["content"].endswith(doc) and "Score: N" in user["content"]
    comp = build_prompt(edu, doc, "completions")
    assert comp.text.endswith(f"Page:\n{doc}\nScore:") and "\n" in comp.stop
    assert comp.text.count("\nScore: ") == 3  # the worked examples
    assert edu.prompt_version == f"{RUBRIC_VERSION}+{edu.sha[:12]}" and edu.style == "annotate:edu"
    # a user rubric replaces the criteria; the answer format stays webmill's
    path = tmp_path / "news-value.md"
    path.write_text("# News value\nOne point per criterion: dated, sourced, local, factual, complete.\n")
    mine = load_rubric(str(path))
    assert mine.name == "news-value" and mine.sha != edu.sha and mine.prompt_version != edu.prompt_version
    user = build_prompt(mine, doc, "chat").messages[1]["content"]
    assert "# News value" in user and EDU_RUBRIC not in user and "Score: N" in user
    comp = build_prompt(mine, doc, "completions").text
    assert comp.startswith("# News value") and comp.endswith(f"{doc}\nScore (0-5):")
    for bad in (tmp_path / "missing.md", tmp_path / "empty.md"):
        if bad.name == "empty.md":
            bad.write_text("  \n")
        with pytest.raises(UserError, match=r"\[annotate\] rubric"):
            load_rubric(str(bad))


# ---------------------------------------------------------------------------- the stage over HTTP (fast)

def _scored_docs(wet_documents) -> tuple[list[dict], dict]:
    """The 25 WET documents, most with a first sentence ``Score: N.``; expected (score, error) by id."""
    docs, expected = [], {}
    for i, d in enumerate(wet_documents):
        if i % 8 == 7:
            d = dict(d, text=f"Score: 9. {d['text']}")
            expected[d["id"]] = (None, "out_of_range")
        elif i == 16:
            d = dict(d, text="   \n")  # empty: not sampled
        elif i not in (0, 11, 12, 14):  # left without a score sentence
            k = 19 % 6 if i in (20, 21) else i % 6  # cdc.gov 19-21: one text, so two duplicates
            d = dict(d, text=f"Score: {k}. {d['text']}")
            expected[d["id"]] = (k, None)
        docs.append(d)
    return docs, expected


def _http_cfg(server, **kw) -> AnnotateConfig:
    base = dict(backend="openai", base_url=server.base_url, model=server.model, api="chat", max_retries=0,
                timeout_s=30.0, concurrency=1, max_doc_chars=400)
    return AnnotateConfig(**{**base, **kw})


def test_run_over_http_rows_stats_cache_and_failures(tmp_path, wet_documents, write_final, openai_server):
    out = Storage(tmp_path / "out")
    docs, expected = _scored_docs(wet_documents)
    write_final(out, docs[:12], name="a.parquet")
    write_final(out, docs[12:], name="b.parquet")
    out.write_parquet("annotations/old.parquet", pq.read_table(out.path("final/a.parquet")))  # stale
    openai_server.fail = {3: (500, {})}  # the third request fails (no retry)
    s = run_annotate(out, _http_cfg(openai_server))
    assert out.list("annotations") == ["a.parquet", "b.parquet"]
    rows = [r for name in ("a.parquet", "b.parquet") for r in out.read_parquet(f"annotations/{name}").to_pylist()]
    assert out.read_parquet("annotations/a.parquet").schema.equals(ANNOTATION_SCHEMA)
    assert s["documents_in"] == 25 and s["empty"] == 1 and s["sampled"] == len(rows) == 24
    assert [r["id"] for r in rows] == [d["id"] for d in docs if d["text"].strip()]  # input order
    failed = [r for r in rows if r["error"] == "InternalServerError"]
    assert len(failed) == 1 and failed[0]["score"] is None and failed[0]["answer"] is None
    by_id = {r["id"]: r for r in rows}
    for doc_id, (score, error) in expected.items():
        if by_id[doc_id]["error"] != "InternalServerError":
            assert (by_id[doc_id]["score"], by_id[doc_id]["error"]) == (score, error), by_id[doc_id]["answer"]
    for r in rows:
        assert r["text"] == next(d["text"] for d in docs if d["id"] == r["id"])  # the full text
        assert (r["rubric"], r["model"], r["rubric_sha"]) == ("edu", openai_server.model, load_rubric("edu").sha)
        assert r["score"] is None or 0 <= r["score"] <= 5
        assert (r["score"] is None) == (r["error"] is not None)
    # stats add up and match the rows
    hist = Counter(str(r["score"]) for r in rows if r["score"] is not None)
    assert s["score_histogram"] == {str(k): hist.get(str(k), 0) for k in range(6)}
    assert s["annotated"] == sum(hist.values())
    assert s["annotated"] + s["failed"] + s["unparseable"] + s["out_of_range"] == s["sampled"]
    assert s["out_of_range"] == sum(r["error"] == "out_of_range" for r in rows) >= 2
    assert s["failed"] == s["requests_failed"] == 1 and s["request_errors"] == {"InternalServerError": 1}
    assert s["requests_ok"] + s["requests_failed"] + s["cache_hits"] + s["duplicate_texts"] == 24
    assert s["duplicate_texts"] == 2  # three cdc.gov pages with the same text
    assert s["requests_ok"] == len(openai_server.log) - 1 == 21
    assert json.loads(out.read_text("stats/annotate.json")) == s
    assert out.isfile("cache/annotate.sqlite")

    # rerun: answers come from the cache; only the failed document is asked again
    before = {n: out.read_bytes(f"annotations/{n}") for n in ("a.parquet", "b.parquet")}
    n_log = len(openai_server.log)
    again = run_annotate(out, _http_cfg(openai_server))
    assert again["requests_ok"] == 1 and again["cache_hits"] == 21 and len(openai_server.log) == n_log + 1
    assert again["failed"] == 0 and again["annotated"] == s["annotated"] + (failed[0]["id"] in expected
                                                                            and expected[failed[0]["id"]][1] is None)
    third = run_annotate(out, _http_cfg(openai_server))
    assert third["requests_ok"] == 0 and third["cache_hits"] == 22 and len(openai_server.log) == n_log + 1
    after = {n: out.read_bytes(f"annotations/{n}") for n in ("a.parquet", "b.parquet")}
    assert after != before  # the failed row was filled in
    run_annotate(out, _http_cfg(openai_server))
    assert {n: out.read_bytes(f"annotations/{n}") for n in after} == after  # identical bytes from the cache


def test_user_rubric_sampling_and_input_choice(tmp_path, wet_documents, write_final, openai_server):
    out = Storage(tmp_path / "out")
    docs, _ = _scored_docs(wet_documents)
    write_final(out, docs)
    tbl = out.read_parquet("final/part-0.parquet")
    out.write_parquet("documents/part-0.parquet", tbl)
    with pytest.raises(UserError, match="no document tables"):
        run_annotate(tmp_path / "empty", _http_cfg(openai_server))
    rubric = tmp_path / "plain-facts.txt"
    rubric.write_text("Give one point per verifiable fact, at most five.")
    s = run_annotate(out, _http_cfg(openai_server, rubric=str(rubric), n=6, stratify="domain"),
                     input_subdir="documents", output_subdir="ann-facts")
    rows = out.read_parquet("ann-facts/part-0.parquet").to_pylist()
    assert s["input"] == "documents" and s["sampled"] == len(rows) == 6 and s["domains"] == 6
    assert len({r["domain"] for r in rows}) == 6 and {r["rubric"] for r in rows} == {"plain-facts"}
    assert all("Give one point per verifiable fact" in e["body"]["messages"][1]["content"] for e in openai_server.log)
    assert s["prompt_version"] != load_rubric("edu").prompt_version
    # the default input is OUT/final (preferred over documents/)
    assert run_annotate(out, _http_cfg(openai_server, n=2))["input"] == "final"


def test_closed_port_every_row_has_an_error(tmp_path, wet_documents, write_final, closed_port_url):
    out = tmp_path / "out"
    write_final(out, wet_documents)
    cfg = AnnotateConfig(backend="openai", base_url=closed_port_url, model="m", api="completions", max_retries=0,
                         timeout_s=5.0, max_consecutive_failures=5, n=12)
    s = run_annotate(out, cfg)
    rows = pq.read_table(out / "annotations" / "part-0.parquet").to_pylist()
    assert len(rows) == s["sampled"] == 12 and all(r["score"] is None and r["error"] for r in rows)
    assert s["failed"] == 12 and s["annotated"] == 0 and s["requests_ok"] == 0
    assert s["request_errors"] == {"APIConnectionError": s["requests_failed"]}
    # after 5 failures in a row no more requests: the rest are marked circuit_open (concurrency 4 may
    # have a few more in flight)
    assert 5 <= s["requests_failed"] < 12
    assert s["requests_failed"] + s["requests_skipped_server_down"] + s["duplicate_texts"] == 12
    assert Counter(r["error"] for r in rows)["circuit_open"] >= s["requests_skipped_server_down"] > 0


def test_cli_and_url_output(tmp_path, wet_documents, write_final, openai_server, monkeypatch):
    from typer.testing import CliRunner

    from webmill.curate.cli import app

    docs, expected = _scored_docs(wet_documents)
    monkeypatch.setenv("WEBMILL_CACHE", str(tmp_path / "cache"))
    out = Storage(f"memory://annotate-{tmp_path.name}/out")  # OUT on another filesystem: cache stays local
    write_final(out, docs)
    config = tmp_path / "annotate.toml"
    config.write_text(f'[annotate]\nbackend = "openai"\nbase_url = "{openai_server.base_url}"\n'
                      f'model = "{openai_server.model}"\napi = "completions"\nn = 3\n')
    args = ["annotate", out.uri(), "-c", str(config), "--api", "chat", "--n", "4", "--max-doc-chars", "300"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "4 of 25 documents" in res.output and "scores 0:" in res.output and "requests 4" in res.output
    rows = out.read_parquet("annotations/part-0.parquet").to_pylist()
    assert len(rows) == 4 and all(r["score"] == expected.get(r["id"], (r["score"],))[0] for r in rows)
    assert all(e["path"] == "/v1/chat/completions" for e in openai_server.log)  # the option won over the file
    assert out.read_json("stats/annotate.json")["config"]["max_doc_chars"] == 300
    assert len(list((tmp_path / "cache" / "annotate").glob("*.sqlite"))) == 1
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "cache hits 4, requests 0" in res.output, res.output


# ---------------------------------------------------------------------------- real model (slow)

def _check_real_run(out, s: dict, n: int) -> list[dict]:
    rows = pq.read_table(out / "annotations" / "part-0.parquet").to_pylist()
    assert len(rows) == s["sampled"] == n
    for r in rows:
        assert (r["score"] is not None and 0 <= r["score"] <= 5 and r["error"] is None) or \
            (r["score"] is None and r["error"] in ("unparseable", "out_of_range")), r
    assert s["annotated"] + s["failed"] + s["unparseable"] + s["out_of_range"] == n and s["failed"] == 0
    assert sum(s["score_histogram"].values()) == s["annotated"] == sum(r["score"] is not None for r in rows)
    assert s["requests_ok"] + s["cache_hits"] + s["duplicate_texts"] == n and s["cache_hits"] == 0
    return rows


@pytest.mark.slow
def test_gemma_llama_cpp_annotates_and_reruns_from_the_cache(tmp_path, wet_documents, write_final, gguf_model):
    out = tmp_path / "out"
    write_final(out, wet_documents)
    cfg = AnnotateConfig(model_path=str(gguf_model), api="completions", n=20, stratify="domain", max_doc_chars=1500)
    s = run_annotate(out, cfg)
    rows = _check_real_run(out, s, 20)
    assert s["model"] == gguf_model.name == rows[0]["model"]
    assert s["domains"] == len({_domain(d["url"]) for d in wet_documents}) == 15  # stratified: all covered
    assert s["annotated"] >= 16, s  # the few-shot prompt gets a digit out of the base model
    print("gemma llama_cpp:", s["score_histogram"], f"{s['seconds_per_request']} s/request", f"{s['seconds']} s")
    data = (out / "annotations" / "part-0.parquet").read_bytes()
    again = run_annotate(out, cfg)
    assert again["requests_ok"] == 0 and again["cache_hits"] == s["requests_ok"]
    assert again["score_histogram"] == s["score_histogram"]
    assert (out / "annotations" / "part-0.parquet").read_bytes() == data


@pytest.mark.slow
def test_gemma_behind_an_openai_server(tmp_path, wet_documents, write_final, gguf_model, llama_server):
    out = tmp_path / "out"
    write_final(out, wet_documents)
    with llama_server(gguf_model) as (base_url, _proc):
        cfg = AnnotateConfig(backend="openai", base_url=base_url, model="gemma-3-270m", api="completions", n=6,
                             max_doc_chars=1500, concurrency=2, timeout_s=120.0)
        s = run_annotate(out, cfg)
        _check_real_run(out, s, 6)
        assert s["model"] == "gemma-3-270m" and s["annotated"] >= 4, s
        again = run_annotate(out, cfg)
    assert again["requests_ok"] == 0 and again["cache_hits"] == s["requests_ok"]
