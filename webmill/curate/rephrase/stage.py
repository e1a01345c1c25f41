"""The rephrasing stage: ``OUT/final`` → ``OUT/rephrased`` and ``OUT/stats/rephrase.json``.

:class:`Rephraser` runs one document table through routing (:mod:`.route`), segmentation
(:mod:`.segment`), cached generation (:mod:`.cache`, :mod:`.llm`) on a bounded thread pool,
cleaning and validation (:mod:`.validate`) and assembly of the synthetic rows;
:func:`run_rephrase` applies it to every Parquet file of a run's output directory through the
storage layer (:mod:`webmill.storage`), so OUT may be local or any fsspec URL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa

from webmill.curate.rephrase.cache import RequestCache, cache_key
from webmill.curate.rephrase.config import RephraseConfig
from webmill.curate.rephrase.llm import Generation, LLMRequestError
from webmill.curate.rephrase.prompts import PROMPT_VERSION, build_prompt
from webmill.curate.rephrase.route import route
from webmill.curate.rephrase.segment import n_tokens, segment_encoder, split_segments
from webmill.curate.rephrase.validate import clean_output, validate_output
from webmill.errors import UserError
from webmill.storage import Storage, as_storage, is_url

SYNTHETIC_COLUMNS = ("synthetic_style", "parent_id", "synthetic_model")


def make_backend(cfg: RephraseConfig):
    """The backend object for ``cfg.backend`` (:mod:`webmill.curate.rephrase.llm`).

    Raises:
        UserError: missing model name (openai), llama-cpp-python not installed, bad GGUF.
    """
    from webmill.curate.rephrase import llm

    if cfg.backend == "openai":
        return llm.OpenAIBackend(cfg.base_url, cfg.model, api=cfg.api, api_key_env=cfg.api_key_env,
                                 timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, temperature=cfg.temperature,
                                 top_p=cfg.top_p, max_tokens=cfg.max_tokens)
    return llm.LlamaCppBackend(cfg.model_path, api=cfg.api, n_threads=cfg.n_threads, n_ctx=cfg.n_ctx,
                               temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                               seed=cfg.seed)


@dataclass
class _Outcome:
    gen: Optional[Generation] = None
    cached: bool = False
    error: str = ""


@dataclass
class _Stats:
    c: Counter = field(default_factory=Counter)
    by_style: dict = field(default_factory=dict)
    rejected: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    def style(self, style: str, what: str, n: int = 1) -> None:
        self.by_style.setdefault(style, Counter())[what] += n


def synthetic_id(parent_id: str, style: str) -> str:
    """Id of a synthetic document: sha1 hex (24 chars) of parent id and style (stable)."""
    return hashlib.sha1(f"{parent_id}\0{style}\0rephrase".encode("utf-8", "surrogatepass")).hexdigest()[:24]


class Rephraser:
    """Rephrases document tables: routing, segmentation, cached generation, validation, assembly.

    Args:
        cfg: :class:`RephraseConfig`.
        cache_path: the sqlite request cache file (a local path; see :func:`default_cache_path`).
        backend: a backend object (``name``, ``generate(prompt, seed)``, ``close()``); default
            :func:`make_backend` (closed by :meth:`close` only when created here).

    Raises:
        UserError: backend problems (see :func:`make_backend`), bad cache file.
    """

    def __init__(self, cfg: RephraseConfig, cache_path: str | Path, backend=None):
        from webmill.filters.language import LanguageFilter

        self.cfg = cfg
        self.cache = RequestCache(cache_path)
        self._own_backend = backend is None
        self.backend = backend if backend is not None else make_backend(cfg)
        self.model = self.backend.name
        self.enc = segment_encoder()
        self.lid = LanguageFilter(languages="all")
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="rephrase")
        self.stats = _Stats()
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self._circuit_open = False
        self.generation_seconds = 0.0  # wall time spent submitting and collecting requests

    # one segment ------------------------------------------------------------------------
    def _segment(self, style: str, text: str) -> _Outcome:
        key = cache_key(self.model, style, PROMPT_VERSION, self.cfg.api, text)
        gen = self.cache.get(key)
        if gen is not None:
            return _Outcome(gen=gen, cached=True)
        with self._lock:
            if self._circuit_open:
                return _Outcome(error="circuit_open")
        prompt = build_prompt(style, text, self.cfg.api)
        # An answer longer than the style's length bound would be rejected anyway: do not pay for
        # it (base models often ramble on past the rewrite).
        limit = min(self.cfg.max_tokens, int(self.cfg.length_bounds(style)[1] * 1.3 * n_tokens(self.enc, text)) + 32)
        try:
            gen = self.backend.generate(prompt, seed=int(key[:8], 16), max_tokens=limit)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - any request failure passes the document through, counted
            if not isinstance(e, LLMRequestError):
                e = LLMRequestError(f"{type(e).__name__}: {e}")
            with self._lock:
                self._consecutive_failures += 1
                if self.cfg.max_consecutive_failures and self._consecutive_failures >= self.cfg.max_consecutive_failures:
                    self._circuit_open = True
            return _Outcome(error=str(e).split(":", 1)[0] or "error")
        with self._lock:
            self._consecutive_failures = 0
        if gen.completion_tokens < 0:
            gen = dataclasses.replace(gen, completion_tokens=n_tokens(self.enc, gen.text))
        self.cache.put(key, gen, model=self.model, style=style, api=self.cfg.api, text=text)
        return _Outcome(gen=gen)

    # one table --------------------------------------------------------------------------
    def rephrase_table(self, table: pa.Table, name: str = "<table>") -> pa.Table:
        """Rephrase the routed documents of ``table`` and return the output table.

        Args:
            table: document table with at least ``id`` and ``text``; optional
                ``quality_bucket`` (int), ``language`` (str), and synthetic columns (rows with a
                ``parent_id`` are already synthetic and are passed through untouched).
            name: file name for messages.

        Returns:
            The table with originals (kept or replaced per ``keep_originals``, synthetic
            columns null) and the synthetic rows, each right after its parent. Row order and
            content are deterministic given the cache.

        Raises:
            UserError: missing ``id``/``text`` column, or a backend configuration error.
        """
        for col in ("id", "text"):
            if col not in table.column_names:
                raise UserError(f"{name}: no {col!r} column (columns: {', '.join(table.column_names)}); "
                                "rephrase reads document tables written by `curate finalize`")
        cfg, st = self.cfg, self.stats
        ids = table.column("id").to_pylist()
        texts = table.column("text").to_pylist()
        buckets = (table.column("quality_bucket").to_pylist() if "quality_bucket" in table.column_names
                   else [None] * len(ids))
        langs = table.column("language").to_pylist() if "language" in table.column_names else [None] * len(ids)
        parents = table.column("parent_id").to_pylist() if "parent_id" in table.column_names else [None] * len(ids)
        st.c["documents_in"] += len(ids)

        t_gen = time.perf_counter()
        jobs = []  # (row, style, segments, futures)
        for i, (doc_id, text, bucket, parent) in enumerate(zip(ids, texts, buckets, parents)):
            if parent is not None or not text or not text.strip():
                continue
            styles = route(doc_id or "", bucket, cfg)
            if not styles:
                continue
            st.c["documents_sampled"] += 1
            segments = split_segments(text, cfg.max_segment_tokens, self.enc)
            for style in styles:
                st.style(style, "requested")
                futures = [self.pool.submit(self._segment, style, s) for s in segments]
                jobs.append((i, style, segments, futures))

        synthetic: dict[int, list[tuple[str, str, float]]] = {}
        try:
            for i, style, segments, futures in jobs:
                outs = [f.result() for f in futures]
                st.c["segments"] += len(outs)
                for o in outs:
                    if o.cached:
                        st.c["cache_hits"] += 1
                    elif o.gen is not None:
                        st.c["requests_ok"] += 1
                        st.c["generated_tokens"] += o.gen.completion_tokens
                    elif o.error == "circuit_open":
                        st.c["requests_skipped_server_down"] += 1
                    else:
                        st.c["requests_failed"] += 1
                        st.errors[o.error] += 1
                    if o.gen is not None:
                        st.c["generated_tokens_incl_cache"] += o.gen.completion_tokens
                if any(o.gen is None for o in outs):
                    st.c["rephrase_failed"] += 1
                    st.style(style, "failed")
                    continue
                expected = langs[i] if cfg.check_language else None
                if cfg.check_language and not expected:
                    expected = self.lid.predict(texts[i])[0]
                valid = []
                for seg, o in zip(segments, outs):
                    cleaned = clean_output(o.gen.text, truncated=o.gen.finish_reason == "length")
                    reason = validate_output(seg, cleaned, style, finish_reason=o.gen.finish_reason,
                                             expected_language=expected, lid=self.lid,
                                             bounds=cfg.length_bounds(style), allow_truncated=cfg.allow_truncated or style in cfg.truncated_styles,
                                             min_support=cfg.min_support, max_similarity=cfg.max_similarity)
                    if reason:
                        st.rejected[reason] += 1
                    else:
                        valid.append(cleaned)
                if not valid or len(valid) < cfg.min_valid_fraction * len(segments):
                    st.c["rephrase_rejected"] += 1
                    st.style(style, "rejected")
                    continue
                new_text = "\n\n".join(valid)
                synthetic.setdefault(i, []).append((style, new_text, self.lid.predict(new_text)[1]))
                st.style(style, "rephrased")
                st.c["segments_kept"] += len(valid)
        except BaseException:
            for _, _, _, futures in jobs:
                for f in futures:
                    f.cancel()
            raise
        finally:
            self.generation_seconds += time.perf_counter() - t_gen
        out = self._assemble(table, ids, synthetic)
        st.c["documents_out"] += out.num_rows
        st.c["synthetic_out"] += sum(len(v) for v in synthetic.values())
        return out

    def _assemble(self, table: pa.Table, ids: list, synthetic: dict) -> pa.Table:
        orig = table
        for col in SYNTHETIC_COLUMNS:
            if col not in orig.column_names:
                orig = orig.append_column(col, pa.nulls(orig.num_rows, pa.string()))
        if not synthetic:
            return orig
        rows = [i for i in sorted(synthetic) for _ in synthetic[i]]
        items = [x for i in sorted(synthetic) for x in synthetic[i]]
        syn = orig.take(pa.array(rows, pa.int64()))

        def put(t, name, values, typ):
            return t.set_column(t.column_names.index(name), name, pa.array(values, type=typ))

        syn = put(syn, "id", [synthetic_id(ids[i], s) for i, (s, _, _) in zip(rows, items)], orig.schema.field("id").type)
        syn = put(syn, "text", [x[1] for x in items], orig.schema.field("text").type)
        if "language_score" in syn.column_names:
            syn = put(syn, "language_score", [x[2] for x in items], orig.schema.field("language_score").type)
        syn = put(syn, "synthetic_style", [x[0] for x in items], pa.string())
        syn = put(syn, "parent_id", [ids[i] for i in rows], pa.string())
        syn = put(syn, "synthetic_model", [self.model] * len(rows), pa.string())
        both = pa.concat_tables([orig, syn.cast(orig.schema)])
        order, k = [], orig.num_rows
        for i in range(orig.num_rows):
            if self.cfg.keep_originals or i not in synthetic:
                order.append(i)
            for _ in synthetic.get(i, ()):
                order.append(k)
                k += 1
        return both.take(pa.array(order, pa.int64()))

    def summary(self, seconds: float) -> dict:
        """Statistics so far (the content of ``OUT/stats/rephrase.json``).

        ``seconds`` is the stage's wall time (model loading included); rates (``tokens_per_s``,
        ``documents_per_min`` = sampled documents processed per minute,
        ``synthetic_documents_per_min``) use ``generation_seconds``, the time spent on requests.
        """
        c, cfg = self.stats.c, self.cfg
        tokens, gen_s = c["generated_tokens"], self.generation_seconds
        return {
            "backend": cfg.backend, "model": self.model, "api": cfg.api, "prompt_version": PROMPT_VERSION,
            "documents_in": c["documents_in"], "documents_sampled": c["documents_sampled"],
            "documents_out": c["documents_out"], "synthetic_documents": c["synthetic_out"],
            "rephrase_failed": c["rephrase_failed"], "rephrase_rejected": c["rephrase_rejected"],
            "by_style": {s: {k: v.get(k, 0) for k in ("requested", "rephrased", "rejected", "failed")}
                         for s, v in sorted(self.stats.by_style.items())},
            "segments": c["segments"], "segments_kept": c["segments_kept"], "cache_hits": c["cache_hits"],
            "requests_ok": c["requests_ok"], "requests_failed": c["requests_failed"],
            "requests_skipped_server_down": c["requests_skipped_server_down"],
            "request_errors": dict(self.stats.errors), "rejected_segments": dict(self.stats.rejected),
            "generated_tokens": tokens, "generated_tokens_incl_cache": c["generated_tokens_incl_cache"],
            "seconds": round(seconds, 3), "generation_seconds": round(gen_s, 3),
            "tokens_per_s": round(tokens / gen_s, 3) if gen_s > 0 else 0.0,
            "documents_per_min": round(c["documents_sampled"] * 60 / gen_s, 3) if gen_s > 0 else 0.0,
            "synthetic_documents_per_min": round(c["synthetic_out"] * 60 / gen_s, 3) if gen_s > 0 else 0.0,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        }

    def close(self) -> None:
        """Stop the thread pool, close the cache and (if created here) the backend."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.cache.close()
        if self._own_backend:
            self.backend.close()


def default_cache_path(out: "str | Path | Storage", name: str = "rephrase") -> Path:
    """Where the sqlite request cache of stage ``name`` lives when its ``cache_path`` is empty.

    sqlite needs a file on local disk: ``OUT/cache/<name>.sqlite`` when OUT is local; for any
    other filesystem (``s3://...``, ``memory://...``) ``$WEBMILL_CACHE/<name>/<key>.sqlite``
    on this machine, where ``<key>`` is the first 16 hex digits of sha1(OUT's URL), so reruns of
    the same OUT from this machine resume from it. ``name`` is ``"rephrase"`` or ``"annotate"``
    (:mod:`webmill.curate.annotate`).
    """
    from webmill.filters.url import cache_dir

    storage = as_storage(out)
    local = storage.local_path(f"cache/{name}.sqlite")
    if local is not None:
        return local
    key = hashlib.sha1(storage.uri().encode("utf-8")).hexdigest()[:16]
    return cache_dir() / name / f"{key}.sqlite"


def run_rephrase(out: "str | Path | Storage", cfg: dict | RephraseConfig, input_subdir: str = "final",
                 output_subdir: str = "rephrased", backend=None) -> dict:
    """Rephrase ``OUT/<input_subdir>/*.parquet`` into ``OUT/<output_subdir>/<same names>.parquet``.

    Args:
        out: the run's output directory OUT (local path, fsspec URL or :class:`Storage`).
        cfg: a whole pipeline config (dict; its ``rephrase`` table is used, absent → defaults)
            or a :class:`RephraseConfig`. ``rephrase.enabled`` only matters to ``curate run``.
        input_subdir / output_subdir: directories under OUT.
        backend: optional backend object to reuse (e.g. a loaded model across calls).

    Returns:
        The statistics dict also written to ``OUT/stats/rephrase.json``: documents in/out,
        synthetic documents, counts by style, ``rephrase_failed`` (documents × styles whose
        requests failed; they pass through unchanged), ``rephrase_rejected`` (outputs failing
        validation), cache hits, requests, generated tokens (model tokenizer), seconds,
        tokens/s, synthetic documents/min.

    Raises:
        UserError: no input files, an unreadable input file or one without ``id``/``text``,
            ``cache_path`` given as a URL, backend configuration errors (no model name, missing
            llama-cpp-python, bad API key, unknown model). Server outages are *not* errors.
    """
    storage = as_storage(out)
    conf = cfg if isinstance(cfg, RephraseConfig) else RephraseConfig.from_config(cfg)
    if is_url(conf.cache_path):
        raise UserError(f"rephrase.cache_path {conf.cache_path!r} is a URL; the sqlite request cache must be a "
                        "local file (leave it empty for the default, see docs/rephrase.md)")
    names = storage.list(input_subdir, suffix=".parquet")
    if not names:
        raise UserError(f"no Parquet files in {storage.uri(input_subdir)} (run `curate run`/`curate finalize` "
                        "first, or pass --input-subdir)")
    storage.makedirs(output_subdir)
    for stale in storage.list(output_subdir, suffix=".parquet"):
        if stale not in names:
            storage.remove(f"{output_subdir}/{stale}")
    t0 = time.perf_counter()
    r = Rephraser(conf, Path(conf.cache_path) if conf.cache_path else default_cache_path(storage), backend)
    per_file = []
    try:
        for name in names:
            src = f"{input_subdir}/{name}"
            try:
                table = storage.read_parquet(src)
            except (OSError, pa.ArrowException) as e:
                raise UserError(f"{storage.uri(src)}: cannot read Parquet ({e}); re-run the step that wrote it") from e
            before = dict(r.stats.c)
            new = r.rephrase_table(table, storage.uri(src))
            storage.write_parquet(f"{output_subdir}/{name}", new)
            per_file.append({"file": name, "documents_in": table.num_rows, "documents_out": new.num_rows,
                             "synthetic": r.stats.c["synthetic_out"] - before.get("synthetic_out", 0),
                             "failed": r.stats.c["rephrase_failed"] - before.get("rephrase_failed", 0)})
    finally:
        r.close()
    stats = r.summary(time.perf_counter() - t0)
    stats["files"] = per_file
    storage.write_json("stats/rephrase.json", stats)
    return stats
