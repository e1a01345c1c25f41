"""Helpers for the rephrasing tests: real shared documents as an OUT/final table, free ports, and
a real llama-cpp-python OpenAI-compatible server running the embedded Gemma 3 270M GGUF.

Imported by ``tests/test_rephrase.py`` and ``tests/test_rephrase_server.py`` (pytest puts this
directory on ``sys.path``); not a conftest, so nothing here runs unless a test asks for it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa

from webmill.curate.outputs import DOCUMENT_SCHEMA, write_parquet_atomic
from webmill.curate.readers import document_id, iter_records

SHARED_WET = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc" / "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"


def shared_documents() -> list[dict]:
    """The 25 WET documents of the shared CC-MAIN-2016-50 sample: ``{"id", "url", "text"}``."""
    errors: list = []
    docs = []
    for rec in iter_records(str(SHARED_WET), errors):
        if rec.rec_type != "conversion":
            continue
        text = rec.read_payload().decode("utf-8", "replace")
        docs.append({"id": document_id(str(SHARED_WET), rec.record_id), "url": rec.url, "text": text,
                     "offset": rec.offset})
    return docs


def main_paragraphs(text: str, min_words: int = 12, max_words: int = 90) -> str:
    """The leading prose lines of a WET text (lines of ≥ ``min_words`` words) up to ``max_words``."""
    out, n = [], 0
    for line in text.split("\n"):
        words = line.split()
        if len(words) < min_words:
            continue
        if n + len(words) > max_words:
            if not n:  # one long first paragraph: keep its first max_words words
                out.append(" ".join(words[:max_words]))
            break
        out.append(line.strip())
        n += len(words)
    return "\n".join(out)


# Shared WET documents whose leading lines are real prose (medical page, two paper abstracts).
PROSE_URLS = ("mayoclinic.org/diseases-conditions/asthma", "Bioactive-compounds-from-flesh",
              "effect-gT-mispair-dynamics-DNA")


def prose_documents(max_words: int = 60) -> list[dict]:
    """The :data:`PROSE_URLS` documents, text cut to their first ``max_words`` words of prose."""
    docs = [d for d in shared_documents() if any(u in d["url"] for u in PROSE_URLS)]
    docs.sort(key=lambda d: [u in d["url"] for u in PROSE_URLS].index(True))
    return [dict(d, text=main_paragraphs(d["text"], max_words=max_words)) for d in docs]


def write_final(out: Path, docs: list[dict], buckets: list[int] | None = None, name: str = "part-0.parquet",
                language: str = "en") -> Path:
    """Write ``docs`` as ``OUT/final/<name>`` (document schema, optional ``quality_bucket``)."""
    n = len(docs)
    cols = {
        "id": pa.array([d["id"] for d in docs], pa.string()),
        "url": pa.array([d["url"] for d in docs], pa.string()),
        "domain": pa.array([d["url"].split("/")[2] if "//" in d["url"] else "" for d in docs], pa.string()),
        "crawl_date": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        "source_file": pa.array([SHARED_WET.name] * n, pa.string()),
        "record_offset": pa.array([d.get("offset", 0) for d in docs], pa.int64()),
        "text": pa.array([d["text"] for d in docs], pa.large_string()),
        "language": pa.array([language] * n, pa.string()),
        "language_score": pa.array([0.9] * n, pa.float32()),
    }
    table = pa.table(cols, schema=DOCUMENT_SCHEMA)
    if buckets is not None:
        table = table.append_column("quality_bucket", pa.array(buckets, pa.int32()))
    path = Path(out) / "final" / name
    write_parquet_atomic(table, path)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gguf_path() -> Path:
    """The embedded Gemma 3 270M GGUF (assembled into $WEBMILL_CACHE/models on first use)."""
    from webmill.curate.llm import default_gguf_path

    return default_gguf_path()


@contextlib.contextmanager
def llama_server(model: Path, n_ctx: int = 2048, startup_s: float = 180.0):
    """Run ``python -m llama_cpp.server`` on 127.0.0.1:FREE_PORT with 1 thread; yield (base_url, proc).

    Waits until ``GET /v1/models`` answers; kills the server (if still running) on exit.

    Raises:
        RuntimeError: the server exited or did not answer within ``startup_s`` (its log is in
            the message).
    """
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "gemma-3-270m",
             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1",
             "--n_ctx", str(n_ctx)],
            stdout=fh, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer in {startup_s} s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
