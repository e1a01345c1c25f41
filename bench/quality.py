"""Benchmark of quality scoring: documents/s on one core, and the score histogram.

Usage::

    python bench/quality.py                  # build/reuse the document cache, time scoring
    python bench/quality.py --rebuild        # re-extract the shared documents first
    python bench/quality.py --model PATH     # another fastText quality model (e.g. DCLM's)

Documents: every HTML response and WET record of every file under ``shared/data/warc`` (the repo
root's sibling), extracted with the pipeline's extractor (``webmill.curate.extract``), non-empty
ones only, cached in ``/tmp/webmill-bench/quality-docs.jsonl``. The set is cycled until
``--min-docs`` predictions per pass so that timing is not dominated by one file.

Printed:

* quality scoring throughput (docs/s, MB/s of UTF-8 text) in this one process — fastText's
  ``predict`` runs on the calling thread, so this is one core;
* the same for lid.176 (``webmill/assets/lid.176.ftz``, fastText language ID) on the same
  texts, measured in the same run, and the ratio quality / lid.176. Published measurements
  put lid.176-sized models near 1,500 docs/s per core; the ratio is what carries over between
  machines;
* a text histogram of the scores of the shared documents and the token mass of the 20
  Nemotron-CC buckets (whitespace words as token counts).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from webmill.curate.quality import approx_num_tokens, assign_buckets, compute_buckets  # noqa: E402
from webmill.filters.quality import DEFAULT_MODEL_PATH, QualityScorer, one_line  # noqa: E402

WARC_DIR = REPO.parent / "shared" / "data" / "warc"
CACHE = Path("/tmp/webmill-bench/quality-docs.jsonl")
LID_MODEL = REPO / "webmill" / "assets" / "lid.176.ftz"


def load_documents(rebuild: bool) -> list[dict]:
    """Extracted shared documents (cached): dicts with ``file``, ``url``, ``text``."""
    if CACHE.exists() and not rebuild:
        return [json.loads(line) for line in CACHE.open(encoding="utf-8")]
    spec = importlib.util.spec_from_file_location("train_quality_model", REPO / "examples" / "train_quality_model.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    docs = [{"file": d["file"], "url": d["url"], "text": d["text"]}
            for d in example.web_documents(WARC_DIR, extras=False) if d["text"].strip()]
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with CACHE.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return docs


def time_passes(fn, texts: list[str], repeat: int) -> float:
    """Median seconds of ``fn(texts)`` over ``repeat`` passes (after one warm-up pass)."""
    fn(texts[:100])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(texts)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def histogram(scores: np.ndarray, bins: int = 20, width: int = 50) -> str:
    counts, edges = np.histogram(scores, bins=bins, range=(0.0, 1.0))
    top = max(counts.max(), 1)
    return "\n".join(f"  [{edges[i]:.2f}, {edges[i + 1]:.2f}{']' if i == bins - 1 else ')'} "
                     f"{counts[i]:5d} {'#' * round(width * counts[i] / top)}" for i in range(bins))


def main() -> None:
    ap = argparse.ArgumentParser(description="quality scoring benchmark")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-docs", type=int, default=5000)
    args = ap.parse_args()
    if not WARC_DIR.is_dir() and not CACHE.exists():
        sys.exit(f"{WARC_DIR} not found: the benchmark needs the shared WARC samples")

    docs = load_documents(args.rebuild)
    texts = [d["text"] for d in docs]
    reps = -(-args.min_docs // len(texts))
    cycled = texts * reps
    mb = sum(len(t.encode("utf-8")) for t in cycled) / 1e6
    print(f"documents: {len(texts)} shared documents (mean {np.mean([len(t) for t in texts]):.0f} chars), "
          f"cycled x{reps} = {len(cycled)} per pass, {mb:.1f} MB; median of {args.repeat} passes")

    t0 = time.perf_counter()
    scorer = QualityScorer(args.model)
    load_s = time.perf_counter() - t0
    q_s = time_passes(scorer.score, cycled, args.repeat)
    print(f"quality model {args.model.name} ({args.model.stat().st_size / 1e6:.2f} MB, load "
          f"{load_s * 1e3:.0f} ms): {len(cycled) / q_s:,.0f} docs/s, {mb / q_s:.1f} MB/s (1 core)")

    if LID_MODEL.exists():
        import fasttext

        lid = fasttext.load_model(str(LID_MODEL))
        l_s = time_passes(lambda ts: lid.predict([one_line(t) for t in ts], k=1), cycled, args.repeat)
        print(f"reference lid.176.ftz on the same texts: {len(cycled) / l_s:,.0f} docs/s, "
              f"{mb / l_s:.1f} MB/s (1 core)")
        print(f"ratio quality / lid.176 throughput: {l_s / q_s:.2f}")

    scores = scorer.score(texts)
    print(f"\nscore histogram of the {len(texts)} shared documents (model {args.model.name}):")
    print(histogram(scores))
    tokens = approx_num_tokens(texts)
    keep = tokens > 0
    edges = compute_buckets(scores[keep], tokens[keep], 20)
    b = assign_buckets(scores[keep], edges)
    mass = np.bincount(b, weights=tokens[keep], minlength=20) / tokens[keep].sum()
    docs_per = np.bincount(b, minlength=20)
    print("\nNemotron-CC buckets (token-weighted, words as tokens): bucket: lower edge, docs, token share")
    lows = np.concatenate([[scores[keep].min()], edges])
    print("\n".join(f"  {i:2d}: {lows[i]:.4f} {docs_per[i]:4d} {mass[i]:6.1%}" for i in range(20)))


if __name__ == "__main__":
    main()
