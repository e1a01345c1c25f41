"""MinHash signatures/s: webmill's vectorized MinHasher vs datasketch.MinHash.update_batch.

Same documents, same run, same shingle hash for both sides (and datasketch's default SHA-1);
the signatures are checked to be identical before timing. Rates are medians over --repeats
alternating runs. Goal: ours / datasketch (same hash) >= 5x.

Corpus: real documents of the shared WARCs (HTML responses, resiliparse main-content text),
recombined into --docs documents of realistic size: each takes random real lines until it
reaches a word count drawn from the real documents' word counts.

    python bench/minhash.py                      # 2,000 documents, 3 repeats
    python bench/minhash.py --job                # also the Ray dedup job: seconds, peak RSS
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasketch
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from jaccard_gen import WARC_DIR, iter_records, jaccard_pair, write_documents  # noqa: E402

from webmill.curate import minhash as mh  # noqa: E402


def real_documents() -> list[str]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    docs = []
    for path in sorted(WARC_DIR.glob("*.warc*")) + sorted(WARC_DIR.glob("*.arc*")):
        try:
            for rec, content, _ in iter_records(path, "response"):
                if rec.http_headers is None or "html" not in (rec.http_headers.get_header("Content-Type") or ""):
                    continue
                text = extract_plain_text(bytes_to_str(content, detect_encoding(content)), main_content=True)
                if len(text.split()) >= 50:
                    docs.append(text)
        except Exception:  # a few shared files are deliberately malformed
            continue
    return docs


def corpus(n_docs: int, seed: int = 0) -> list[str]:
    real = real_documents()
    lengths = [len(d.split()) for d in real]
    lines = [ln for d in real for ln in d.splitlines() if ln.strip()]
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        target, out, words = min(rng.choice(lengths), 20000), [], 0
        while words < target:
            ln = rng.choice(lines)
            out.append(ln)
            words += len(ln.split())
        docs.append("\n".join(out))
    return docs


def ours(norm: list[bytes], hash_name: str) -> np.ndarray:
    """webmill: Arrow word split + vectorized MinHash, batches of 1,000 documents."""
    hasher = mh.MinHasher(hash_name=hash_name)
    return np.concatenate(
        [hasher.signatures_from_split(*mh.split_words(norm[i : i + 1000])) for i in range(0, len(norm), 1000)]
    )


def theirs(norm: list[bytes], hashfunc) -> np.ndarray:
    """datasketch: split, build the shingles, one MinHash per document with update_batch."""
    out = []
    for text in norm:
        m = datasketch.MinHash(num_perm=112, seed=1, hashfunc=hashfunc)
        m.update_batch(mh.shingles(text.split(), 5))
        out.append(m.hashvalues)
    return np.stack(out)


def bench_signatures(docs: list[str], repeats: int) -> None:
    t = time.perf_counter()
    words = [mh.normalized_bytes(d) for d in docs]  # the common input of both sides
    t_norm = time.perf_counter() - t
    n = len(docs)
    n_words = sum(len(w.split()) for w in words)
    n_distinct = len({x for w in words[:1000] for x in w.split()})
    print(f"corpus: {n} documents, {n_words / n:.0f} words/doc (mean), {sum(map(len, docs)) / 2**20:.1f} MiB of text, "
          f"{n_distinct / sum(len(w.split()) for w in words[:1000]):.1%} distinct words in the first 1,000 documents")
    print(f"normalization (NFKD, lower, separators; shared by all rows below): {n / t_norm:,.0f} docs/s")
    check = words[:50]
    runs = {
        "ours xxh3_words": lambda w: ours(w, "xxh3_words"),
        "datasketch xxh3_words": lambda w: theirs(w, mh.xxh3_words_hash32),
        "ours xxh3": lambda w: ours(w, "xxh3"),
        "datasketch xxh3": lambda w: theirs(w, mh.xxh3_hash32),
        "ours sha1": lambda w: ours(w, "sha1"),
        "datasketch sha1": lambda w: theirs(w, None),  # datasketch's default hashfunc
    }
    for name in ("xxh3_words", "xxh3", "sha1"):
        a, b = runs[f"ours {name}"](check), runs[f"datasketch {name}"](check)
        assert np.array_equal(a, b), f"signatures differ for {name}"
    print("signatures identical to datasketch on the first 50 documents for all three hashes")
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):  # alternate the methods within each repeat
        for k, fn in runs.items():
            t = time.perf_counter()
            fn(words)
            rates[k].append(n / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nsignatures/s from normalized text (median of {repeats}; 112 perms, 5-word shingles, 1 core)")
    for k, v in med.items():
        print(f"  {k:<28} {v:>9,.0f}")
    print("ratios (ours / datasketch):")
    for name in ("xxh3_words", "xxh3", "sha1"):
        print(f"  same hash {name:<11} {med[f'ours {name}'] / med[f'datasketch {name}']:6.1f}x")
    print(f"  ours default (xxh3_words) vs datasketch default (sha1): {med['ours xxh3_words'] / med['datasketch sha1']:6.1f}x")
    per_doc = {k: 1 / v + t_norm / n for k, v in med.items()}
    print("from raw text (the same normalization added to both sides):")
    for name in ("xxh3_words", "xxh3", "sha1"):
        print(f"  same hash {name:<11} {per_doc[f'datasketch {name}'] / per_doc[f'ours {name}']:6.1f}x")
    print(f"  ours default vs datasketch default (sha1): {per_doc['datasketch sha1'] / per_doc['ours xxh3_words']:6.1f}x")


def bench_job(docs: list[str], n_files: int) -> None:
    """Run the Ray dedup job on the corpus (+ injected exact and near duplicates)."""
    import ray

    from webmill.curate.dedup import DedupConfig, run_dedup

    rng = random.Random(1)
    rows = []
    for i, text in enumerate(docs):
        rows.append(text)
        if i % 20 == 0:
            rows.append(text)  # exact duplicate
        elif i % 20 == 1:
            w, _ = jaccard_pair(mh.normalize_words(text), 0.9, rng) if len(text.split()) > 20 else ([b"x"], 0)
            rows.append(b" ".join(w).decode())  # near duplicate, J ~ 0.9
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        out = Path(tmp)
        per = -(-len(rows) // n_files)
        for f in range(n_files):
            chunk = rows[f * per : (f + 1) * per]
            recs = [{"id": f"f{f}-{i:07d}", "url": "", "domain": "", "crawl_date": None, "source_file": f"f{f}",
                     "record_offset": i, "text": t, "language": "en", "language_score": 1.0} for i, t in enumerate(chunk)]
            write_documents(recs, out / "documents" / f"part-{f:03d}.parquet")
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="ray-bench-", dir="/tmp"))
        try:
            print(f"\ndedup job: {len(rows)} documents in {n_files} files, Ray with 2 CPUs")
            for shuffle in ("sort", "hash", "sort", "hash"):
                with WorkerRss() as w:
                    s = run_dedup(out, DedupConfig(shuffle=shuffle))
                print(f"  shuffle={shuffle:<4} removed {s['exact']['documents_removed']} exact + "
                      f"{s['minhash']['documents_removed']} near; {s['candidate_edges']} edges; seconds {s['seconds']}; "
                      f"peak RSS: driver {s['peak_rss_driver_bytes'] / 2**20:,.0f} MiB, one worker "
                      f"{w.peak_one / 2**20:,.0f} MiB, all workers {w.peak_sum / 2**20:,.0f} MiB")
        finally:
            ray.shutdown()


class WorkerRss:
    """Samples the RSS of this driver's Ray worker processes (descendants titled "ray::...") every 0.1 s."""

    def __enter__(self):
        import threading

        self.peak_one = self.peak_sum = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        import psutil

        while not self._stop.is_set():
            rss = []
            for p in psutil.Process().children(recursive=True):
                try:
                    title = " ".join(p.cmdline())
                    if title.startswith("ray::") and "Agent" not in title:  # workers, not the agents
                        rss.append(p.memory_info().rss)
                except psutil.Error:
                    continue
            if rss:
                self.peak_one, self.peak_sum = max(self.peak_one, max(rss)), max(self.peak_sum, sum(rss))
            self._stop.wait(0.1)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000, help="documents in the corpus")
    ap.add_argument("--repeats", type=int, default=3, help="alternating timed runs per method")
    ap.add_argument("--job", action="store_true", help="also run the Ray dedup job on the corpus")
    ap.add_argument("--files", type=int, default=4, help="document files for --job")
    args = ap.parse_args()
    if not WARC_DIR.is_dir():
        sys.exit(f"shared WARC data not found at {WARC_DIR}")
    docs = corpus(args.docs)
    bench_signatures(docs, args.repeats)
    if args.job:
        bench_job(docs, args.files)


if __name__ == "__main__":
    main()
