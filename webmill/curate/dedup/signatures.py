"""Stage 1 of dedup: the LSH band rows of one document file (runs inside Ray Data tasks).

A document gives one row per LSH band of its MinHash signature and, with ``exact``, one row
for the XXH3-64 hash of its whole normalized text ("band" -1, :data:`EXACT_BAND`). The rows are
what the shuffle of stage 2 groups by ``part`` (see :mod:`webmill.curate.dedup`).

Shingles follow the document's ``language`` column (lid.176 label) when the file has one: a
language in ``cfg.char_shingles`` (zh, ja, th, ...) gets ``k``-character shingles of its
normalized text with separators removed, any other language, a null or a file without the
column gets ``shingle_size``-word shingles (:meth:`MinHasher.signatures_mixed`; docs/dedup.md,
"Languages without spaces"). The exact key is the whole normalized text either way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webmill.curate import minhash as mh
from webmill.curate.dedup.config import EXACT_BAND, DedupConfig
from webmill.curate.dedup.index import KeyStager
from webmill.storage import Storage


def _iter_text_batches(storage: Storage, rel: str, batch_docs: int,
                       max_batch_bytes: int) -> Iterator[tuple[int, list, list | None]]:
    """Yield ``(first_row, texts, languages)`` of one Parquet file: at most ``batch_docs`` rows
    and, unless one document alone is larger, at most ``max_batch_bytes`` bytes of UTF-8 text.
    ``languages`` is the ``language`` column's values (str or None) or None without the column."""
    pf = storage.parquet_file(rel)
    columns = ["text", "language"] if "language" in pf.schema_arrow.names else ["text"]
    row = 0
    for rb in pf.iter_batches(batch_size=batch_docs, columns=columns):
        text = rb.column(0)
        sizes = pc.binary_length(text.cast(pa.large_binary())).fill_null(0).to_numpy()
        start = 0
        while start < len(sizes):
            end = start + max(1, int(np.searchsorted(np.cumsum(sizes[start:]), max_batch_bytes, side="right")))
            langs = rb.column(1).slice(start, end - start).to_pylist() if len(columns) == 2 else None
            yield row + start, text.slice(start, end - start).to_pylist(), langs
            start = end
        row += len(sizes)


def char_shingle_sizes(languages: list | None, char_shingles: dict, n_docs: int) -> np.ndarray:
    """Characters per shingle of each document (int64, shape ``(n_docs,)``): ``char_shingles``
    of its language, ``0`` (= word shingles) for other languages, null, or ``languages=None``."""
    if languages is None or not char_shingles:
        return np.zeros(n_docs, dtype=np.int64)
    return np.fromiter((char_shingles.get(lang, 0) if lang else 0 for lang in languages),
                       dtype=np.int64, count=n_docs)


def band_rows_for_file(
    storage: Storage, rel: str, row_offset: int, cfg: DedupConfig, num_partitions: int
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the band rows of document file ``rel`` of ``storage``, one dict of arrays per batch.

    Each row is ``part`` (int32, ``key % num_partitions``), ``band`` (int16, -1 = exact key),
    ``key`` (uint64), ``doc`` (int64 global row index = ``row_offset`` + row in the file).
    A document with no word gets no MinHash rows (its exact row still groups all empty ones).
    Documents whose ``language`` is a key of ``cfg.char_shingles`` are shingled by characters.
    With ``cfg.write_index`` every row is also staged, with the document's row in the file, by
    a :class:`~webmill.curate.dedup.index.KeyStager` for ``OUT/dedup_index/`` (published when
    the file is done, discarded if this generator fails or is not run to its end).
    """
    if not cfg.write_index:
        yield from _band_rows(storage, rel, row_offset, cfg, num_partitions, None)
        return
    with KeyStager(storage, rel.rsplit("/", 1)[-1]) as stager:
        yield from _band_rows(storage, rel, row_offset, cfg, num_partitions, stager)


def _band_rows(storage: Storage, rel: str, row_offset: int, cfg: DedupConfig, num_partitions: int,
               stager: KeyStager | None) -> Iterator[dict[str, np.ndarray]]:
    """The loop of :func:`band_rows_for_file`."""
    bands, rows = cfg.resolved_bands_rows()
    hasher = mh.MinHasher(cfg.num_perm, cfg.seed, cfg.shingle_size, cfg.hash_func, cfg.scheme, cfg.chunk_shingles)
    p = np.uint64(num_partitions)
    for first, texts, langs in _iter_text_batches(storage, rel, cfg.batch_docs, cfg.max_batch_bytes):
        normalized = [mh.normalized_bytes(t) for t in texts]
        words, word_offsets = mh.split_words(normalized)
        doc = np.arange(first, first + len(texts), dtype=np.int64) + row_offset
        parts: list[dict[str, np.ndarray]] = []
        if cfg.exact:
            key = mh.text_hashes(words, word_offsets)
            parts.append({"band": np.full(len(doc), EXACT_BAND, np.int16), "key": key, "doc": doc})
        if cfg.minhash:
            has_words = np.diff(word_offsets) > 0  # no word <=> no character: no shingle
            char_k = char_shingle_sizes(langs, cfg.char_shingles, len(texts))
            sig = hasher.signatures_mixed(normalized, char_k, words, word_offsets)
            keys = mh.band_hashes(sig[has_words], bands, rows)
            parts.append({
                "band": np.tile(np.arange(bands, dtype=np.int16), len(keys)),
                "key": keys.reshape(-1),
                "doc": np.repeat(doc[has_words], bands),
            })
        out = {k: np.concatenate([q[k] for q in parts]) for k in ("band", "key", "doc")}
        if stager is not None:
            stager.add(out["band"], out["key"], out["doc"] - row_offset)
        yield {"part": (out["key"] % p).astype(np.int32), **out}


def band_rows_udf(batch: dict[str, np.ndarray], storage: Storage, cfg_dict: dict, num_partitions: int):
    """Ray Data ``map_batches`` function: ``batch`` holds ``name`` (file names relative to
    ``storage``) and ``row_offset``; yields the band rows of each file."""
    cfg = DedupConfig(**cfg_dict)
    for name, offset in zip(batch["name"], batch["row_offset"]):
        yield from band_rows_for_file(storage, str(name), int(offset), cfg, num_partitions)
