"""Stage 1 of dedup: the LSH band rows of one document file (runs inside Ray Data tasks).

A document gives one row per LSH band of its MinHash signature and, with ``exact``, one row
for the XXH3-64 hash of its whole normalized text ("band" -1, :data:`EXACT_BAND`). The rows are
what the shuffle of stage 2 groups by ``part`` (see :mod:`webmill.curate.dedup`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webmill.curate import minhash as mh
from webmill.curate.dedup.config import EXACT_BAND, DedupConfig
from webmill.storage import Storage


def _iter_text_batches(storage: Storage, rel: str, batch_docs: int, max_batch_bytes: int) -> Iterator[tuple[int, list]]:
    """Yield ``(first_row, texts)`` of one Parquet file: at most ``batch_docs`` rows and, unless
    one document alone is larger, at most ``max_batch_bytes`` bytes of UTF-8 text."""
    row = 0
    for rb in storage.parquet_file(rel).iter_batches(batch_size=batch_docs, columns=["text"]):
        sizes = pc.binary_length(rb.column(0).cast(pa.large_binary())).fill_null(0).to_numpy()
        start = 0
        while start < len(sizes):
            end = start + max(1, int(np.searchsorted(np.cumsum(sizes[start:]), max_batch_bytes, side="right")))
            yield row + start, rb.column(0).slice(start, end - start).to_pylist()
            start = end
        row += len(sizes)


def band_rows_for_file(
    storage: Storage, rel: str, row_offset: int, cfg: DedupConfig, num_partitions: int
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the band rows of document file ``rel`` of ``storage``, one dict of arrays per batch.

    Each row is ``part`` (int32, ``key % num_partitions``), ``band`` (int16, -1 = exact key),
    ``key`` (uint64), ``doc`` (int64 global row index = ``row_offset`` + row in the file).
    A document with no word gets no MinHash rows (its exact row still groups all empty ones).
    """
    bands, rows = cfg.resolved_bands_rows()
    hasher = mh.MinHasher(cfg.num_perm, cfg.seed, cfg.shingle_size, cfg.hash_func, cfg.scheme, cfg.chunk_shingles)
    p = np.uint64(num_partitions)
    for first, texts in _iter_text_batches(storage, rel, cfg.batch_docs, cfg.max_batch_bytes):
        words, word_offsets = mh.split_words([mh.normalized_bytes(t) for t in texts])
        doc = np.arange(first, first + len(texts), dtype=np.int64) + row_offset
        parts: list[dict[str, np.ndarray]] = []
        if cfg.exact:
            key = mh.text_hashes(words, word_offsets)
            parts.append({"band": np.full(len(doc), EXACT_BAND, np.int16), "key": key, "doc": doc})
        if cfg.minhash:
            has_words = np.diff(word_offsets) > 0
            keys = mh.band_hashes(hasher.signatures_from_split(words, word_offsets)[has_words], bands, rows)
            parts.append({
                "band": np.tile(np.arange(bands, dtype=np.int16), len(keys)),
                "key": keys.reshape(-1),
                "doc": np.repeat(doc[has_words], bands),
            })
        out = {k: np.concatenate([q[k] for q in parts]) for k in ("band", "key", "doc")}
        yield {"part": (out["key"] % p).astype(np.int32), **out}


def band_rows_udf(batch: dict[str, np.ndarray], storage: Storage, cfg_dict: dict, num_partitions: int):
    """Ray Data ``map_batches`` function: ``batch`` holds ``name`` (file names relative to
    ``storage``) and ``row_offset``; yields the band rows of each file."""
    cfg = DedupConfig(**cfg_dict)
    for name, offset in zip(batch["name"], batch["row_offset"]):
        yield from band_rows_for_file(storage, str(name), int(offset), cfg, num_partitions)
