"""pytest plugin: fixtures of the rephrasing tests (registered in ``tests/conftest.py`` through
``pytest_plugins``; tests receive everything here as fixtures, nothing is imported by path).

* ``wet_documents`` / ``prose_documents``: the 25 real WET documents of the bundled
  ``examples/warc/cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz`` (the same file as in
  ``../shared/data/warc``), and three of them cut to their leading prose;
* ``write_final``: writes documents as an ``OUT/final`` Parquet table (document schema);
* ``closed_port_url``: an OpenAI base URL on 127.0.0.1 where nothing listens;
* ``openai_server``: a real HTTP server on 127.0.0.1 speaking the OpenAI completions and
  chat-completions JSON (:class:`OpenAICompatibleServer`); its answers are deterministic text
  derived from the prompt (the document's sentences in reverse order), not a model;
* ``gguf_model`` / ``llama_server``: the embedded Gemma 3 270M GGUF and a real
  llama-cpp-python OpenAI-compatible server running it (slow tests; skip without llama-cpp-python).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest

from webmill.curate.outputs import DOCUMENT_SCHEMA
from webmill.curate.readers import document_id, iter_records
from webmill.storage import Storage

WET = Path(__file__).resolve().parents[1] / "examples" / "warc" / "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"
# WET documents whose leading lines are real prose (medical page, two paper abstracts).
PROSE_URLS = ("mayoclinic.org/diseases-conditions/asthma", "Bioactive-compounds-from-flesh",
              "effect-gT-mispair-dynamics-DNA")


# ---------------------------------------------------------------------------- real documents

def _read_wet(path: Path) -> list[dict]:
    errors: list = []
    docs = []
    for rec in iter_records(str(path), errors):
        if rec.rec_type != "conversion":
            continue
        text = rec.read_payload().decode("utf-8", "replace")
        docs.append({"id": document_id(str(path), rec.record_id), "url": rec.url, "text": text,
                     "offset": rec.offset})
    return docs


def _main_paragraphs(text: str, min_words: int = 12, max_words: int = 90) -> str:
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


@pytest.fixture(scope="session")
def wet_path() -> Path:
    """The bundled 25-document WET file (examples/warc)."""
    return WET


@pytest.fixture(scope="session")
def wet_documents() -> list[dict]:
    """The 25 WET documents of the CC-MAIN-2016-50 sample: ``{"id", "url", "text", "offset"}``."""
    docs = _read_wet(WET)
    assert len(docs) == 25
    return docs


@pytest.fixture(scope="session")
def prose_documents(wet_documents) -> list[dict]:
    """The :data:`PROSE_URLS` documents, text cut to their first 60 words of prose."""
    docs = [d for d in wet_documents if any(u in d["url"] for u in PROSE_URLS)]
    docs.sort(key=lambda d: [u in d["url"] for u in PROSE_URLS].index(True))
    return [dict(d, text=_main_paragraphs(d["text"], max_words=60)) for d in docs]


def _write_final(out, docs: list[dict], buckets: list[int] | None = None, name: str = "part-0.parquet",
                 language: str = "en") -> str:
    n = len(docs)
    cols = {
        "id": pa.array([d["id"] for d in docs], pa.string()),
        "url": pa.array([d["url"] for d in docs], pa.string()),
        "domain": pa.array([d["url"].split("/")[2] if "//" in d["url"] else "" for d in docs], pa.string()),
        "crawl_date": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        "source_file": pa.array([WET.name] * n, pa.string()),
        "record_offset": pa.array([d.get("offset", 0) for d in docs], pa.int64()),
        "text": pa.array([d["text"] for d in docs], pa.large_string()),
        "language": pa.array([language] * n, pa.string()),
        "language_score": pa.array([0.9] * n, pa.float32()),
    }
    table = pa.table(cols, schema=DOCUMENT_SCHEMA)
    if buckets is not None:
        table = table.append_column("quality_bucket", pa.array(buckets, pa.int32()))
    storage = out if isinstance(out, Storage) else Storage(out)
    storage.write_parquet(f"final/{name}", table)
    return storage.uri(f"final/{name}")


@pytest.fixture
def write_final():
    """``write_final(out, docs, buckets=None, name="part-0.parquet", language="en") -> uri``:
    write ``docs`` as ``OUT/final/<name>`` (document schema, optional int32 ``quality_bucket``)."""
    return _write_final


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def closed_port_url() -> str:
    """``http://127.0.0.1:PORT/v1`` for a port that was free a moment ago (nothing listens)."""
    return f"http://127.0.0.1:{_free_port()}/v1"


# ---------------------------------------------------------------------------- OpenAI-compatible HTTP server

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def answer_for(document: str) -> str:
    """The server's answer for a document: its sentences in reverse order, on one line.

    Deterministic, uses only the document's own words (so it passes the grounding check) and is
    no copy of the input when the document has several sentences.
    """
    sentences = [s for s in _SENTENCE.split(" ".join(document.split())) if s]
    return " ".join(reversed(sentences))


class OpenAICompatibleServer:
    """A real HTTP server on 127.0.0.1 answering ``POST /v1/completions`` and
    ``POST /v1/chat/completions`` in the OpenAI JSON format (``GET /v1/models`` too).

    The answer is :func:`answer_for` of the document in the prompt (after the last
    ``Web text:`` of a completion prompt, after ``Document:`` of the last chat message), cut to
    ``max_tokens`` words (then ``finish_reason == "length"``); ``usage.completion_tokens`` is its
    number of words. ``fail`` maps a request's arrival number (1-based) to an HTTP status and
    extra headers to answer instead (e.g. ``{1: (500, {}), 3: (429, {"Retry-After": "1"})}``).
    Every request is logged in :attr:`log`: ``{"n", "t", "path", "status", "key", "retry_count",
    "body"}`` and ``completion_tokens`` for answered ones (``t``: time.monotonic() on arrival;
    ``key``: sha1 of the prompt's document; ``retry_count``: the client's
    ``x-stainless-retry-count`` header). :attr:`answer_for` is :func:`answer_for`.
    """

    def __init__(self, model: str = "webmill-test-model"):
        self.model = model
        self.answer_for = answer_for
        self.fail: dict[int, tuple[int, dict]] = {}
        self.log: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                status, obj, headers = server._answer(self.path, body, self.headers)
                self._send(status, obj, headers)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def document_of(path: str, body: dict) -> str:
        """The document a request asks to rewrite (see the class docstring)."""
        if path.endswith("/chat/completions"):
            return body["messages"][-1]["content"].split("Document:\n", 1)[1]
        return body["prompt"].rsplit("Web text:\n", 1)[1].rsplit("\n\n", 1)[0]

    def _answer(self, path: str, body: dict, headers) -> tuple[int, dict, dict]:
        with self._lock:
            n = len(self.log) + 1
            entry = {"n": n, "t": time.monotonic(), "path": path, "status": 200, "key": "",
                     "retry_count": int(headers.get("x-stainless-retry-count", 0)), "body": body}
            self.log.append(entry)
            injected = self.fail.get(n)
        if path not in ("/v1/completions", "/v1/chat/completions"):
            entry["status"] = 404
            return 404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}}, {}
        if body.get("model") != self.model:
            entry["status"] = 404
            return 404, {"error": {"message": f"model {body.get('model')!r} not found", "type": "invalid_request_error",
                                   "code": "model_not_found"}}, {}
        doc = self.document_of(path, body)
        entry["key"] = hashlib.sha1(doc.encode("utf-8")).hexdigest()
        if injected:
            entry["status"] = injected[0]
            return injected[0], {"error": {"message": f"injected {injected[0]}", "type": "server_error"}}, injected[1]
        words = answer_for(doc).split(" ")
        limit = int(body.get("max_tokens") or 10**9)
        finish = "length" if len(words) > limit else "stop"
        text = " ".join(words[:limit])
        usage = {"prompt_tokens": len(str(body).split()), "completion_tokens": min(len(words), limit)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        entry["completion_tokens"] = usage["completion_tokens"]
        common = {"id": f"cmpl-{n}", "created": 1700000000, "model": self.model, "usage": usage}
        if path.endswith("/chat/completions"):
            return 200, {**common, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]}, {}
        return 200, {**common, "object": "text_completion", "choices": [
            {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}, {}

    def start(self) -> "OpenAICompatibleServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def openai_server():
    """A running :class:`OpenAICompatibleServer` (stopped after the test)."""
    server = OpenAICompatibleServer().start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------- real model (slow tests)

@pytest.fixture(scope="session")
def gguf_model() -> Path:
    """The embedded Gemma 3 270M GGUF (assembled into $WEBMILL_CACHE/models on first use).

    Skips the test when llama-cpp-python[server] is not installed, or fails it when the
    environment variable ``WEBMILL_REQUIRE_LLM=1`` is set (CI, after ``make install-llm``).
    """
    for module, why in (("llama_cpp", "llama-cpp-python not installed (see docs/rephrase.md)"),
                        ("llama_cpp.server.app", "llama-cpp-python[server] extra not installed")):
        try:
            __import__(module)
        except ImportError as e:
            if os.environ.get("WEBMILL_REQUIRE_LLM") == "1":
                pytest.fail(f"{why}, and WEBMILL_REQUIRE_LLM=1: {e}")
            pytest.skip(why)
    from webmill.curate.rephrase.llm import default_gguf_path

    return default_gguf_path()


@contextlib.contextmanager
def _llama_server(model: Path, n_ctx: int = 2048, startup_s: float = 180.0):
    port = _free_port()
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


@pytest.fixture
def llama_server():
    """``llama_server(model_path, n_ctx=2048, startup_s=180)``: a context manager that runs
    ``python -m llama_cpp.server`` (1 thread, model alias ``gemma-3-270m``) on 127.0.0.1:FREE_PORT,
    waits until ``GET /v1/models`` answers and yields ``(base_url, proc)``; the server is killed
    on exit. Raises RuntimeError (with the server's log) when it exits or does not answer."""
    return _llama_server
