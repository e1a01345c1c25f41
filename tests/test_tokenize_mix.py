"""Unit tests of the tokenize step's split assignment, mixing and shuffling (webmill.tokenize.mix),
and of the one document check that the shard writer and reader share (webmill.tokenize.format)."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from webmill.errors import UserError
from webmill.tokenize.format import ShardError, add_source_counts, check_documents
from webmill.tokenize.mix import assign_splits, check_mix, mix_weights, shuffled_order, train_tokens_by_source

IDS = [f"<urn:uuid:{i:08x}-doc>" for i in range(4000)]


# ---- split assignment -------------------------------------------------------------------------
def test_assign_splits_is_the_id_hash_rule():
    is_val = assign_splits(IDS, 0.1)
    want = [xxhash.xxh64_intdigest(s.encode("utf-8"), 0) / 2**64 < 0.1 for s in IDS]
    assert is_val.tolist() == want  # exactly the documented rule
    assert 300 < is_val.sum() < 500  # ≈ 10 % of 4,000
    # a document's split depends on its id only: order and the other documents do not matter
    perm = np.random.default_rng(1).permutation(len(IDS))
    assert assign_splits([IDS[i] for i in perm], 0.1).tolist() == is_val[perm].tolist()
    assert assign_splits(IDS[:1000], 0.1).tolist() == is_val[:1000].tolist()
    assert not assign_splits(IDS, 0.0).any()


def test_assign_splits_keeps_one_document_on_each_side():
    h = [xxhash.xxh64_intdigest(s.encode("utf-8"), 0) for s in IDS[:5]]
    tiny = assign_splits(IDS[:5], 1e-12)  # no hash is that small: the smallest goes to val
    assert tiny.tolist() == [i == int(np.argmin(h)) for i in range(5)]
    almost_all = assign_splits(IDS[:5], 0.999999999)  # all below: the largest stays in train
    assert almost_all.tolist() == [i != int(np.argmax(h)) for i in range(5)]
    assert assign_splits(IDS[:1], 0.5).tolist() == [False]  # one document: train only


# ---- mixing -----------------------------------------------------------------------------------
def _corpus():
    codes = np.array([i % 3 for i in range(len(IDS))], dtype=np.int32)  # web, wiki, code
    sources = {"web": 0, "wiki": 1, "code": 2}
    buckets = np.array([np.nan if i % 5 == 0 else i % 4 for i in range(len(IDS))])
    return codes, sources, buckets


def test_mix_weights_match_sources_and_buckets_and_multiply():
    codes, sources, buckets = _corpus()
    assert mix_weights(None, codes, sources, buckets).tolist() == [1.0] * len(IDS)
    w = mix_weights({"wiki": 2.0, "bucket:3": 0.5, "code": 0}, codes, sources, buckets)
    for i in range(len(IDS)):
        want = (2.0 if codes[i] == 1 else 0.0 if codes[i] == 2 else 1.0) * (0.5 if buckets[i] == 3 else 1.0)
        assert w[i] == want, i
    with pytest.raises(UserError, match=r"mix key 'news' matches no document source; sources in the input: \['code', 'web', 'wiki'\]"):
        mix_weights({"news": 2}, codes, sources, buckets)
    with pytest.raises(UserError, match="mix key 'bucket:9' matches no document"):
        mix_weights({"bucket:9": 2}, codes, sources, buckets)
    with pytest.raises(UserError, match="bucket must be an int"):
        mix_weights({"bucket:x": 2}, codes, sources, buckets)
    with pytest.raises(UserError, match="finite and >= 0"):
        check_mix({"web": -1.0})
    with pytest.raises(UserError, match="finite and >= 0"):
        check_mix({"web": float("nan")})


def test_shuffled_order_repeats_by_weight_and_shuffles_each_split():
    codes, sources, buckets = _corpus()
    is_val = assign_splits(IDS, 0.05)
    w = mix_weights({"wiki": 2.0, "code": 0.5}, codes, sources, buckets)
    train, val = shuffled_order(is_val, w, IDS, seed=7)
    counts = np.bincount(train, minlength=len(IDS))
    tr = ~is_val
    assert (counts[tr & (codes == 0)] == 1).all()  # weight 1: once
    assert (counts[tr & (codes == 1)] == 2).all()  # weight 2: twice
    half = counts[tr & (codes == 2)]
    assert set(half.tolist()) <= {0, 1} and 0.4 < half.mean() < 0.6  # weight 0.5: about half
    u = np.array([xxhash.xxh64_intdigest(IDS[i].encode("utf-8"), 8) / 2**64 for i in range(len(IDS))])
    assert (counts[tr & (codes == 2)] == (u[tr & (codes == 2)] < 0.5)).all()  # the seed+1 hash rule
    assert (counts[is_val] == 0).all() and sorted(val.tolist()) == np.flatnonzero(is_val).tolist()
    # a global shuffle: not in input order, reproducible from the seed, another seed differs
    assert train.tolist() != sorted(train.tolist())
    again = shuffled_order(is_val, w, IDS, seed=7)
    assert again[0].tolist() == train.tolist() and again[1].tolist() == val.tolist()
    other = shuffled_order(is_val, w, IDS, seed=8)
    assert other[0].tolist() != train.tolist() and sorted(other[1].tolist()) == sorted(val.tolist())


def test_train_tokens_by_source_before_mixing():
    codes = np.array([0, 1, 0, 1, 2], dtype=np.int32)
    lengths = np.array([10, 20, 30, 40, 50])
    names = np.array(["web", "wiki", "code"], dtype=object)
    assert train_tokens_by_source(lengths, codes, names, np.array([0, 1, 2])) == {"web": 40, "wiki": 20, "code": 0}


# ---- the shared document check and source counts ----------------------------------------------
def test_check_documents_names_the_first_bad_document():
    ids = ["a", "b", "c"]
    ok = np.array([5, 9, 7, 9, 9]), np.array([0, 2, 4, 5])
    check_documents(*ok, eot_id=9, vocab_size=10, doc_id=ids.__getitem__)
    with pytest.raises(ShardError, match="^f.parquet: row group 2, document 'b' ends with token 7, not eot_id 9"):
        check_documents(np.array([5, 9, 7, 7, 9]), ok[1], 9, 10, ids.__getitem__, "f.parquet: row group 2, ")
    with pytest.raises(ShardError, match="^document 'b' has no tokens"):
        check_documents(np.array([5, 9, 9]), np.array([0, 2, 2, 3]), 9, 10, ids.__getitem__)
    with pytest.raises(ShardError, match=r"token ids must lie in \[0, 10\), got \[-1, 9\]"):
        check_documents(np.array([-1, 9, 9, 9]), np.array([0, 2, 3, 4]), 9, 10, ids.__getitem__)
    with pytest.raises(ShardError, match=r"token ids must lie in \[0, 9\), got \[5, 9\]"):
        check_documents(*ok, eot_id=9, vocab_size=9, doc_id=ids.__getitem__)


def test_add_source_counts_accumulates():
    counts: dict = {}
    add_source_counts(counts, ["b", "a", "b"], np.array([3, 4, 5]))
    add_source_counts(counts, ["a"], np.array([1]))
    add_source_counts(counts, [], np.array([], dtype=np.int64))
    assert counts == {"a": {"num_tokens": 5, "num_documents": 2}, "b": {"num_tokens": 8, "num_documents": 2}}
    assert list(counts["a"]) == ["num_tokens", "num_documents"]  # the manifest's key order
