"""MinHash signatures (bit-for-bit datasketch), normalization, LSH bands and the S-curve."""

from __future__ import annotations

import math
import random

import datasketch
import numpy as np
import pytest
import xxhash
from datasketch.hashfunc import sha1_hash32 as datasketch_sha1_hash32
from jaccard_gen import jaccard_pair, load_html_documents, load_wet_documents, real_base_documents

from webmill.curate import minhash as mh
from webmill.curate import minhash_chars as mc



@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    texts = [d["text"] for d in load_wet_documents("cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz")]
    texts += [d["text"] for d in load_html_documents("heritrix_2012_fiscalitefrg-com_fr.warc.gz")]
    texts += [d["text"] for d in load_wet_documents("cc_CC-MAIN-2015-35_crate-example.warc.wet.gz")]
    texts += ["", "Deux mots", "one two three four"]  # no shingle, shorter than 5 words
    return texts


def datasketch_signature(text: str, hashfunc, scheme: str, num_perm=112, seed=1, k=5, batch=True):
    m = datasketch.MinHash(num_perm=num_perm, seed=seed, hashfunc=hashfunc, scheme=scheme)
    sh = mh.shingles(mh.normalize_words(text), k)
    if batch:
        m.update_batch(sh)
    else:
        for s in sh:
            m.update(s)
    return m.hashvalues


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("hash_name", mh.SHINGLE_HASHES)
def test_signatures_equal_datasketch_on_real_documents(real_texts, hash_name, scheme):
    # a small chunk forces documents to straddle chunk boundaries
    hasher = mh.MinHasher(num_perm=112, seed=1, shingle_size=5, hash_name=hash_name, scheme=scheme, chunk_shingles=997)
    sig = hasher.signatures(real_texts)
    assert sig.shape == (len(real_texts), 112)
    for i, text in enumerate(real_texts):
        ref = datasketch_signature(text, mh.shingle_hashfunc(hash_name), scheme, batch=i % 2 == 0)
        assert sig.dtype == ref.dtype
        np.testing.assert_array_equal(sig[i], ref, err_msg=f"document {i} ({hash_name}, {scheme})")


def test_default_datasketch_sha1_and_other_parameters(real_texts):
    # datasketch with no hashfunc uses sha1_hash32: our "sha1" must equal it; other num_perm/seed/k too
    assert all(mh.sha1_hash32(s) == datasketch_sha1_hash32(s) for s in [b"", b"a b c d e", "é".encode()])
    hasher = mh.MinHasher(num_perm=64, seed=42, shingle_size=3, hash_name="sha1")
    sig = hasher.signatures(real_texts[:6])
    for i, text in enumerate(real_texts[:6]):
        np.testing.assert_array_equal(sig[i], datasketch_signature(text, None, "affine32", 64, 42, 3))


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_permutations_match_datasketch(scheme):
    for num_perm, seed in [(112, 1), (7, 0), (256, 12345)]:
        ours = mh.datasketch_permutations(num_perm, seed, scheme)
        ref = np.asarray(datasketch.MinHash(num_perm=num_perm, seed=seed, scheme=scheme).permutations)
        np.testing.assert_array_equal(ours, ref)
        assert ours.dtype == ref.dtype


def test_chunk_size_does_not_change_signatures():
    texts = ["alpha beta gamma delta epsilon zeta eta theta " * 30, "", "x", "one two three four five six"]
    ref = mh.MinHasher(chunk_shingles=1 << 20).signatures(texts)
    for chunk in (1, 3, 64):
        np.testing.assert_array_equal(mh.MinHasher(chunk_shingles=chunk).signatures(texts), ref)
    assert (ref[1] == 2**32 - 1).all()  # no shingle: datasketch's empty MinHash
    assert not (ref[2] == 2**32 - 1).all()


def test_normalization():
    assert mh.normalize_words("Hello,   World!\n\tÉtat—l’été") == [
        b"hello", b"world", "e\u0301tat".encode(), b"l", "e\u0301te\u0301".encode()
    ]
    # NFKD folds compatibility forms (full-width letters, ligatures); symbols and emoji separate
    assert mh.normalize_text("ＡＢＣ ﬁne $5+3=8 😀ok") == "abc fine 5 3 8 ok"
    assert mh.normalize_words(None) == [] and mh.normalize_words(" ,;- ") == []
    # Devanagari vowel signs (combining marks) stay inside the word
    assert len(mh.normalize_words("हिन्दी भाषा")) == 2
    with pytest.raises(TypeError):
        mh.normalize_words(b"bytes")


def test_arrow_split_equals_python_split(real_texts):
    texts = real_texts + ["\ud800 lone surrogate", "  lead and trail  ", "x\u3000y\u00a0z"]
    words, offsets = mh.split_words([mh.normalized_bytes(t) for t in texts])
    flat = words.to_pylist()
    for i, t in enumerate(texts):
        assert flat[offsets[i] : offsets[i + 1]] == mh.normalize_words(t)
    assert mh.word_hashes(words).tolist() == [xxhash.xxh3_64_intdigest(w) for w in flat]
    assert mh.text_hashes(words, offsets).tolist() == [mh.text_hash64(mh.normalize_words(t)) for t in texts]
    assert mh.normalize_words("x\u3000y\u00a0z") == [b"x", b"y", b"z"]


def test_shingles_and_short_documents():
    words = mh.normalize_words("a b c d e f")
    assert mh.shingles(words, 5) == [b"a b c d e", b"b c d e f"]
    assert mh.shingles(words[:3], 5) == [b"a b c"]
    assert mh.shingles([], 5) == []
    hv, off = mh.MinHasher().shingle_hashes([words, words[:3], []])
    assert off.tolist() == [0, 2, 3, 3]
    assert hv.tolist() == [mh.xxh3_words_hash32(s) for s in mh.shingles(words, 5) + [b"a b c"]]
    with pytest.raises(ValueError, match="shingle_size"):
        mh.MinHasher(shingle_size=0)
    with pytest.raises(ValueError, match="unknown shingle hash"):
        mh.MinHasher(hash_name="md5")


@pytest.fixture(scope="module")
def zh_texts() -> list[str]:
    """Real Chinese pages (bundled Common Crawl sample) + short and separator-only texts."""
    docs = load_html_documents("cc_CC-MAIN-2020-34_resiliparse-sample.warc.gz")
    texts = [d["text"] for d in docs if sum("\u4e00" <= c <= "\u9fff" for c in d["text"]) > 50]
    assert len(texts) >= 8
    return texts + ["", "北京", "北京，欢迎 你!", "ＡＢ　ｃｄ", " ,;- ", "\ud800 孤立", "e\u0301té"]


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("hash_name", mh.SHINGLE_HASHES)
def test_char_signatures_equal_datasketch_on_real_chinese(zh_texts, hash_name, scheme):
    """Character shingles: datasketch fed mc.char_shingles with char_shingle_hashfunc gives the
    same signatures (k = 5 and 3; chunk boundaries inside documents)."""
    norm = [mh.normalized_bytes(t) for t in zh_texts]
    hasher = mh.MinHasher(hash_name=hash_name, scheme=scheme, chunk_shingles=997)
    for k in (5, 3):
        sig = hasher.signatures_from_chars(norm, k)
        for i, text in enumerate(zh_texts):
            m = datasketch.MinHash(num_perm=112, seed=1, hashfunc=mc.char_shingle_hashfunc(hash_name), scheme=scheme)
            m.update_batch(mc.char_shingles(mc.normalize_chars(text), k))
            np.testing.assert_array_equal(sig[i], m.hashvalues, err_msg=f"document {i} ({hash_name}, {scheme}, k={k})")


def test_char_split_and_shingles(zh_texts):
    assert mc.normalize_chars("北京，欢迎 你!") == "北京欢迎你"
    assert mc.normalize_chars("ＡＢ　ｃｄ") == "abcd"  # NFKD folds full-width forms, U+3000 separates
    cps, off = mc.split_chars([mh.normalized_bytes(t) for t in zh_texts])
    assert cps.dtype == np.uint32 and off.dtype == np.int64 and len(off) == len(zh_texts) + 1
    for i, t in enumerate(zh_texts):
        assert "".join(map(chr, cps[off[i] : off[i + 1]].tolist())) == mc.normalize_chars(t)
    assert mc.char_shingles("北京欢迎你们", 5) == ["北京欢迎你".encode(), "京欢迎你们".encode()]
    assert mc.char_shingles("北京", 5) == ["北京".encode()] and mc.char_shingles("", 5) == []
    with pytest.raises(ValueError, match="shingle size"):
        mc.char_shingles("abc", 0)
    # the char hash is xxh3_words of the characters joined by spaces; shingles do not depend on separators
    assert mc.xxh3_chars_hash32("北京欢迎你".encode()) == mh.xxh3_words_hash32(" ".join("北京欢迎你").encode())
    hv, off = mh.MinHasher().char_shingle_hashes_split(*mc.split_chars([mh.normalized_bytes("北京，欢迎 你们!"), b"", b"ab"]), 5)
    assert off.tolist() == [0, 2, 2, 3]
    assert hv.tolist() == [mc.xxh3_chars_hash32(s) for s in mc.char_shingles("北京欢迎你们", 5) + [b"ab"]]


def test_mixed_batch_matches_per_mode_signatures(zh_texts, real_texts):
    """signatures_mixed puts each document's word or character signature back in row order; an
    all-word batch is exactly signatures_from_split."""
    texts = [t for pair in zip(zh_texts, real_texts) for t in pair]
    norm = [mh.normalized_bytes(t) for t in texts]
    char_k = np.array([(5, 0, 3)[i % 3] for i in range(len(texts))])
    hasher = mh.MinHasher(chunk_shingles=501)
    sig = hasher.signatures_mixed(norm, char_k)
    for i in range(len(texts)):
        one = (hasher.signatures_from_chars([norm[i]], int(char_k[i])) if char_k[i]
               else hasher.signatures_from_split(*mh.split_words([norm[i]])))
        np.testing.assert_array_equal(sig[i], one[0], err_msg=f"document {i}, k={char_k[i]}")
    words = mh.split_words(norm)
    np.testing.assert_array_equal(hasher.signatures_mixed(norm, np.zeros(len(texts), np.int64), *words),
                                  hasher.signatures_from_split(*words))
    with pytest.raises(ValueError, match="char_k"):
        hasher.signatures_mixed(norm, char_k[:-1])


def test_band_hashes():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, (3, 112), dtype=np.uint64).astype(np.uint32)
    sig[1] = sig[0]
    sig[1, 8 * 3 + 2] ^= 1  # differ in band 3 only
    keys = mh.band_hashes(sig, 14, 8)
    assert keys.shape == (3, 14) and keys.dtype == np.uint64
    assert (keys[0] == keys[1]).sum() == 13 and keys[0, 3] != keys[1, 3]
    assert not np.isin(keys[2], keys[0]).any()
    with pytest.raises(ValueError, match="exceeds"):
        mh.band_hashes(sig, 15, 8)


def test_s_curve_and_optimal_parameters():
    p = mh.candidate_probability(np.array([0.5, 0.7, 0.8, 0.9]), 14, 8)
    np.testing.assert_allclose(p, [0.0533, 0.5645, 0.9235, 0.9996], atol=1e-4)
    for threshold in (0.7, 0.8, 0.9):
        lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=112)
        assert mh.optimal_bands_rows(threshold, 112) == (lsh.b, lsh.r)
    with pytest.raises(ValueError, match="threshold"):
        mh.optimal_bands_rows(1.5, 112)


def _is_candidate(hasher: mh.MinHasher, a: list[bytes], b: list[bytes], bands=14, rows=8) -> bool:
    keys = mh.band_hashes(hasher.signatures_from_words([a, b]), bands, rows)
    return bool((keys[0] == keys[1]).any())


@pytest.fixture(scope="module")
def bases() -> list[list[bytes]]:
    docs = real_base_documents(min_words=200)
    assert len(docs) >= 15
    return docs


def test_recall_and_precision_on_pairs_with_known_jaccard(bases):
    """FineWeb 14x8: in every J bin of [0.8, 1.0] the candidate rate reaches the S-curve's
    P(candidate) = 1-(1-J^8)^14 of its pairs within 3 binomial sigma (so a fall at J ~ 0.8 is
    not hidden by the easy pairs near 1.0); overall recall >= 0.9; precision >= 0.98 against
    pairs with J < 0.5."""
    rng = random.Random(7)
    hasher = mh.MinHasher()  # the production default: seed 1, xxh3_words, affine32
    edges = (0.8, 0.85, 0.9, 0.95, 1.0)
    per_bin = 150  # the margin 3 sigma + 1 is then ~8 of 150 pairs (5 %) in the lowest bin
    tp = 0
    for lo, hi in zip(edges, edges[1:]):
        pairs = [(bases[i % len(bases)], *jaccard_pair(bases[i % len(bases)], rng.uniform(lo, hi), rng))
                 for i in range(per_bin)]
        assert min(j for _, _, j in pairs) >= lo - 0.01 and max(j for _, _, j in pairs) <= hi + 0.01
        probs = [float(mh.candidate_probability(j, 14, 8)) for _, _, j in pairs]
        hits = sum(_is_candidate(hasher, base, w) for base, w, _ in pairs)
        expected = sum(probs)
        sigma = math.sqrt(sum(p * (1 - p) for p in probs))
        assert hits >= expected - 3 * sigma - 1, (
            f"J in [{lo}, {hi}): {hits}/{per_bin} candidates, S-curve expects {expected:.1f}±{sigma:.1f}")
        tp += hits
    n_pos = per_bin * (len(edges) - 1)
    neg = [jaccard_pair(bases[i % len(bases)], rng.uniform(0.2, 0.5), rng) for i in range(300)]
    assert max(j for _, j in neg) < 0.51
    fp = sum(_is_candidate(hasher, bases[i % len(bases)], w) for i, (w, _) in enumerate(neg))
    recall, precision = tp / n_pos, tp / (tp + fp)
    assert recall >= 0.9, f"recall {recall:.3f} (tp={tp})"
    assert precision >= 0.98, f"precision {precision:.3f} (tp={tp}, fp={fp})"


@pytest.mark.parametrize("target", [0.5, 0.6, 0.7, 0.8])
def test_candidate_rate_follows_s_curve(bases, target):
    """Observed P(candidate) vs 1-(1-J^8)^14 within 3 binomial sigma (a new seed per pair)."""
    rng = random.Random(int(target * 100))
    n, hits, probs = 300, 0, []
    for i in range(n):
        base = bases[i % len(bases)]
        edited, j = jaccard_pair(base, target, rng)
        probs.append(float(mh.candidate_probability(j, 14, 8)))
        hits += _is_candidate(mh.MinHasher(seed=1000 + i), base, edited)
    expected = sum(probs)
    sigma = math.sqrt(sum(p * (1 - p) for p in probs))
    assert abs(hits - expected) <= 3 * sigma + 1, f"J~{target}: {hits}/{n} candidates, expected {expected:.1f}±{sigma:.1f}"
