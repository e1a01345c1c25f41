"""``curate annotate``: LLM scores for a sample of a run's documents → ``OUT/annotations``.

:func:`run_annotate` samples documents (:mod:`.sample`), asks a model for a rubric score
(:mod:`.rubric`) through the rephrasing stage's backends (:mod:`webmill.curate.rephrase.llm`)
and request cache (:mod:`webmill.curate.rephrase.cache`) on a bounded thread pool, and writes one
row per sampled document to ``OUT/<output_subdir>/<input file name>`` with :data:`ANNOTATION_SCHEMA`
plus ``OUT/stats/annotate.json``. All reads and writes of OUT go through
:mod:`webmill.storage`, so OUT may be local or any fsspec URL.

On a Ray cluster this runs on the driver like rephrasing: the driver sends the requests to an
OpenAI-compatible server (vLLM/SGLang on the cluster's GPUs, ``backend = "openai"``); no Ray is
needed, and ``concurrency`` bounds the requests in flight. Failed requests never crash the run and
are never lost: the row is written with ``score`` null and the error; after
``max_consecutive_failures`` failures in a row no more requests are sent (rows get
``circuit_open``). A rerun reuses every cached answer (no requests).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from webmill.curate.annotate.config import AnnotateConfig
from webmill.curate.annotate.rubric import MAX_SCORE, MIN_SCORE, Rubric, build_prompt, load_rubric, parse_answer, truncate
from webmill.curate.annotate.sample import sample_documents
from webmill.curate.rephrase.cache import RequestCache, cache_key
from webmill.curate.rephrase.stage import default_cache_path
from webmill.curate.rephrase.llm import LLMRequestError
from webmill.errors import UserError
from webmill.storage import Storage, as_storage, is_url

#: Input directories tried in this order when none is given: the last document table of a run.
INPUT_SUBDIRS = ("final", "deduped", "documents")
ANSWER_CHARS = 2000
#: The schema of ``OUT/annotations/*.parquet`` (read by :mod:`webmill.curate.quality.annotations`).
ANNOTATION_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("domain", pa.string()), ("text", pa.large_string()),
    ("score", pa.int8()), ("rubric", pa.string()), ("rubric_sha", pa.string()), ("model", pa.string()),
    ("prompt_version", pa.string()), ("answer", pa.string()), ("error", pa.string()),
])


def make_backend(cfg: AnnotateConfig):
    """The backend object for ``cfg.backend`` (:mod:`webmill.curate.rephrase.llm`), sampling with
    ``cfg.temperature`` and at most :attr:`AnnotateConfig.token_limit` tokens per request.

    Raises:
        UserError: llama-cpp-python not installed, GGUF missing or not loadable.
    """
    from webmill.curate.rephrase import llm

    if cfg.backend == "openai":
        return llm.OpenAIBackend(cfg.base_url, cfg.model, api=cfg.api, api_key_env=cfg.api_key_env,
                                 timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, temperature=cfg.temperature,
                                 top_p=1.0, max_tokens=cfg.token_limit, section="annotate")
    return llm.LlamaCppBackend(cfg.model_path, api=cfg.api, n_threads=cfg.n_threads, n_ctx=cfg.n_ctx,
                               temperature=cfg.temperature, top_p=1.0, max_tokens=cfg.token_limit, seed=cfg.seed,
                               section="annotate")


@dataclass
class Result:
    """One document's outcome: the raw ``answer`` (or None), the ``score`` (0–5 or None), the
    ``error`` (None, ``unparseable``, ``out_of_range``, a request error class, ``circuit_open``)
    and whether the answer came from the cache."""

    answer: str | None = None
    score: int | None = None
    error: str | None = None
    cached: bool = False


class Annotator:
    """Scores documents with one rubric through one backend, with the request cache.

    Args:
        cfg: :class:`AnnotateConfig`.
        rubric: :class:`~webmill.curate.annotate.rubric.Rubric`.
        cache_path: the sqlite request cache (a local file).
        backend: a backend object (``name``, ``generate(prompt, seed, max_tokens)``, ``close()``);
            default :func:`make_backend` (closed by :meth:`close` only when created here).

    Raises:
        UserError: backend configuration problems, a bad cache file.
    """

    def __init__(self, cfg: AnnotateConfig, rubric: Rubric, cache_path: str | Path, backend=None):
        self.cfg, self.rubric = cfg, rubric
        self.cache = RequestCache(cache_path)
        self._own_backend = backend is None
        self.backend = backend if backend is not None else make_backend(cfg)
        self.model = self.backend.name
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="annotate")
        self.counts: Counter = Counter()
        self.request_errors: Counter = Counter()
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self._circuit_open = False
        self._seen: dict[str, Result] = {}  # cache key → result of this run (duplicate texts)

    def key(self, doc: str) -> str:
        """The request-cache key of the (truncated) document text ``doc``."""
        return cache_key(self.model, self.rubric.style, self.rubric.prompt_version, self.cfg.api, doc)

    def annotate(self, doc: str, key: str = "") -> Result:
        """Score one (already truncated) document text; never raises for a failed request (the
        :class:`Result` carries the error).

        Raises:
            UserError: a configuration error the backend reports (bad key, unknown model).
        """
        key = key or self.key(doc)
        gen = self.cache.get(key)
        cached = gen is not None
        if gen is None:
            with self._lock:
                if self._circuit_open:
                    return Result(error="circuit_open")
            try:
                gen = self.backend.generate(build_prompt(self.rubric, doc, self.cfg.api), seed=int(key[:8], 16),
                                            max_tokens=self.cfg.token_limit)
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 - a failed request becomes a row with its error
                if not isinstance(e, LLMRequestError):
                    e = LLMRequestError(f"{type(e).__name__}: {e}")
                with self._lock:
                    self._consecutive_failures += 1
                    limit = self.cfg.max_consecutive_failures
                    if limit and self._consecutive_failures >= limit:
                        self._circuit_open = True
                return Result(error=str(e).split(":", 1)[0] or "error")
            with self._lock:
                self._consecutive_failures = 0
            self.cache.put(key, gen, model=self.model, style=self.rubric.style, api=self.cfg.api, text=doc,
                           prompt_version=self.rubric.prompt_version)
        score, error = parse_answer(gen.text, self.cfg.api)
        return Result(answer=gen.text[:ANSWER_CHARS], score=score, error=error, cached=cached)

    def annotate_all(self, texts: list[str]) -> list[Result]:
        """Score documents (texts truncated to ``max_doc_chars``) on the thread pool; results in
        input order.

        A text equal (after truncation) to one already scored in this run is not sent again: it
        shares that result and counts as ``duplicate_texts`` (so the counts do not depend on
        ``concurrency``). Counted in :attr:`counts` (``cache_hits``, ``requests_ok``,
        ``requests_failed``, ``requests_skipped_server_down``, ``duplicate_texts``; they add up
        to the number of texts) and :attr:`request_errors` (by error class).
        """
        docs = [truncate(t or "", self.cfg.max_doc_chars) for t in texts]
        keys = [self.key(d) for d in docs]
        futures = {}
        for k, d in zip(keys, docs):
            if k not in self._seen and k not in futures:
                futures[k] = self.pool.submit(self.annotate, d, k)
        try:
            for k, f in futures.items():
                r = self._seen[k] = f.result()
                if r.cached:
                    self.counts["cache_hits"] += 1
                elif r.answer is not None:
                    self.counts["requests_ok"] += 1
                elif r.error == "circuit_open":
                    self.counts["requests_skipped_server_down"] += 1
                else:
                    self.counts["requests_failed"] += 1
                    self.request_errors[r.error] += 1
        except BaseException:
            for f in futures.values():
                f.cancel()
            raise
        self.counts["duplicate_texts"] += len(keys) - len(futures)
        return [self._seen[k] for k in keys]

    def close(self) -> None:
        """Stop the thread pool, close the cache and (if created here) the backend."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.cache.close()
        if self._own_backend:
            self.backend.close()


def default_input(storage: Storage) -> str:
    """The first of :data:`INPUT_SUBDIRS` holding Parquet files (the run's last document table).

    Raises:
        UserError: none of them holds any (names the run and what to do).
    """
    for sub in INPUT_SUBDIRS:
        if storage.list(sub, suffix=".parquet"):
            return sub
    raise UserError(f"{storage.uri()}: no document tables in {', '.join(INPUT_SUBDIRS)}; run `curate run` "
                    "on it first, or pass --input-subdir")


def _domains(table: pa.Table) -> list[str]:
    if "domain" in table.column_names:
        return [d or "" for d in table.column("domain").to_pylist()]
    urls = table.column("url").to_pylist() if "url" in table.column_names else [None] * table.num_rows
    return [(urlsplit(u).hostname or "") if u else "" for u in urls]


def _read(storage: Storage, rel: str, columns: list[str] | None = None) -> pa.Table:
    try:
        table = storage.read_parquet(rel, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"{storage.uri(rel)}: cannot read Parquet ({e}); re-run the step that wrote it") from e
    for col in ("id", "text"):
        if col not in table.column_names:
            raise UserError(f"{storage.uri(rel)}: no {col!r} column; annotate reads document tables "
                            "(OUT/final, OUT/deduped or OUT/documents)")
    return table


def run_annotate(out: "str | Path | Storage", cfg: dict | AnnotateConfig, input_subdir: str = "",
                 output_subdir: str = "annotations", backend=None) -> dict:
    """Annotate a sample of ``OUT/<input_subdir>/*.parquet`` into ``OUT/<output_subdir>/``.

    Args:
        out: the run's output directory OUT (local path, fsspec URL or :class:`Storage`).
        cfg: a whole pipeline config (dict; its ``annotate`` table is used) or an
            :class:`AnnotateConfig`.
        input_subdir: directory under OUT to read; empty → :func:`default_input`.
        output_subdir: directory under OUT written: one file per input file with sampled
            documents, same name, :data:`ANNOTATION_SCHEMA`, rows in input order; other Parquet
            files there (stale ones of an earlier run) are removed.
        backend: optional backend object to reuse (not closed here).

    Returns:
        The statistics also written to ``OUT/stats/annotate.json``: ``documents_in``, ``empty``,
        ``sampled``, ``annotated`` (valid score), ``failed`` (request errors, circuit open),
        ``unparseable``, ``out_of_range`` (these four add up to ``sampled``),
        ``score_histogram`` (``{"0": n, ..., "5": n}``), ``cache_hits``, ``requests_ok``,
        ``requests_failed``, ``requests_skipped_server_down``, ``duplicate_texts`` (these five
        add up to ``sampled``), ``request_errors``, ``seconds`` (wall, model loading included),
        ``generation_seconds`` (time spent on requests), ``seconds_per_request``
        (``generation_seconds`` / requests sent, 0 when none), ``domains``, ``model``,
        ``backend``, ``api``, ``rubric``, ``rubric_sha``, ``prompt_version``, ``input``,
        ``config``, ``files``.

    Raises:
        UserError: no input tables, an unreadable input or one without ``id``/``text``, a bad
            rubric file, ``cache_path`` given as a URL, backend configuration errors. Server
            outages are not errors.
    """
    t0 = time.perf_counter()
    storage = as_storage(out)
    conf = cfg if isinstance(cfg, AnnotateConfig) else AnnotateConfig.from_config(cfg)
    if is_url(conf.cache_path):
        raise UserError(f"[annotate] cache_path {conf.cache_path!r} is a URL; the sqlite request cache must be a "
                        "local file (leave it empty for the default)")
    rubric = load_rubric(conf.rubric)
    src = input_subdir or default_input(storage)
    names = storage.list(src, suffix=".parquet")
    if not names:
        raise UserError(f"no Parquet files in {storage.uri(src)} (run `curate run` first, or pass --input-subdir)")

    def scan():
        for name in names:
            present = storage.parquet_file(f"{src}/{name}").schema_arrow.names
            t = _read(storage, f"{src}/{name}", [c for c in ("id", "url", "domain", "text") if c in present])
            blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(t.column("text")), ""), True)
            has_text = pc.invert(blank).to_pylist()
            yield name, t.column("id").to_pylist(), _domains(t), has_text

    sample = sample_documents(scan(), n=conf.n, fraction=conf.fraction, stratify=conf.stratify, seed=conf.seed)
    storage.makedirs(output_subdir)
    for stale in storage.list(output_subdir, suffix=".parquet"):
        if stale not in sample.rows:
            storage.remove(f"{output_subdir}/{stale}")
    outcome: Counter = Counter()
    hist = Counter()
    per_file = []
    gen_seconds = 0.0
    ann = Annotator(conf, rubric, Path(conf.cache_path) if conf.cache_path else default_cache_path(storage, "annotate"), backend)
    try:
        for name, rows in sample.rows.items():
            table = _read(storage, f"{src}/{name}").take(pa.array(rows, pa.int64()))
            texts = table.column("text").to_pylist()
            t_gen = time.perf_counter()
            results = ann.annotate_all(texts)
            gen_seconds += time.perf_counter() - t_gen
            for r in results:
                kind = ("annotated" if r.score is not None else r.error if r.error in ("unparseable", "out_of_range")
                        else "failed")
                outcome[kind] += 1
                if r.score is not None:
                    hist[r.score] += 1
            n = table.num_rows
            urls = table.column("url").to_pylist() if "url" in table.column_names else [None] * n
            cols = {
                "id": table.column("id").to_pylist(), "url": urls, "domain": _domains(table), "text": texts,
                "score": [r.score for r in results], "rubric": [rubric.name] * n, "rubric_sha": [rubric.sha] * n,
                "model": [ann.model] * n, "prompt_version": [rubric.prompt_version] * n,
                "answer": [r.answer for r in results],
                "error": [r.error for r in results],
            }
            storage.write_parquet(f"{output_subdir}/{name}", pa.table(cols, schema=ANNOTATION_SCHEMA))
            per_file.append({"file": name, "sampled": n, "annotated": sum(r.score is not None for r in results)})
    finally:
        ann.close()
    seconds = time.perf_counter() - t0
    sent = ann.counts["requests_ok"] + ann.counts["requests_failed"]
    stats = {
        "documents_in": sample.documents_in, "empty": sample.empty, "sampled": sample.sampled,
        "domains": sample.domains, **{k: outcome[k] for k in ("annotated", "failed", "unparseable", "out_of_range")},
        "score_histogram": {str(s): hist[s] for s in range(MIN_SCORE, MAX_SCORE + 1)},
        **{k: ann.counts[k] for k in ("cache_hits", "requests_ok", "requests_failed",
                                      "requests_skipped_server_down", "duplicate_texts")},
        "request_errors": dict(ann.request_errors), "seconds": round(seconds, 3),
        "generation_seconds": round(gen_seconds, 3),
        "seconds_per_request": round(gen_seconds / sent, 3) if sent else 0.0,
        "model": ann.model, "backend": conf.backend, "api": conf.api, "rubric": rubric.name,
        "rubric_sha": rubric.sha, "prompt_version": rubric.prompt_version, "input": src,
        "config": dataclasses.asdict(conf), "files": per_file,
    }
    storage.write_json("stats/annotate.json", stats)
    return stats
