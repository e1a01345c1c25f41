"""Synthetic documents with planted exact and near-duplicate clusters of known sizes (issue 18).

Writes ``OUT/documents/part-NNNNN.parquet`` (columns ``id``, ``url``, ``text``, ``language`` =
"en"; ``docs_per_file`` rows each, Parquet through :mod:`webmill.storage`), plus, next to it and
not under ``documents/``, ``OUT/ground_truth.parquet`` (one row per planted cluster member:
``id``, ``row`` = global row index, ``cluster``, ``role`` = source/exact/near, ``size``,
``jaccard`` with the source) and ``OUT/synth.json`` (parameters and counts). ``OUT`` is a local
path or any fsspec URL. Deterministic from the seed: the same parameters give byte-identical
files. Used by ``bench/dedup_scale.py`` and tests/test_bench_dedup_synth.py.

The corpus:

* **Base documents**: 200-400 words (uniform, mean 300), each word drawn i.i.d. from a
  Zipf-Mandelbrot law p(i) ∝ 1/(i + 2.7) over ``VOCAB`` = 50,000 made-up lowercase words
  (frequent words shorter, 2-10 letters); 8 % of the tokens carry a trailing comma and 5 % a
  period (normalization removes them). The most frequent word has p ≈ 2.8 %, so a given 5-word
  shingle of frequent words has p ≲ 2·10⁻⁸: unrelated documents share almost no shingles and
  their Jaccard is ≈ 0, far below the LSH curve. Every word of base document ``b`` is a pure
  function of ``(seed, b, position)`` (splitmix64), so any document can be regenerated alone.
* **Clusters**: ``exact_frac`` of the N documents (default 10 %) are exact copies and
  ``near_frac`` (10 %) near copies of a *source* base document. Each cluster is exact (source
  + s−1 identical texts) or near (source + s−1 independently edited copies). Cluster sizes:
  every size class of ``cluster_sizes`` (default 2, 3, 5, 10, 100, 1000) receives the same share
  of the copy budget (so 1/6 of the copies lie in 1000-document clusters); the remainder goes to
  size-2 clusters. The plan is deterministic, so N and 2N have the same size mix.
* **Near copies**: target Jaccard J ~ U(``jaccard_min``, ``jaccard_max``) = U(0.85, 0.95) with
  the source on normalized word 5-shingle sets. Replacing one interior word, with replaced
  words ≥ 5 apart, changes exactly 5 of the S = n − 4 shingles, so m = round(S(1−J)/(5(1+J)))
  words are replaced by other vocabulary words; the achieved Jaccard (steps of ~0.03) is
  measured on the shingle sets and recorded in the ground truth. Copies of one source are edited
  independently (their mutual Jaccard is lower).
* **Layout**: all N documents (originals and copies) are shuffled (``numpy`` permutation of the
  seed) before being cut into files, so the copies of a cluster are spread across files.
  ``id`` = ``syn-<global row, 10 digits>``, so the ``keep = id`` rule keeps the smallest row.

Memory is bounded by one file (its text, ~75 MB for 50,000 documents, and its Parquet
encoding) and one chunk of ``CHUNK_DOCS`` documents (token arrays, ~60 MB), plus the plan
(~25 bytes per document) and the ground truth (~30 bytes per cluster member): peak RSS
0.6 GB with 50,000-document files, the same at 250,000 and 500,000 documents. Speed:
~100 µs per document on one core of the 2-core benchmark machine (100,000 documents in 9 s;
bench/README.md). On disk: ~0.8 KB per document (zstd), 1.5 KB of text.

    python bench/dedup_synth.py OUT --docs 250000            # generate (skips when up to date)
    python bench/dedup_synth.py OUT --docs 20000 --docs-per-file 5000 --seed 3
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if __name__ == "__main__":  # `python bench/dedup_synth.py`: make webmill importable, drop bench/ shadowing
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webmill.storage import Storage, as_storage  # noqa: E402

VOCAB = 50_000
ZIPF_Q = 2.7  # Zipf-Mandelbrot offset: p(i) ∝ 1 / (i + q)
MIN_WORDS, MAX_WORDS = 200, 400
SHINGLE = 5  # words per shingle, as the dedup default (FineWeb)
CHUNK_DOCS = 10_000
COMMA_P, PERIOD_P = 20 / 256, 13 / 256  # share of tokens with a trailing "," / "."
GENERATOR_VERSION = 1  # bump when the output for the same parameters changes
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass
class SynthParams:
    """Parameters of a synthetic corpus (all documented in the module docstring).

    Attributes:
        docs: total documents N (originals + copies).
        seed: seed of the vocabulary, the words, the plan and the layout.
        docs_per_file: rows per Parquet file (the last file may be shorter).
        exact_frac, near_frac: share of N that are exact / near copies (planted duplicates).
        cluster_sizes: cluster sizes (documents incl. the source); each receives an equal share
            of the copy budget.
        jaccard_min, jaccard_max: near-copy target Jaccard range (word 5-shingles).
    """

    docs: int
    seed: int = 0
    docs_per_file: int = 50_000
    exact_frac: float = 0.10
    near_frac: float = 0.10
    cluster_sizes: list[int] = field(default_factory=lambda: [2, 3, 5, 10, 100, 1000])
    jaccard_min: float = 0.85
    jaccard_max: float = 0.95

    def validate(self) -> None:
        """Raise ValueError on parameters that cannot give the planned corpus."""
        if self.docs < 1 or self.docs_per_file < 1:
            raise ValueError("docs and docs_per_file must be >= 1")
        if not (0 <= self.exact_frac and 0 <= self.near_frac and self.exact_frac + self.near_frac < 0.5):
            raise ValueError("exact_frac and near_frac must be >= 0 with a sum < 0.5")
        if not self.cluster_sizes or min(self.cluster_sizes) < 2:
            raise ValueError("cluster_sizes must be a non-empty list of sizes >= 2")
        if not 0.5 <= self.jaccard_min <= self.jaccard_max < 1:
            raise ValueError("need 0.5 <= jaccard_min <= jaccard_max < 1")


# deterministic randomness


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer of a uint64 array (wrapping arithmetic), a counter-based hash."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def make_vocab(seed: int) -> tuple[list[str], np.ndarray]:
    """``(words, cdf)``: VOCAB distinct made-up lowercase words by frequency rank (shorter
    first, 2-10 letters) and the Zipf-Mandelbrot CDF (float64, length VOCAB)."""
    rng = np.random.default_rng([seed, 1])
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    lengths = 2 + np.floor(6 * np.sqrt(np.arange(VOCAB) / VOCAB)).astype(int) + rng.integers(0, 3, VOCAB)
    seen: set[str] = set()
    words = []
    for n in lengths:
        while True:
            w = letters[rng.integers(0, 26, n)].tobytes().decode()
            if w not in seen:
                break
            n += 1 if rng.random() < 0.2 else 0  # crowded short lengths: drift longer
        seen.add(w)
        words.append(w)
    p = 1.0 / (np.arange(VOCAB) + ZIPF_Q)
    cdf = np.cumsum(p / p.sum())
    cdf[-1] = 1.0
    return words, cdf


class Corpus:
    """Word-token generator of one seed: base documents as token arrays and their text.

    A token is ``word + VOCAB * variant`` (variant 0 = bare, 1 = trailing comma, 2 = trailing
    period); ``token % VOCAB`` is the normalized word.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.mix = splitmix64(np.array([seed], np.uint64))[0]
        words, self.cdf = make_vocab(seed)
        self.display = pa.array(words + [w + "," for w in words] + [w + "." for w in words], pa.string())

    def _hash(self, base: np.ndarray, slot: np.ndarray) -> np.ndarray:
        key = (base.astype(np.uint64) << np.uint64(12)) | slot.astype(np.uint64)
        return splitmix64(key ^ self.mix)

    def lengths(self, base: np.ndarray) -> np.ndarray:
        """Words of each base document (int64, MIN_WORDS..MAX_WORDS)."""
        h = self._hash(base, np.full(len(base), 4095, np.uint64))
        return (MIN_WORDS + h % np.uint64(MAX_WORDS - MIN_WORDS + 1)).astype(np.int64)

    def tokens(self, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, offsets)``: the concatenated int32 tokens of the base documents ``base``
        (int64 indices) and int64 offsets (length ``len(base) + 1``)."""
        n = self.lengths(base)
        offsets = np.zeros(len(base) + 1, np.int64)
        np.cumsum(n, out=offsets[1:])
        pos = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], n)
        h = self._hash(np.repeat(base, n), pos)
        u = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
        word = np.minimum(np.searchsorted(self.cdf, u, side="right"), VOCAB - 1).astype(np.int32)
        r = (h & np.uint64(0xFF)).astype(np.int32)
        variant = (r < int(COMMA_P * 256)).astype(np.int32) + 2 * ((r >= int(COMMA_P * 256)) & (r < int((COMMA_P + PERIOD_P) * 256)))
        return (word + VOCAB * variant).astype(np.int32), offsets

    def texts(self, tokens: np.ndarray, offsets: np.ndarray) -> pa.Array:
        """The documents' texts (words joined by single spaces) as an Arrow string array."""
        words = self.display.take(pa.array(tokens, pa.int32()))
        return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), words), " ")


def shingle_hashes(norm: np.ndarray) -> np.ndarray:
    """Distinct hashes of the 5-word shingles of one document's normalized word ids (uint64;
    a document under 5 words gives one shingle of all its words, as the dedup step)."""
    w = norm.astype(np.uint64) + np.uint64(1)
    k = min(SHINGLE, len(w))
    h = np.zeros(len(w) - k + 1, np.uint64)
    for i in range(k):
        h = h * np.uint64(VOCAB + 1) + w[i : len(w) - k + 1 + i]
    return np.unique(h)


def jaccard_of(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of the 5-shingle sets of two normalized word-id arrays."""
    sa, sb = shingle_hashes(a), shingle_hashes(b)
    inter = len(np.intersect1d(sa, sb, assume_unique=True))
    return inter / (len(sa) + len(sb) - inter)


def near_edit(tokens: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``tokens`` with m interior words (≥ 5 apart) replaced by other vocabulary
    words, m chosen so that the 5-shingle Jaccard with the original is close to ``target``."""
    n = len(tokens)
    s = n - SHINGLE + 1
    m = max(1, round(s * (1 - target) / (SHINGLE * (1 + target))))
    slots = np.arange(1, (n - 7) // SHINGLE + 1) * SHINGLE + 2  # positions 7, 12, ...: all 5 windows inside
    pos = np.sort(rng.choice(slots, size=min(m, len(slots)), replace=False))
    out = tokens.copy()
    old = out[pos] % VOCAB
    new = rng.integers(0, VOCAB, len(pos)).astype(np.int32)
    new = np.where(new == old, (new + 1) % VOCAB, new)
    out[pos] = new + VOCAB * (out[pos] // VOCAB)  # keep the punctuation variant
    return out


# the plan: which document is what


def cluster_plan(copies: int, sizes: list[int]) -> np.ndarray:
    """Cluster sizes (int64) whose ``sum(size - 1) == copies``: each size class gets
    ``copies / len(sizes)`` copies (whole clusters only), the remainder size-2 clusters."""
    share = copies / len(sizes)
    counts = {s: int(share // (s - 1)) for s in sizes}
    rest = copies - sum(c * (s - 1) for s, c in counts.items())
    counts[2] = counts.get(2, 0) + rest
    return np.concatenate([np.full(c, s, np.int64) for s, c in sorted(counts.items())] + [np.empty(0, np.int64)])


@dataclass
class Plan:
    """The documents in row order: ``base`` (base document), ``kind`` (0 original, 1 exact copy,
    2 near copy), ``cluster`` (-1 = none), ``copy_key`` (unique per near copy, seeds its edit);
    ``sizes``/``cluster_kind`` per cluster."""

    base: np.ndarray
    kind: np.ndarray
    cluster: np.ndarray
    copy_key: np.ndarray
    sizes: np.ndarray
    cluster_kind: np.ndarray


def make_plan(p: SynthParams) -> Plan:
    """Deterministic plan of the corpus ``p`` (see the module docstring)."""
    n_exact, n_near = round(p.docs * p.exact_frac), round(p.docs * p.near_frac)
    ex_sizes, near_sizes = cluster_plan(n_exact, p.cluster_sizes), cluster_plan(n_near, p.cluster_sizes)
    sizes = np.concatenate([ex_sizes, near_sizes])
    cluster_kind = np.concatenate([np.ones(len(ex_sizes), np.int8), np.full(len(near_sizes), 2, np.int8)])
    n_base = p.docs - n_exact - n_near
    if len(sizes) > n_base:
        raise ValueError(f"{len(sizes)} clusters need more than the {n_base} base documents; lower the copy fractions")
    copies = sizes - 1
    copy_cluster = np.repeat(np.arange(len(sizes)), copies)
    base = np.concatenate([np.arange(n_base), copy_cluster])  # cluster c's source is base document c
    kind = np.concatenate([np.zeros(n_base, np.int8), cluster_kind[copy_cluster]])
    cluster = np.concatenate([np.where(np.arange(n_base) < len(sizes), np.arange(n_base), -1), copy_cluster])
    copy_key = np.arange(p.docs, dtype=np.int64)
    order = np.random.default_rng([p.seed, 3]).permutation(p.docs)  # row r holds plan entry order[r]
    return Plan(base[order], kind[order], cluster[order], copy_key[order], sizes, cluster_kind)


# writing


def _manifest(p: SynthParams) -> dict:
    return {"generator_version": GENERATOR_VERSION, "params": asdict(p)}


def is_current(out: str | Path | Storage, p: SynthParams) -> bool:
    """True when ``out`` holds a complete corpus generated with the parameters ``p``."""
    st = as_storage(out)
    if not st.isfile("synth.json"):
        return False
    m = st.read_json("synth.json")
    return {k: m.get(k) for k in _manifest(p)} == _manifest(p) and m.get("complete", False)


def generate(out: str | Path | Storage, p: SynthParams, log=print) -> dict:
    """Write the corpus ``p`` to ``out`` (see the module docstring); returns the manifest.

    Existing ``documents/*.parquet`` of another corpus are removed first; ``synth.json`` is
    written last (with ``complete: true``), so a killed run is regenerated by :func:`is_current`
    callers.

    Raises:
        ValueError: invalid parameters (``SynthParams.validate``).
    """
    p.validate()
    t0 = time.perf_counter()
    st = as_storage(out)
    if st.isfile("synth.json"):
        st.remove("synth.json")
    for name in st.list("documents", suffix=".parquet") if st.isdir("documents") else []:
        st.remove(f"documents/{name}")
    st.makedirs("documents")
    corpus = Corpus(p.seed)
    plan = make_plan(p)
    n_files = math.ceil(p.docs / p.docs_per_file)
    truth: dict[str, list] = {"row": [], "cluster": [], "jaccard": []}
    text_bytes = 0
    for f in range(n_files):
        lo, hi = f * p.docs_per_file, min(p.docs, (f + 1) * p.docs_per_file)
        texts = []
        for c0 in range(lo, hi, CHUNK_DOCS):
            rows = np.arange(c0, min(hi, c0 + CHUNK_DOCS))
            tokens, offsets = corpus.tokens(plan.base[rows])
            jac = np.where(plan.cluster[rows] >= 0, 1.0, np.nan)
            for i in np.flatnonzero(plan.kind[rows] == 2):
                rng = np.random.default_rng([p.seed, 4, int(plan.copy_key[rows[i]])])
                src = tokens[offsets[i] : offsets[i + 1]].copy()
                edited = near_edit(src, rng.uniform(p.jaccard_min, p.jaccard_max), rng)
                tokens[offsets[i] : offsets[i + 1]] = edited
                jac[i] = jaccard_of(src % VOCAB, edited % VOCAB)
            texts.append(corpus.texts(tokens, offsets))
            member = plan.cluster[rows] >= 0
            truth["row"].append(rows[member])
            truth["cluster"].append(plan.cluster[rows][member])
            truth["jaccard"].append(jac[member])
        text = pa.chunked_array(texts).combine_chunks()
        text_bytes += int(pc.sum(pc.binary_length(text)).as_py() or 0)
        rows = np.arange(lo, hi)
        table = pa.table({
            "id": pa.array([f"syn-{r:010d}" for r in rows], pa.string()),
            "url": pa.array([f"https://s{b % 9973}.example.com/d/{r}" for b, r in zip(plan.base[rows].tolist(), rows.tolist())], pa.string()),
            "text": text,
            "language": pa.array(["en"] * len(rows), pa.string()),
        })
        st.write_parquet(f"documents/part-{f:05d}.parquet", table)
        if log and (f % 5 == 4 or f == n_files - 1):
            log(f"  synth: {f + 1}/{n_files} files, {hi:,} documents, {time.perf_counter() - t0:.1f} s")
    row = np.concatenate(truth["row"])
    cluster = np.concatenate(truth["cluster"])
    kinds = np.array(["source", "exact", "near"])
    gt = pa.table({
        "id": pa.array([f"syn-{r:010d}" for r in row.tolist()], pa.string()),
        "row": pa.array(row, pa.int64()),
        "cluster": pa.array(cluster, pa.int64()),
        "role": pa.array(kinds[plan.kind[row]]),
        "cluster_kind": pa.array(kinds[plan.cluster_kind[cluster]]),
        "size": pa.array(plan.sizes[cluster], pa.int32()),
        "jaccard": pa.array(np.concatenate(truth["jaccard"]), pa.float64()),
    })
    st.write_parquet("ground_truth.parquet", gt, row_group_size=100_000)
    near_j = np.concatenate(truth["jaccard"])[plan.kind[row] == 2]
    manifest = _manifest(p) | {
        "complete": True,
        "files": n_files,
        "documents": p.docs,
        "text_bytes": int(text_bytes),
        "clusters": {kind: {str(s): int(((plan.sizes == s) & (plan.cluster_kind == k)).sum()) for s in np.unique(plan.sizes)}
                     for k, kind in ((1, "exact"), (2, "near"))},
        "planted_duplicates": {"exact": int((plan.kind == 1).sum()), "near": int((plan.kind == 2).sum())},
        "near_jaccard": {"min": float(near_j.min()) if len(near_j) else None,
                         "mean": float(near_j.mean()) if len(near_j) else None,
                         "max": float(near_j.max()) if len(near_j) else None},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    st.write_json("synth.json", manifest, indent=1)
    return manifest


def ensure(out: str | Path | Storage, p: SynthParams, log=print) -> dict:
    """The manifest of the corpus ``p`` at ``out``, generating it unless :func:`is_current`."""
    st = as_storage(out)
    if is_current(st, p):
        return st.read_json("synth.json")
    return generate(st, p, log=log)


# scoring a dedup run against the ground truth


def evaluate(out: str | Path | Storage, output_subdir: str = "deduped") -> dict:
    """Recall of the planted clusters in ``OUT/<output_subdir>`` (a finished dedup run).

    A cluster of s planted documents is fully deduplicated when exactly one of them is kept.

    Returns:
        ``planted_duplicates`` (Σ s−1), ``duplicates_removed`` (Σ s − max(kept, 1)), ``recall``
        (their ratio), the same per cluster kind (``exact``/``near``: ``recall``), ``false_removals``
        (removed documents that are not planted duplicates: removed unplanted documents + clusters
        with nothing kept), ``wrongly_kept_pairs`` (Σ kept·(kept−1)/2 within clusters),
        ``expected_near_recall_min`` (mean P(candidate | J) = 1−(1−J^rows)^bands over near copies
        and their recorded J, read from ``stats/dedup.json``: a lower bound, copy-to-copy edges
        add to it), ``documents_kept``.
    """
    st = as_storage(out)
    man = st.read_json("synth.json")
    n = man["documents"]
    kept = np.zeros(n, bool)
    for name in st.list(output_subdir, suffix=".parquet"):
        ids = st.read_parquet(f"{output_subdir}/{name}", columns=["id"]).column("id")
        kept[pc.cast(pc.utf8_slice_codeunits(ids, 4), pa.int64()).to_numpy()] = True
    gt = st.read_parquet("ground_truth.parquet")
    row, cluster = gt.column("row").to_numpy(), gt.column("cluster").to_numpy()
    n_clusters = int(cluster.max()) + 1 if len(cluster) else 0
    size = np.bincount(cluster, minlength=n_clusters)
    k = np.bincount(cluster, weights=kept[row], minlength=n_clusters).astype(np.int64)
    member = np.zeros(n, bool)
    member[row] = True
    ckind = np.zeros(n_clusters, object)
    ckind[cluster] = gt.column("cluster_kind").to_numpy(zero_copy_only=False)
    res = {"documents_kept": int(kept.sum())}

    def score(sel):
        planted = int((size[sel] - 1).sum())
        removed = int((size[sel] - np.maximum(k[sel], 1)).sum())
        return planted, removed, (removed / planted if planted else 1.0)

    planted, removed, recall = score(np.ones(n_clusters, bool))
    res |= {"planted_duplicates": planted, "duplicates_removed": removed, "recall": recall}
    for kind in ("exact", "near"):
        pl, rm, rc = score(ckind == kind)
        res[kind] = {"planted_duplicates": pl, "duplicates_removed": rm, "recall": rc}
    res["false_removals"] = int((~kept & ~member).sum() + (k == 0).sum())
    res["wrongly_kept_pairs"] = int((k * (k - 1) // 2).sum())
    if st.isfile("stats/dedup.json"):
        mh = st.read_json("stats/dedup.json").get("minhash", {})
        b, r = mh.get("bands"), mh.get("rows")
        j = gt.column("jaccard").to_numpy()[gt.column("role").to_numpy(zero_copy_only=False) == "near"]
        if b and r and len(j):
            res["expected_near_recall_min"] = float(np.mean(1 - (1 - j**r) ** b))
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output root (OUT/documents/*.parquet, OUT/ground_truth.parquet, OUT/synth.json)")
    ap.add_argument("--docs", type=int, required=True, help="total documents N")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs-per-file", type=int, default=50_000)
    ap.add_argument("--exact-frac", type=float, default=0.10)
    ap.add_argument("--near-frac", type=float, default=0.10)
    ap.add_argument("--cluster-sizes", default="2,3,5,10,100,1000", help="comma-separated cluster sizes")
    ap.add_argument("--jaccard", default="0.85,0.95", help="near-copy Jaccard range MIN,MAX")
    ap.add_argument("--force", action="store_true", help="regenerate even when up to date")
    a = ap.parse_args(argv)
    jmin, jmax = (float(x) for x in a.jaccard.split(","))
    p = SynthParams(a.docs, a.seed, a.docs_per_file, a.exact_frac, a.near_frac,
                    [int(x) for x in a.cluster_sizes.split(",")], jmin, jmax)
    man = generate(a.out, p) if a.force else ensure(a.out, p)
    print(json.dumps({k: man[k] for k in ("files", "documents", "planted_duplicates", "near_jaccard", "seconds")}))


if __name__ == "__main__":
    main()
