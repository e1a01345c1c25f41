"""Character-shingle MinHash speed (languages without spaces) vs the word path, same machine.

Chinese corpus: the real zh pages of the bundled examples/warc Common Crawl sample (plus the
zh browser captures of ../shared/data/warc when present), text by trafilatura, recombined into
--docs documents: each takes random real lines until it reaches a character count drawn from
the real pages' counts. English corpus: bench/minhash.py's (real shared WARC lines, word counts
of the real pages). Rates (signatures/s, MB of UTF-8 text/s) are medians of --repeats
alternating runs from normalized text; datasketch ``update_batch`` with the same hash function
(``xxh3_chars_hash32``) is checked to give identical signatures first.

    python bench/minhash_chars.py                 # 1,000 documents, 3 repeats
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import datasketch
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from jaccard_gen import WARC_DIR, load_html_documents  # noqa: E402

from webmill.curate import minhash as mh  # noqa: E402
from webmill.curate import minhash_chars as mc  # noqa: E402

ZH_FILES = ("cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz", "webrecorder_2018_jd-com_zh.warc.gz",
            "webrecorder_2018_sina-com-cn_zh.warc.gz", "webrecorder_2018_qq-com_zh-gb2312.warc.gz")


def zh_corpus(n_docs: int, seed: int = 0) -> list[str]:
    from webmill.filters.language import DEFAULT_MODEL, load_fasttext

    lid = load_fasttext(DEFAULT_MODEL)
    real = []
    for name in ZH_FILES:
        if name.startswith("cc_") or (WARC_DIR / name).is_file():
            for d in load_html_documents(name):
                if lid.predict(d["text"].replace("\n", " "))[0][0] == "__label__zh":
                    real.append(d["text"])
    lengths = [len(t) for t in real if len(t) >= 300]
    lines = [ln for t in real for ln in t.splitlines() if ln.strip()]
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        target, parts, size = rng.choice(lengths), [], 0
        while size < target:
            parts.append(rng.choice(lines))
            size += len(parts[-1]) + 1
        docs.append("\n".join(parts))
    print(f"zh corpus: {len(real)} real pages, {len(lines)} lines, {n_docs} docs, "
          f"{np.mean([len(d) for d in docs]):.0f} characters on average")
    return docs


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from minhash import corpus as en_corpus

    zh = zh_corpus(args.docs)
    en = en_corpus(args.docs)
    hasher = mh.MinHasher()
    zh_norm = [mh.normalized_bytes(t) for t in zh]
    en_norm = [mh.normalized_bytes(t) for t in en]

    # correctness first: datasketch with the same hash function gives the same signatures
    ref_sig = hasher.signatures_from_chars(zh_norm[:50], 5)
    for i in range(50):
        m = datasketch.MinHash(num_perm=112, seed=1, hashfunc=mc.xxh3_chars_hash32)
        m.update_batch(mc.char_shingles(mc.normalize_chars(zh[i]), 5))
        assert (m.hashvalues == ref_sig[i]).all(), i

    def datasketch_chars():
        out = []
        for t in zh_norm[: args.docs // 10]:
            m = datasketch.MinHash(num_perm=112, seed=1, hashfunc=mc.xxh3_chars_hash32)
            m.update_batch(mc.char_shingles(t.replace(b" ", b"").decode(), 5))
            out.append(m.hashvalues)
        return np.array(out)

    runs = {
        "zh, 5-character shingles (ours)": (lambda: hasher.signatures_from_chars(zh_norm, 5), zh_norm),
        "zh, 5-word shingles (ours, the old path)": (lambda: hasher.signatures_from_split(*mh.split_words(zh_norm)), zh_norm),
        "en, 5-word shingles (ours)": (lambda: hasher.signatures_from_split(*mh.split_words(en_norm)), en_norm),
        "zh, 5-character shingles (datasketch, 1/10 of the docs)": (datasketch_chars, zh_norm[: args.docs // 10]),
    }
    print(f"{'what':58s} {'docs/s':>8s} {'MB/s':>6s} {'shingles/doc':>12s}")
    for name, (fn, norm) in runs.items():
        sec, _ = timed(fn, args.repeats)
        mb = sum(len(b) for b in norm) / 1e6
        if "character" in name:
            n_sh = np.diff(mh.MinHasher().char_shingle_hashes_split(*mc.split_chars(norm), 5)[1]).mean()
        else:
            n_sh = np.diff(mh.MinHasher().shingle_hashes_split(*mh.split_words(norm))[1]).mean()
        print(f"{name:58s} {len(norm) / sec:8.0f} {mb / sec:6.2f} {n_sh:12.0f}")


if __name__ == "__main__":
    main()
