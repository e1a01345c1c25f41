"""Token-shard loader: packing, rank partition, order, resume mid-shard, val batches."""

import numpy as np
import pytest
import torch
from test_train_helpers import counting_docs, make_shards, one_thread  # noqa: F401 (autouse fixture)

from webmill.errors import UserError
from webmill.tokenize.shards import check_shards
from webmill.train.data import (
    ShardLoader,
    epoch_permutation,
    list_units,
    load_val_batches,
    read_unit_tokens,
)

VOCAB = 100_277  # uint32 shards; ids below the EOT (100,276) are all distinct here
EOT = VOCAB - 1
B, T = 2, 16


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    # 96 train docs of 50 tokens (+EOT) in row groups of 4 docs → 24 units over 3 files
    make_shards(d, {"train": counting_docs(96, 50), "val": counting_docs(10, 50, start=50_000)},
                VOCAB, row_group_rows=4, shard_tokens=32 * 51)
    return d, check_shards(d)


def epoch_batches(loader, stream_idx, epoch):
    """All batches of one stream in `epoch` (advancing the loader)."""
    s = loader.streams[stream_idx]
    out = []
    while True:
        x, y = loader.next_batch(stream_idx)
        if s.epoch != epoch:
            return out, (x, y)
        out.append((x, y))


def test_units_cover_files_and_row_groups(shards):
    d, m = shards
    units = list_units(d, m, "train")
    assert len({u.path for u in units}) == len([f for f in m["files"] if f["split"] == "train"]) >= 3
    assert len(units) == 24
    assert sum(u.num_tokens for u in units) == m["splits"]["train"]["num_tokens"] == 96 * 51


def test_batches_are_contiguous_packed_windows(shards):
    d, m = shards
    loader = ShardLoader(d, m, B, T, seed=0)
    batches = [loader.next_batch() for _ in range(20)]
    x, y = batches[0]
    assert x.shape == y.shape == (B, T) and x.dtype == torch.int64
    assert torch.equal(y.reshape(-1)[:-1], x.reshape(-1)[1:])  # targets = inputs shifted by one
    # the stream is its row groups' documents concatenated in epoch order, EOTs kept, no padding
    s = loader.streams[0]
    expected = np.concatenate([read_unit_tokens(u) for u in s.order]).astype(np.int64)
    for i, (x, y) in enumerate(batches):
        window = expected[i * B * T : (i + 1) * B * T + 1]
        assert np.array_equal(x.reshape(-1).numpy(), window[:-1])
        assert np.array_equal(y.reshape(-1).numpy(), window[1:])
    assert (expected[50::51] == EOT).all() and (expected[expected != EOT] < 96 * 50).all()


def test_ranks_are_disjoint_and_cover_the_epoch(shards):
    d, m = shards
    world, accum = 2, 3  # 6 streams
    seen_units, seen_tokens, dropped = [], [], 0
    for rank in range(world):
        loader = ShardLoader(d, m, B, T, rank=rank, world_size=world, streams_per_rank=accum, seed=7)
        for a in range(accum):
            s = loader.streams[a]
            s._plan()
            seen_units += [(u.path, u.row_group) for u in s.order]
            batches, _ = epoch_batches(loader, a, 0)
            toks = [torch.cat([x.reshape(-1), y.reshape(-1)[-1:]]) for x, y in batches]
            seen_tokens.append(torch.cat(toks).numpy() if toks else np.array([], dtype=np.int64))
            dropped += int(s.cum[-1]) - (len(batches) * B * T + 1)
    all_units = [(u.path, u.row_group) for u in list_units(d, m, "train")]
    assert sorted(seen_units) == sorted(all_units)  # each row group read by exactly one stream
    ids = np.concatenate([t[t != EOT] for t in seen_tokens])
    # consecutive batches share one token (the last target is the next input), so dedupe
    # within a stream only; across streams ids must be disjoint
    per_stream = [set(t[t != EOT].tolist()) for t in seen_tokens]
    assert sum(len(s) for s in per_stream) == len(set().union(*per_stream))
    union = set(ids.tolist())
    assert union <= set(range(96 * 50))
    # everything is covered except each stream's incomplete final batch
    assert 96 * 50 - len(union) <= dropped
    assert dropped < 6 * (B * T + 1)


def test_order_is_a_pure_function_of_seed_and_epoch(shards):
    d, m = shards
    assert np.array_equal(epoch_permutation(24, 3, 0), epoch_permutation(24, 3, 0))
    assert not np.array_equal(epoch_permutation(24, 3, 0), epoch_permutation(24, 3, 1))
    assert not np.array_equal(epoch_permutation(24, 3, 0), epoch_permutation(24, 4, 0))
    a = ShardLoader(d, m, B, T, seed=3)
    b = ShardLoader(d, m, B, T, seed=3)
    c = ShardLoader(d, m, B, T, seed=4)
    xa = [a.next_batch()[0] for _ in range(5)]
    assert all(torch.equal(p, b.next_batch()[0]) for p in xa)
    assert not all(torch.equal(p, c.next_batch()[0]) for p in xa)
    # the second epoch visits the units in another order
    loader = ShardLoader(d, m, B, T, seed=3)
    ep0, first1 = epoch_batches(loader, 0, 0)
    ep1, _ = epoch_batches(loader, 0, 1)
    ep1 = [first1] + ep1
    assert len(ep0) == len(ep1) == (96 * 51 - 1) // (B * T)  # one stream holds everything
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(ep0, ep1))
    key = lambda batches: sorted(tuple(x.reshape(-1).tolist()) for x, _ in batches)
    assert key(ep0[:10]) != key(ep1[:10])


def test_resume_mid_shard_gives_the_same_batches(shards):
    d, m = shards
    ref = ShardLoader(d, m, B, T, world_size=1, streams_per_rank=2, seed=11)
    for _ in range(37):  # ~37 × 32 tokens per stream: past several row groups and one file
        ref.next_batch(0)
        ref.next_batch(1)
    state = ref.state_dict()
    assert any(0 < s["pos"] for s in state["streams"])
    expected = [(ref.next_batch(0), ref.next_batch(1)) for _ in range(200)]  # crosses an epoch end

    resumed = ShardLoader(d, m, B, T, world_size=1, streams_per_rank=2, seed=11)
    resumed.load_state_dict(state)
    for (e0, e1) in expected:
        for e, got in ((e0, resumed.next_batch(0)), (e1, resumed.next_batch(1))):
            assert torch.equal(e[0], got[0]) and torch.equal(e[1], got[1])
    assert resumed.state_dict()["streams"][0]["epoch"] >= 1


def test_resume_refuses_another_layout(shards):
    d, m = shards
    state = ShardLoader(d, m, B, T, streams_per_rank=2, seed=1).state_dict()
    with pytest.raises(UserError, match="num_streams"):
        ShardLoader(d, m, B, T, streams_per_rank=3, seed=1).load_state_dict(state)
    with pytest.raises(UserError, match="seed"):
        ShardLoader(d, m, B, T, streams_per_rank=2, seed=2).load_state_dict(state)


def test_too_few_row_groups_is_a_clear_error(shards):
    d, m = shards
    with pytest.raises(UserError, match="24 Parquet row groups.*30 streams"):
        ShardLoader(d, m, B, T, world_size=3, streams_per_rank=10)
    with pytest.raises(UserError, match="fewer than one batch"):
        ShardLoader(d, m, 100, 64).next_batch()


def test_val_batches_are_fixed_and_split_across_ranks(shards):
    d, m = shards
    allb = load_val_batches(d, m, B, T, max_tokens=4 * B * T)
    assert len(allb) == 4
    assert allb[0][0][0, 0] == 50_000  # val split starts at its first document
    r0 = load_val_batches(d, m, B, T, 4 * B * T, rank=0, world_size=2)
    r1 = load_val_batches(d, m, B, T, 4 * B * T, rank=1, world_size=2)
    assert [torch.equal(a[0], b[0]) for a, b in zip(allb, [r0[0], r1[0], r0[1], r1[1]])] == [True] * 4
    assert load_val_batches(d, m, B, T, max_tokens=B * T - 1) == []
    # capped by the data: 10 val docs × 51 tokens
    assert len(load_val_batches(d, m, B, T, max_tokens=10**6)) == (10 * 51 - 1) // (B * T)
