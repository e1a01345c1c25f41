"""Benchmark: LLM rephrasing throughput (generated tokens/s, documents/min) and samples per style.

Usage:
    python bench/rephrase.py [--backend llama_cpp|openai] [--docs 3] [--words 120]
        [--max-tokens 256] [--styles wikipedia,qa,...] [--base-url URL --model NAME]
        [--json results.json]

Documents: the English WET documents of the shared CC-MAIN-2016-50 sample
(``../shared/data/warc/cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz``), each cut to its leading
prose lines (lines of at least 12 words) up to ``--words`` words, so one document is one
segment and a CPU run finishes in minutes. For every style the stage (``run_rephrase``) runs on
the same ``--docs`` documents with a fresh request cache (every segment is a real request) and
one shared backend (the model loads once; its load time is excluded and printed separately).

Printed per style: segments, generated tokens (the model's tokenizer), wall seconds,
tokens/s, synthetic documents/min, rejections by reason, and ``--samples`` before/after
excerpts. Defaults: the embedded Gemma 3 270M Q4_K_M through llama-cpp-python, 1 thread
(``--threads``), temperature 0.5, top_p 0.9.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_WET = REPO.parent / "shared" / "data" / "warc" / "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from webmill.curate.outputs import DOCUMENT_SCHEMA  # noqa: E402
from webmill.storage import Storage  # noqa: E402
from webmill.curate.readers import document_id, iter_records  # noqa: E402
from webmill.curate.rephrase import (  # noqa: E402
    RephraseConfig, RequestCache, cache_key, clean_output, make_backend, run_rephrase, split_segments,
    validate_output,
)
from webmill.curate.rephrase.prompts import PROMPT_VERSION, STYLES  # noqa: E402
from webmill.curate.rephrase.segment import segment_encoder as _encoder  # noqa: E402
from webmill.filters.language import LanguageFilter  # noqa: E402


# Pages of the shared WET sample whose leading lines are prose (tried first, in this order).
PROSE_URLS = ("mayoclinic.org/diseases-conditions/asthma", "Bioactive-compounds-from-flesh",
              "effect-gT-mispair-dynamics-DNA", "Quality-life-patients-with-chronic",
              "Effect-ageing-ventilatory-response", "ahwatukee.com")


def load_documents(n: int, words: int, prose_first: bool = True) -> list[dict]:
    """``n`` English WET documents with ≥ 40 words of prose, cut to ``words`` words.

    With ``prose_first`` the pages in :data:`PROSE_URLS` come first, then the rest in file order.
    """
    lid = LanguageFilter(languages="all")
    docs = []
    records = [(r.url, r.record_id, r.read_payload().decode("utf-8", "replace"))
               for r in iter_records(str(SHARED_WET), []) if r.rec_type == "conversion"]
    if prose_first:
        rank = {u: k for k, u in enumerate(PROSE_URLS)}
        records.sort(key=lambda r: min([rank[u] for u in PROSE_URLS if u in r[0]] or [len(rank)]))
    for url, record_id, text in records:
        lines, count = [], 0
        for line in text.split("\n"):
            ws = line.split()
            if len(ws) < 12:
                continue
            if count + len(ws) > words:
                if not count:  # one long first paragraph: keep its first `words` words
                    lines.append(" ".join(ws[:words]))
                    count = words
                break
            lines.append(line.strip())
            count += len(ws)
        prose = "\n".join(lines)
        if count < 40 or lid.predict(prose)[0] != "en":
            continue
        docs.append({"id": document_id(str(SHARED_WET), record_id), "url": url, "text": prose})
        if len(docs) == n:
            break
    return docs


def write_final(out: Path, docs: list[dict]) -> None:
    n = len(docs)
    table = pa.table({
        "id": [d["id"] for d in docs], "url": [d["url"] for d in docs],
        "domain": [d["url"].split("/")[2] for d in docs],
        "crawl_date": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        "source_file": [SHARED_WET.name] * n, "record_offset": pa.array([0] * n, pa.int64()),
        "text": pa.array([d["text"] for d in docs], pa.large_string()), "language": ["en"] * n,
        "language_score": pa.array([1.0] * n, pa.float32()),
    }, schema=DOCUMENT_SCHEMA)
    Storage(out / "final").write_parquet("bench.parquet", table)


def _raw_outputs(cache_file: Path, docs: list[dict], style: str, cfg: RephraseConfig, model: str) -> dict:
    """{doc id: (cleaned model output, rejection reason or None)} read back from the request cache."""
    enc = _encoder()
    lid = LanguageFilter(languages="all")
    cache = RequestCache(cache_file)
    res = {}
    try:
        for d in docs:
            parts, reasons = [], []
            for seg in split_segments(d["text"], cfg.max_segment_tokens, enc):
                gen = cache.get(cache_key(model, style, PROMPT_VERSION, cfg.api, seg))
                if gen is None:
                    parts.append("")
                    reasons.append("failed")
                    continue
                text = clean_output(gen.text, truncated=gen.finish_reason == "length")
                parts.append(text)
                reasons.append(validate_output(seg, text, style, finish_reason=gen.finish_reason, expected_language="en",
                                               lid=lid, bounds=cfg.length_bounds(style),
                                               allow_truncated=cfg.allow_truncated or style in cfg.truncated_styles,
                                               min_support=cfg.min_support,
                                               max_similarity=cfg.max_similarity))
            res[d["id"]] = ("\n\n".join(parts), ",".join(r for r in reasons if r) or None)
    finally:
        cache.close()
    return res


def _short(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="llama_cpp", choices=["llama_cpp", "openai"])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default="")
    ap.add_argument("--api", default="completions", choices=["completions", "chat"])
    ap.add_argument("--model-path", default="")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--docs", type=int, default=3)
    ap.add_argument("--words", type=int, default=120)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--styles", default=",".join(STYLES))
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--allow-truncated", action="store_true", help="accept outputs cut by max_tokens (trimmed)")
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--excerpt", type=int, default=220, help="characters per printed excerpt")
    ap.add_argument("--json", default="", help="write all results (incl. full texts) to this file")
    args = ap.parse_args()

    docs = load_documents(args.docs, args.words)
    base = dict(backend=args.backend, base_url=args.base_url, model=args.model, api=args.api,
                model_path=args.model_path, n_threads=args.threads, max_tokens=args.max_tokens,
                concurrency=args.concurrency, max_segment_tokens=1024, max_consecutive_failures=3,
                allow_truncated=args.allow_truncated, temperature=args.temperature)
    t = time.perf_counter()
    backend = make_backend(RephraseConfig(**base))
    load_s = time.perf_counter() - t
    print(f"backend {args.backend} model {backend.name}: loaded in {load_s:.1f} s; {len(docs)} documents "
          f"of ≤ {args.words} words; max_tokens {args.max_tokens}")
    results = {"backend": args.backend, "model": backend.name, "load_seconds": round(load_s, 2),
               "documents": len(docs), "styles": {}}
    total_tok = total_s = 0.0
    try:
        for style in args.styles.split(","):
            with tempfile.TemporaryDirectory(prefix="webmill-bench-rephrase-") as tmp:
                out = Path(tmp)
                write_final(out, docs)
                cfg = RephraseConfig(**base, low_styles=(style,), default_style=style)
                s = run_rephrase(out, cfg, backend=backend)
                rows = pq.read_table(out / "rephrased" / "bench.parquet").to_pylist()
                raw = _raw_outputs(out / "cache" / "rephrase.sqlite", docs, style, cfg, backend.name)
            syn = {r["parent_id"]: r["text"] for r in rows if r["parent_id"]}
            total_tok += s["generated_tokens"]
            total_s += s["generation_seconds"]
            print(f"\n== {style}: {s['segments']} segments, {s['generated_tokens']} tokens in {s['generation_seconds']:.1f} s "
                  f"= {s['tokens_per_s']:.1f} tok/s, {s['synthetic_documents']}/{len(docs)} documents written "
                  f"({s['synthetic_documents_per_min']:.2f}/min), rejected {s['rejected_segments']}, "
                  f"failed {s['rephrase_failed']}")
            samples = []
            for d in docs:
                out_text, reason = raw.get(d["id"], ("", "failed"))
                samples.append({"id": d["id"], "url": d["url"], "before": d["text"], "after": syn.get(d["id"]),
                                "model_output": out_text, "rejected": reason})
            for smp in samples[: args.samples]:
                print(f"  before: {_short(smp['before'], args.excerpt)}")
                if smp["after"]:
                    print(f"  after : {_short(smp['after'], args.excerpt)}")
                else:
                    print(f"  after ({smp['rejected']}, original kept): {_short(smp['model_output'], args.excerpt)}")
            results["styles"][style] = {"stats": s, "samples": samples}
    finally:
        backend.close()
    results["generated_tokens"] = int(total_tok)
    results["seconds"] = round(total_s, 2)
    results["tokens_per_s"] = round(total_tok / total_s, 2) if total_s else 0.0
    written = sum(v["stats"]["synthetic_documents"] for v in results["styles"].values())
    results["documents_per_min"] = round(written * 60 / total_s, 2) if total_s else 0.0
    results["requests_per_min"] = round(sum(v["stats"]["requests_ok"] for v in results["styles"].values()) * 60 / total_s, 2) if total_s else 0.0
    print(f"\nall styles: {int(total_tok)} tokens in {total_s:.1f} s = {results['tokens_per_s']} tok/s; "
          f"{results['requests_per_min']} documents requested/min, {results['documents_per_min']} synthetic documents written/min")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
