"""Fast test of the OpenAI-compatible rephrasing backend over real HTTP.

webmill's ``openai`` backend (the official ``openai`` client) talks to a real HTTP server on
127.0.0.1 (``openai_server`` in ``tests/fixtures_llm.py``: stdlib ``http.server`` speaking the
OpenAI completions and chat-completions JSON, answering each document's sentences in reverse
order — deterministic text, no model). The input is a real run: the per-document stages over
``examples/warc``'s 25-document WET file (4 documents kept). Covered: completions and chat, a
500 answered by a retry, a 429 with ``Retry-After`` honoured, unknown model → UserError, resume
from the request cache, and the dataset report built from the run's real ``stats/rephrase.json``.
The slow tests against a real model are in ``tests/test_rephrase_server.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest

from webmill.config import load_config
from webmill.curate.documents import FileProcessor
from webmill.curate.rephrase import RephraseConfig, run_rephrase, segment_encoder, split_segments, synthetic_id
from webmill.errors import UserError

STEM = "cc_CC-MAIN-2016-50_wet-25docs"


@pytest.fixture(scope="module")
def documents_run(tmp_path_factory, wet_path):
    """OUT of the real per-document stages (no Ray) over the 25-document WET file."""
    out = tmp_path_factory.mktemp("rephrase-http") / "out"
    proc = FileProcessor(load_config(None), out)
    try:
        stats = proc.process(str(wet_path))
    finally:
        proc.close()
    assert stats["records"] == 26 and stats["kept"] == 4
    return out


@pytest.fixture
def out(documents_run, tmp_path):
    dst = tmp_path / "out"
    shutil.copytree(documents_run, dst)
    return dst


def _cfg(server, **kw) -> RephraseConfig:
    base = dict(backend="openai", base_url=server.base_url, model=server.model, max_retries=2, timeout_s=30.0,
                max_segment_tokens=512)
    base.update(kw)
    return RephraseConfig(**base)


def _check_output(rows: list[dict], docs: list[dict], stats: dict, server, enc, max_segment_tokens: int):
    """Originals kept in order, each synthetic row right after its parent, made of the server's
    answers for the parent's segments (in order; rejected segments left out)."""
    originals = [r for r in rows if r["parent_id"] is None]
    assert [(r["id"], r["text"]) for r in originals] == [(d["id"], d["text"]) for d in docs]
    parent = None
    kept = 0
    for r in rows:
        if r["parent_id"] is None:
            parent = r
            continue
        assert r["parent_id"] == parent["id"] and r["id"] == synthetic_id(parent["id"], r["synthetic_style"])
        assert r["synthetic_model"] == server.model and r["url"] == parent["url"]
        answers = [server.answer_for(s) for s in split_segments(parent["text"], max_segment_tokens, enc)]
        paragraphs = r["text"].split("\n\n")
        it = iter(answers)
        assert all(p in it for p in paragraphs), "synthetic text is not the server's answers in order"
        kept += len(paragraphs)
    assert len(rows) - len(originals) == stats["synthetic_documents"]
    assert kept == stats["segments_kept"]


def test_completions_with_500_and_429_retries_then_report(out, openai_server):
    enc = segment_encoder()
    openai_server.fail = {1: (500, {}), 3: (429, {"Retry-After": "1"})}
    s = run_rephrase(out, _cfg(openai_server, api="completions", concurrency=1),
                     input_subdir="documents", output_subdir="rephrased")
    log = openai_server.log
    docs = pq.read_table(out / "documents" / f"{STEM}.parquet").to_pylist()
    n_segments = sum(len(split_segments(d["text"], 512, enc)) for d in docs)

    # server side: every segment asked once, plus one retry after the 500 and one after the 429
    assert len(log) == n_segments + 2 and {e["path"] for e in log} == {"/v1/completions"}
    assert [e["status"] for e in log[:4]] == [500, 200, 429, 200]
    assert all(e["status"] == 200 and e["retry_count"] == 0 for e in log[4:])
    assert log[1]["key"] == log[0]["key"] and log[1]["retry_count"] == 1  # the 500 was retried
    assert log[3]["key"] == log[2]["key"] and log[3]["retry_count"] == 1  # the 429 was retried
    assert log[1]["t"] - log[0]["t"] >= 0.3  # client backoff: 0.5 s minus up to 25% jitter
    assert log[3]["t"] - log[2]["t"] >= 0.95  # Retry-After: 1 honoured (backoff alone is < 0.5 s)
    assert len({e["key"] for e in log}) == n_segments
    body = log[4]["body"]
    assert body["model"] == openai_server.model and "Web text:" in body["prompt"] and body["stop"]

    # stage statistics: the retries are invisible to the stage, nothing failed
    assert s["backend"] == "openai" and s["api"] == "completions" and s["model"] == openai_server.model
    assert s["segments"] == s["requests_ok"] == n_segments and s["requests_failed"] == 0
    assert s["request_errors"] == {} and s["cache_hits"] == 0 and s["rephrase_failed"] == 0
    assert s["generated_tokens"] == sum(e["completion_tokens"] for e in log if e["status"] == 200)
    assert s["documents_in"] == s["documents_sampled"] == 4
    assert s["by_style"] == {"wikipedia": {"requested": 4, "rephrased": s["synthetic_documents"],
                                           "rejected": s["rephrase_rejected"], "failed": 0}}
    assert s["synthetic_documents"] + s["rephrase_rejected"] == 4 and s["synthetic_documents"] >= 3
    assert s["segments"] - s["segments_kept"] == sum(s["rejected_segments"].values())
    assert s["documents_out"] == 4 + s["synthetic_documents"]
    assert json.loads((out / "stats" / "rephrase.json").read_text()) == s
    rows = pq.read_table(out / "rephrased" / f"{STEM}.parquet").to_pylist()
    _check_output(rows, docs, s, openai_server, enc, 512)

    # the report of this run reads the real stats/rephrase.json
    from webmill.curate.report import write_report

    page = write_report(out).read_text()
    rep = json.loads((out / "report" / "stats.json").read_text())
    rp = rep["rephrase"]
    assert rp["source"] == "stats/rephrase.json" and rp["by_style"] == s["by_style"]
    for k in ("documents_in", "documents_out", "synthetic_documents", "rephrase_failed", "rephrase_rejected",
              "backend", "model", "generated_tokens"):
        assert rp[k] == s[k], k
    [row] = [r for r in rep["funnel"] if r["stage"] == "rephrase"]
    assert (row["documents_in"], row["documents_out"], row["added"]) == (4, s["documents_out"], s["synthetic_documents"])
    assert "rephrase" not in rep["skipped"] and "rephrase.png" in rep["plots"]
    section = page.split('id="rephrase"', 1)[1].split("<h2", 1)[0]
    text = " ".join(re.sub(r"<[^>]+>", " ", section).split())
    assert f"backend openai, model {openai_server.model}, documents_in 4" in text
    assert f"generated_tokens {s['generated_tokens']:,}" in text
    assert f"wikipedia 4 {s['synthetic_documents']} {s['rephrase_rejected']} 0" in text

    # resume: the same run again is answered from the request cache, without a request
    n = len(log)
    again = run_rephrase(out, _cfg(openai_server, api="completions"), input_subdir="documents",
                         output_subdir="rephrased")
    assert len(openai_server.log) == n
    assert again["cache_hits"] == n_segments and again["requests_ok"] == 0 and again["generated_tokens"] == 0
    assert pq.read_table(out / "rephrased" / f"{STEM}.parquet").to_pylist() == rows


def test_chat_api_routes_buckets_to_styles(tmp_path, openai_server, prose_documents, write_final):
    enc = segment_encoder()
    docs = prose_documents
    write_final(tmp_path, docs, buckets=[2, 14, 17])
    s = run_rephrase(tmp_path, _cfg(openai_server, api="chat", concurrency=3, styles_per_document="all",
                                    cache_path=str(tmp_path / "chat-cache.sqlite")))
    log = openai_server.log
    assert len(log) == 1 + 4 + 4 and all(e["status"] == 200 for e in log)
    assert {e["path"] for e in log} == {"/v1/chat/completions"}
    assert all([m["role"] for m in e["body"]["messages"]] == ["system", "user"] for e in log)
    assert (tmp_path / "chat-cache.sqlite").is_file() and not (tmp_path / "cache").exists()
    assert s["api"] == "chat" and s["requests_ok"] == s["segments"] == 9 and s["rephrase_failed"] == 0
    assert {k: v["requested"] for k, v in s["by_style"].items()} == {
        "wikipedia": 1, "qa": 2, "distill": 2, "extract_knowledge": 2, "knowledge_list": 2}
    assert Counter(e["key"] for e in log) == Counter(
        {k: 1 if i == 0 else 4 for i, d in enumerate(docs) for k in [_key(d["text"])]})
    rows = pq.read_table(tmp_path / "rephrased" / "part-0.parquet").to_pylist()
    _check_output(rows, docs, s, openai_server, enc, 512)
    assert s["synthetic_documents"] == sum(v["rephrased"] for v in s["by_style"].values()) >= 1


def _key(text: str) -> str:
    return hashlib.sha1(text.strip().encode("utf-8")).hexdigest()


def test_unknown_model_is_a_user_error(tmp_path, openai_server, prose_documents, write_final):
    write_final(tmp_path, prose_documents[:1])
    with pytest.raises(UserError, match="model 'no-such-model'.*not found"):
        run_rephrase(tmp_path, _cfg(openai_server, model="no-such-model"))
    assert [e["status"] for e in openai_server.log] == [404]  # a 404 is not retried


def test_out_on_an_fsspec_filesystem(tmp_path, monkeypatch, openai_server, prose_documents, write_final):
    """OUT on fsspec's in-memory filesystem: inputs, outputs and stats go through the storage
    layer; the sqlite cache, which needs a local file, lives under $WEBMILL_CACHE/rephrase/."""
    from webmill.curate.rephrase import default_cache_path
    from webmill.storage import Storage

    monkeypatch.setenv("WEBMILL_CACHE", str(tmp_path / "cache-home"))
    url = f"memory://webmill-test/{tmp_path.name}/out"
    st = Storage(url)
    try:
        write_final(st, prose_documents)
        s = run_rephrase(url, _cfg(openai_server))
        assert s["requests_ok"] == s["segments"] == 3 and s["rephrase_failed"] == 0
        assert st.list("rephrased") == ["part-0.parquet"] and st.read_json("stats/rephrase.json") == s
        rows = st.read_parquet("rephrased/part-0.parquet").to_pylist()
        _check_output(rows, prose_documents, s, openai_server, segment_encoder(), 512)
        cache = default_cache_path(url)
        assert cache.parent == tmp_path / "cache-home" / "rephrase" and cache.is_file()
        assert default_cache_path(tmp_path / "local") == tmp_path / "local" / "cache" / "rephrase.sqlite"
        assert not [p for p in tmp_path.rglob("*") if "memory" in p.name or "webmill-test" in p.name]
        again = run_rephrase(st, _cfg(openai_server))  # a Storage works too; answered from the cache
        assert again["cache_hits"] == 3 and len(openai_server.log) == 3
        with pytest.raises(UserError, match="cache_path"):
            run_rephrase(url, _cfg(openai_server, cache_path="memory://elsewhere/c.sqlite"))
    finally:
        st.remove_tree("")


def test_curate_rephrase_command(tmp_path, openai_server, prose_documents, write_final):
    """`curate rephrase` (in-process) against the server: options override the config file."""
    from typer.testing import CliRunner

    from webmill.curate.cli import app

    write_final(tmp_path, prose_documents)
    cfg = tmp_path / "r.toml"
    cfg.write_text('[rephrase]\nbackend = "openai"\nmodel = "no-such-model"\nmax_retries = 0\nconcurrency = 1\n')
    r = CliRunner().invoke(app, ["rephrase", str(tmp_path), "-c", str(cfg), "--base-url", openai_server.base_url,
                                 "--model", openai_server.model, "--api", "chat", "--replace-originals"])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "stats" / "rephrase.json").read_text())
    assert (s["model"], s["api"], s["config"]["max_retries"], s["config"]["keep_originals"]) == (
        openai_server.model, "chat", 0, False)
    assert f"rephrase ({openai_server.model}): 3 documents → {s['documents_out']} ({s['synthetic_documents']} " \
           "synthetic)" in r.output
    assert {e["path"] for e in openai_server.log} == {"/v1/chat/completions"} and len(openai_server.log) == 3
