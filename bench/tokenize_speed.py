"""Benchmark: `tokenize_dataset` end to end vs plain tiktoken `encode_ordinary_batch`.

Both sides get the same text (main-content text extracted from the shared WARCs, repeated to
``--mb`` MB, as documents with distinct ids), the same tokenizer and the same number of threads.
The reference encodes an in-memory list of str with ``enc.encode_ordinary_batch(texts,
num_threads=T)``; webmill reads the documents from Parquet, encodes, appends EOT, shuffles and
writes compressed, checksummed token shards + manifest. Runs alternate; the median ratio is
printed. Goal: ratio >= 0.8 (tiktoken itself is the limit).

    python bench/tokenize.py [--mb 24] [--reps 3] [--tokenizer cl100k_base] [--threads N]
"""

from __future__ import annotations

import os
import sys

# This script is named like the stdlib module `tokenize`; when run as `python bench/tokenize.py`
# Python puts bench/ first on sys.path and this file would shadow the stdlib module (imported by
# linecache/inspect). Drop that entry before anything else is imported.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webmill.tokenize.dataset import tokenize_dataset  # noqa: E402
from webmill.tokenize.encoding import get_encoding  # noqa: E402

WARC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "warc"


def shared_texts() -> list[str]:
    """Main-content text of HTML responses and WET conversions in the shared WARCs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import warc_texts

    return warc_texts.shared_texts(WARC_DIR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=24.0, help="MB of UTF-8 text to tokenize")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions of each side")
    ap.add_argument("--tokenizer", default="cl100k_base")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--files", type=int, default=8, help="document Parquet files to spread the text over")
    args = ap.parse_args()
    if not WARC_DIR.is_dir():
        sys.exit(f"{WARC_DIR} not found: the benchmark needs the shared WARC samples")

    base = shared_texts()
    base_bytes = sum(len(t.encode("utf-8")) for t in base)
    copies = max(1, round(args.mb * 1e6 / base_bytes))
    texts = base * copies
    nbytes = base_bytes * copies
    enc = get_encoding(args.tokenizer)
    T = args.threads
    print(f"text: {len(base)} shared documents x {copies} = {len(texts):,} docs, {nbytes / 1e6:.1f} MB; "
          f"tokenizer {enc.name}; threads {T}; cpus {os.cpu_count()}; load avg {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory(prefix="webmill-bench-tok-") as tmp:
        tmp = Path(tmp)
        docs = tmp / "docs"
        docs.mkdir()
        per = -(-len(texts) // args.files)
        for i in range(args.files):
            part = texts[i * per:(i + 1) * per]
            ids = [f"bench-{i}-{j}" for j in range(len(part))]
            pq.write_table(pa.table({"id": ids, "text": part}), docs / f"part-{i:03d}.parquet")

        ref_s, ours_s, ratios = [], [], []
        ntok_ref = ntok_ours = 0
        for rep in range(args.reps):
            t0 = time.perf_counter()
            out = enc.encode_ordinary_batch(texts, num_threads=T)
            ref = time.perf_counter() - t0
            ntok_ref = sum(map(len, out))
            del out
            t0 = time.perf_counter()
            m = tokenize_dataset(docs, tmp / "shards", tokenizer=args.tokenizer, num_threads=T,
                                 val_fraction=0.0005, shard_tokens=2_000_000)
            ours = time.perf_counter() - t0
            ntok_ours = m["splits"]["train"]["num_tokens"] + m["splits"]["val"]["num_tokens"]
            ref_s.append(ref)
            ours_s.append(ours)
            ratios.append(ref / ours)
            print(f"rep {rep}: tiktoken encode_ordinary_batch {nbytes / 1e6 / ref:6.2f} MB/s | "
                  f"tokenize_dataset {nbytes / 1e6 / ours:6.2f} MB/s (encode phase {m['_timing_s']['encode']:.2f} s "
                  f"of {ours:.2f} s) | ratio {ref / ours:.3f}")
        assert ntok_ours == ntok_ref + len(texts), "token counts differ (webmill adds one EOT per document)"
        print(f"tokens: {ntok_ref:,} (+{len(texts):,} EOT) in {len(m['files'])} shard files")
        print(f"median: tiktoken {nbytes / 1e6 / statistics.median(ref_s):.2f} MB/s, "
              f"tokenize_dataset {nbytes / 1e6 / statistics.median(ours_s):.2f} MB/s, "
              f"ratio {statistics.median(ratios):.3f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
