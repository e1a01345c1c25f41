"""Slow tests: the rephrasing stage against a real model.

* a real OpenAI-compatible server (llama-cpp-python's ``python -m llama_cpp.server``, 1 thread,
  on 127.0.0.1:FREE_PORT) running the embedded Gemma 3 270M GGUF, through the ``openai`` backend;
* the resume cache (the server is killed, the rerun is answered from the cache alone);
* a server killed in the middle of a run (documents pass through, counted, no crash);
* the in-process ``llama_cpp`` backend.

Each test generates only a few requests of at most 96 tokens on short real documents (from
examples/warc), so the file runs in a few minutes on a loaded 2-core CPU. Skipped (not failed)
when llama-cpp-python is not installed; CI installs it (``make install-llm``; a failed build
fails CI). The fast test of the same backend against a real local HTTP server is
``tests/test_rephrase_http.py``. Fixtures: ``tests/fixtures_llm.py``.
"""

from __future__ import annotations

import threading
import time

import pyarrow.parquet as pq
import pytest

from webmill.curate.rephrase import RephraseConfig, RequestCache, run_rephrase

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf(gguf_model):
    return gguf_model


@pytest.fixture(scope="module")
def short_docs(prose_documents):
    """Three real English WET documents cut to their first ~60 words of prose (one segment each)."""
    assert len(prose_documents) == 3
    return prose_documents


def _cfg(base_url: str, **kw) -> RephraseConfig:
    base = dict(backend="openai", base_url=base_url, model="gemma-3-270m", api="completions", max_tokens=96,
                max_segment_tokens=512, concurrency=1, timeout_s=120.0, max_retries=1, max_consecutive_failures=3)
    base.update(kw)
    return RephraseConfig(**base)


def _check_rows(rows, docs, stats, model):
    originals = [r for r in rows if r["parent_id"] is None]
    assert [r["id"] for r in originals] == [d["id"] for d in docs]  # nothing lost, order kept
    assert [r["text"] for r in originals] == [d["text"] for d in docs]
    synthetic = [r for r in rows if r["parent_id"] is not None]
    assert len(synthetic) == stats["synthetic_documents"]
    for r in synthetic:
        assert r["synthetic_model"] == model and r["synthetic_style"] in ("wikipedia", "qa", "distill",
                                                                           "extract_knowledge", "knowledge_list")
        assert r["text"].strip() and r["parent_id"] in {d["id"] for d in docs}


def test_openai_server_then_resume_from_cache_without_server(tmp_path, gguf, short_docs, write_final,
                                                             llama_server):
    docs = short_docs[:2]
    write_final(tmp_path, docs, buckets=[3, 16])  # one low-quality (wikipedia), one high (a Nemotron style)
    # Validation relaxed to the bare minimum (non-empty, not looping): a 270M base model's
    # rewrites rarely pass the defaults, and this test is about the server path, the synthetic
    # rows and the cache, not about the model's quality.
    relaxed = dict(allow_truncated=True, min_support=0.0, max_similarity=1.0, check_language=False,
                   min_length_ratio=0.01, max_length_ratio=100.0)
    with llama_server(gguf) as (url, proc):
        cfg = _cfg(url, **relaxed)
        s1 = run_rephrase(tmp_path, cfg)
        assert proc.poll() is None
    # the server is gone now
    assert s1["requests_ok"] == s1["segments"] == 2 and s1["requests_failed"] == 0 and s1["cache_hits"] == 0
    assert s1["generated_tokens"] > 0 and s1["tokens_per_s"] > 0 and s1["rephrase_failed"] == 0
    assert s1["by_style"]["wikipedia"]["requested"] == 1
    assert sum(v["rephrased"] + v["rejected"] for v in s1["by_style"].values()) == 2
    assert s1["synthetic_documents"] >= 1, s1["rejected_segments"]
    rows1 = pq.read_table(tmp_path / "rephrased" / "part-0.parquet").to_pylist()
    _check_rows(rows1, docs, s1, "gemma-3-270m")
    syn = [r for r in rows1 if r["parent_id"]]
    assert all(r["text"] not in (d["text"] for d in docs) for r in syn)  # model text, not the input
    assert {r["synthetic_style"] for r in syn} <= {"wikipedia", "qa", "distill", "extract_knowledge", "knowledge_list"}
    cache = RequestCache(tmp_path / "cache" / "rephrase.sqlite")
    assert len(cache) == 2
    cache.close()

    s2 = run_rephrase(tmp_path, cfg)  # same config, no server listening: everything from the cache
    assert s2["cache_hits"] == 2 and s2["requests_ok"] == 0 and s2["requests_failed"] == 0
    assert s2["generated_tokens"] == 0 and s2["rephrase_failed"] == 0
    rows2 = pq.read_table(tmp_path / "rephrased" / "part-0.parquet").to_pylist()
    assert rows2 == rows1


def test_server_killed_mid_run_passes_documents_through(tmp_path, gguf, short_docs, write_final, llama_server):
    docs = short_docs[:3]
    write_final(tmp_path, docs)
    cache_file = tmp_path / "cache" / "rephrase.sqlite"
    result: dict = {}
    with llama_server(gguf) as (url, proc):
        cfg = _cfg(url, max_retries=1, timeout_s=60.0)
        t = threading.Thread(target=lambda: result.update(stats=run_rephrase(tmp_path, cfg)), daemon=True)
        t.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and t.is_alive():
            if cache_file.exists():
                c = RequestCache(cache_file)
                n = len(c)
                c.close()
                if n >= 1:
                    break
            time.sleep(0.2)
        proc.kill()  # first answer is in: the server dies with the rest still to do
        proc.wait(timeout=30)
        t.join(timeout=300)
    assert not t.is_alive() and "stats" in result, "the stage crashed or hung after the server died"
    s = result["stats"]
    assert s["requests_ok"] >= 1 and s["rephrase_failed"] >= 1
    assert s["requests_ok"] + s["requests_failed"] + s["requests_skipped_server_down"] == 3
    assert s["rephrase_failed"] == 3 - s["requests_ok"]
    rows = pq.read_table(tmp_path / "rephrased" / "part-0.parquet").to_pylist()
    _check_rows(rows, docs, s, "gemma-3-270m")


def test_llama_cpp_in_process_backend(tmp_path, gguf, short_docs, write_final):
    docs = short_docs[:1]
    write_final(tmp_path, docs, buckets=[12])
    cfg = RephraseConfig(backend="llama_cpp", max_tokens=96, n_threads=1, max_segment_tokens=512)
    s = run_rephrase(tmp_path, cfg)
    assert s["model"] == "gemma-3-270m-q4_k_m.gguf" and s["backend"] == "llama_cpp"
    assert s["requests_ok"] == 1 and s["generated_tokens"] > 0 and s["rephrase_failed"] == 0
    assert s["synthetic_documents"] + s["rephrase_rejected"] == 1
    rows = pq.read_table(tmp_path / "rephrased" / "part-0.parquet").to_pylist()
    _check_rows(rows, docs, s, "gemma-3-270m-q4_k_m.gguf")
    # same request again: served from the cache, identical output
    s2 = run_rephrase(tmp_path, cfg)
    assert s2["cache_hits"] == 1 and s2["requests_ok"] == 0
    assert pq.read_table(tmp_path / "rephrased" / "part-0.parquet").to_pylist() == rows
