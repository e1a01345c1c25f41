"""Batches of token windows from webmill token shards (format v1, ``docs/shard-format.md``).

Packing (as llm.c's ``DataLoaderLite`` / nanoGPT's ``get_batch`` on a flat token file): the
documents of a stream are concatenated in order — each already ends with the EOT token, so a
window may cross a document boundary but there is no padding anywhere — and a batch is
``B * T + 1`` consecutive tokens viewed as inputs ``x = buf[:-1].view(B, T)`` and targets
``y = buf[1:].view(B, T)``; the next batch starts ``B * T`` tokens later. At the end of an epoch
the final incomplete batch is dropped.

Partition and order. The unit of reading is one Parquet row group (~1,000 documents). For each
epoch the list of all row groups of the split is permuted by
``numpy.random.default_rng([seed, epoch])`` — a pure function of ``(seed, epoch)`` — and dealt
round-robin to ``S = world_size × streams_per_rank`` streams: stream ``s`` reads units
``perm[s::S]``. The trainer uses one stream per gradient-accumulation micro-step, and rank ``r``
owns streams ``r·A … r·A + A − 1`` (``A`` = accumulation steps). Ranks therefore read disjoint
row groups, their union is the whole split, and a run with ``world_size × accumulation`` fixed
sees the same data whether it runs as 1 process or N (the trainer's DDP test relies on it).
Each stream walks through its own epochs independently; its cursor is ``(epoch, position)``,
position being the token offset in that epoch's concatenation, and is saved in checkpoints.

Shards are read through :class:`webmill.storage.Storage`, so ``shard_dir`` may be a local path
or an fsspec URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from webmill.errors import UserError
from webmill.storage import Storage, as_storage, is_url


@dataclass(frozen=True)
class Unit:
    """One Parquet row group of one shard file: ``path`` (local path or URL), ``row_group``
    index, ``num_tokens``."""

    path: str
    row_group: int
    num_tokens: int


def _parquet_file(path: str):
    """A ``pyarrow.parquet.ParquetFile`` over a shard file given as a local path or a URL."""
    parent, name = path.rsplit("/", 1) if is_url(path) else os.path.split(path)
    return as_storage(parent or ".").parquet_file(name)


def list_units(shard_dir: str | os.PathLike | Storage, manifest: dict, split: str) -> list[Unit]:
    """All row groups of ``split`` in manifest order (files sorted by name, row groups in order).

    Reads only the ``num_tokens`` column of each file. Returns a list of :class:`Unit`.

    Raises:
        UserError: a file cannot be read (names it).
    """
    st = as_storage(shard_dir)
    units = []
    for entry in manifest["files"]:
        if entry["split"] != split:
            continue
        path = st.uri(entry["path"])
        try:
            pf = st.parquet_file(entry["path"])
            for i in range(pf.num_row_groups):
                n = pf.read_row_group(i, columns=["num_tokens"]).column("num_tokens").to_numpy()
                units.append(Unit(path, i, int(n.sum(dtype=np.int64))))
        except OSError as e:
            raise UserError(f"{path}: cannot read row groups ({e}); re-run `curate tokenize`") from e
    return units


def read_unit_tokens(unit: Unit) -> np.ndarray:
    """Flat token ids of one row group (its documents concatenated), 1-D uint16/uint32 array."""
    col = _parquet_file(unit.path).read_row_group(unit.row_group, columns=["tokens"]).column("tokens")
    col = col.combine_chunks()
    offs = col.offsets.to_numpy()
    return col.values.to_numpy()[offs[0] : offs[-1]]


def epoch_permutation(num_units: int, seed: int, epoch: int) -> np.ndarray:
    """Order of the ``num_units`` row groups in ``epoch``: a permutation, int64 array (num_units,)."""
    return np.random.default_rng([seed, epoch]).permutation(num_units)


class _Stream:
    """One reader: the units ``perm[stream::num_streams]`` of each epoch, packed into batches."""

    def __init__(self, units: list[Unit], stream: int, num_streams: int, seed: int, batch_tokens: int):
        self.units, self.stream, self.num_streams = units, stream, num_streams
        self.seed, self.need = seed, batch_tokens + 1  # B*T + 1 tokens per batch
        self.epoch, self.pos = 0, 0
        self._plan_epoch: int | None = None
        self._cache: dict[int, np.ndarray] = {}

    def _plan(self) -> None:
        """Units and cumulative token offsets of the current epoch for this stream."""
        if self._plan_epoch == self.epoch:
            return
        perm = epoch_permutation(len(self.units), self.seed, self.epoch)
        self.order = [self.units[i] for i in perm[self.stream :: self.num_streams]]
        self.cum = np.concatenate([[0], np.cumsum([u.num_tokens for u in self.order])]).astype(np.int64)
        self._plan_epoch, self._cache = self.epoch, {}
        if self.cum[-1] < self.need:
            raise UserError(
                f"data stream {self.stream} of {self.num_streams} gets only {int(self.cum[-1])} tokens in "
                f"epoch {self.epoch}, fewer than one batch (B*T+1 = {self.need}); use more data, a smaller "
                "--micro-batch/--block-size, or fewer processes × accumulation steps"
            )

    def _tokens(self, start: int, stop: int) -> np.ndarray:
        first = int(np.searchsorted(self.cum, start, side="right")) - 1
        last = int(np.searchsorted(self.cum, stop, side="left")) - 1
        for k in [k for k in self._cache if k < first]:
            del self._cache[k]
        parts = []
        for k in range(first, last + 1):
            if k not in self._cache:
                self._cache[k] = read_unit_tokens(self.order[k])
            lo = max(start - self.cum[k], 0)
            hi = min(stop - self.cum[k], self.order[k].num_tokens)
            parts.append(self._cache[k][lo:hi])
        return np.concatenate(parts)

    def next_tokens(self) -> np.ndarray:
        self._plan()
        if self.pos + self.need > self.cum[-1]:  # drop the incomplete tail; next epoch
            self.epoch, self.pos = self.epoch + 1, 0
            self._plan()
        buf = self._tokens(self.pos, self.pos + self.need)
        self.pos += self.need - 1
        return buf


class ShardLoader:
    """Infinite iterator of ``(x, y)`` int64 batches of shape (B, T) for one rank.

    Args:
        shard_dir: directory with ``manifest.json`` and ``shard-*.parquet``.
        manifest: the dict returned by ``check_shards(shard_dir)``.
        batch_size: ``B`` rows per micro-batch (int > 0).
        block_size: ``T`` tokens per row (int > 0).
        split: ``"train"`` (default) or ``"val"``.
        rank, world_size: this process's DDP rank and the number of processes.
        streams_per_rank: readers per rank (the trainer passes its gradient-accumulation steps);
            :meth:`next_batch` ``(i)`` reads stream ``i``.
        seed: order seed; epoch ``e`` uses ``default_rng([seed, e])``.

    Raises:
        UserError: the split has no row groups, or fewer row groups than
            ``world_size × streams_per_rank`` (each stream needs at least one).
    """

    def __init__(
        self,
        shard_dir: str | os.PathLike | Storage,
        manifest: dict,
        batch_size: int,
        block_size: int,
        *,
        split: str = "train",
        rank: int = 0,
        world_size: int = 1,
        streams_per_rank: int = 1,
        seed: int = 0,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.B, self.T, self.seed = batch_size, block_size, seed
        self.rank, self.world_size, self.streams_per_rank = rank, world_size, streams_per_rank
        where = as_storage(shard_dir).uri()
        self.units = list_units(shard_dir, manifest, split)
        S = world_size * streams_per_rank
        if not self.units:
            raise UserError(f"{where}: the manifest lists no {split!r} documents; tokenize a {split} split")
        if len(self.units) < S:
            raise UserError(
                f"{where}: split {split!r} has {len(self.units)} Parquet row groups but this run reads "
                f"{S} streams (processes {world_size} × accumulation steps {streams_per_rank}); each needs "
                "at least one — re-tokenize with smaller row groups, or raise --micro-batch to lower the "
                "accumulation steps"
            )
        self.streams = [
            _Stream(self.units, rank * streams_per_rank + a, S, seed, batch_size * block_size)
            for a in range(streams_per_rank)
        ]

    def next_batch(self, micro_step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Next batch of stream ``micro_step``: ``x, y`` int64 CPU tensors of shape (B, T)."""
        buf = torch.from_numpy(self.streams[micro_step].next_tokens().astype(np.int64))
        return buf[:-1].view(self.B, self.T), buf[1:].view(self.B, self.T)

    def state_dict(self) -> dict:
        """Cursor of this rank's streams: ``{"streams": [{"stream", "epoch", "pos"}], ...}``."""
        return {
            "seed": self.seed,
            "batch_size": self.B,
            "block_size": self.T,
            "num_streams": self.world_size * self.streams_per_rank,
            "streams": [{"stream": s.stream, "epoch": s.epoch, "pos": s.pos} for s in self.streams],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a cursor saved by :meth:`state_dict`; resumes mid-shard at the exact token.

        Raises:
            UserError: seed, batch shape or stream layout differ from this loader's.
        """
        mine = self.state_dict()
        for k in ("seed", "batch_size", "block_size", "num_streams"):
            if state.get(k) != mine[k]:
                raise UserError(
                    f"checkpoint data cursor has {k}={state.get(k)!r} but this run has {mine[k]!r}; resume "
                    "with the same --seed, --micro-batch, --block-size and processes × accumulation steps"
                )
        want = [s["stream"] for s in mine["streams"]]
        got = [s["stream"] for s in state["streams"]]
        if got != want:
            raise UserError(f"checkpoint data cursor is for streams {got}, this rank reads {want}")
        for s, st in zip(self.streams, state["streams"]):
            s.epoch, s.pos = int(st["epoch"]), int(st["pos"])


def load_val_batches(
    shard_dir: str | os.PathLike | Storage,
    manifest: dict,
    batch_size: int,
    block_size: int,
    max_tokens: int,
    rank: int = 0,
    world_size: int = 1,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation set: the first ``max_tokens`` target tokens of the ``val`` split.

    Val documents are concatenated in manifest order (no shuffling) and cut into batches as in
    training (``B*T+1`` tokens, stride ``B*T``); batch ``i`` belongs to rank ``i % world_size``.
    Returns a list of ``(x, y)`` int64 tensors (B, T); empty when there is no val split or
    ``max_tokens < B*T``.
    """
    per = batch_size * block_size
    n_batches = max_tokens // per
    units = list_units(shard_dir, manifest, "val")
    if n_batches == 0 or not units:
        return []
    parts, have = [], 0
    for u in units:
        if have >= n_batches * per + 1:
            break
        parts.append(read_unit_tokens(u))
        have += u.num_tokens
    flat = torch.from_numpy(np.concatenate(parts).astype(np.int64))
    n_batches = min(n_batches, (flat.numel() - 1) // per)
    out = []
    for i in range(rank, n_batches, world_size):
        buf = flat[i * per : i * per + per + 1]
        out.append((buf[:-1].view(batch_size, block_size), buf[1:].view(batch_size, block_size)))
    return out
