"""Encode step of ``curate tokenize``: document Parquet files -> a flat on-disk token spill.

One process, threads (tiktoken's Rust encoder releases the GIL):
  1. a reader thread streams record batches (``id``, ``text``, optional ``source`` and
     ``quality_bucket``) from the input files in order, so Parquet I/O overlaps encoding;
  2. a thread pool encodes contiguous chunks of each batch with ``Encoding.encode_to_numpy``
     (same ids as ``encode_ordinary``: no special-token parsing, a literal "<|endoftext|>" in a
     web page is plain text) and appends the EOT id to every document; up to two batches are in
     flight so the threads never wait on the Python side;
  3. tokens are appended to a flat spill file (uint16/uint32) with per-document lengths, so
     memory stays bounded by the per-document metadata.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from webmill.errors import UserError
from webmill.storage import Storage

DEFAULT_SOURCE = "web"


@dataclass
class Encoded:
    """The result of :func:`encode_to_spill`: n non-empty documents in input order.

    Attributes:
        ids: n document ids.
        codes: int32 array ``(n,)``: source of each document as a code of ``source_codes``.
        source_codes: ``{source name: code}``, codes in order of first appearance.
        quality_buckets: float64 array ``(n,)``, NaN where the document has none.
        lengths: int64 array ``(n,)``: tokens per document, EOT included.
        offsets: int64 array ``(n + 1,)``: document i is ``tokens[offsets[i]:offsets[i+1]]``.
        input_documents: rows read, empty texts included.
        skipped: rows with a null or empty text (not encoded).
        spill_path: the local file holding all tokens (dtype ``dtype``).
        dtype: numpy token dtype (uint16/uint32).
    """

    ids: list[str]
    codes: np.ndarray
    source_codes: dict[str, int]
    quality_buckets: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    input_documents: int
    skipped: int
    spill_path: Path
    dtype: np.dtype

    @property
    def names_by_code(self) -> np.ndarray:
        """Object array of source names indexed by code."""
        return np.array(sorted(self.source_codes, key=self.source_codes.get), dtype=object)

    def tokens(self) -> np.ndarray:
        """All tokens as a read-only memmap of the spill, shape ``(offsets[-1],)``."""
        n = int(self.offsets[-1])
        return np.memmap(self.spill_path, dtype=self.dtype, mode="r", shape=(n,)) if n else np.empty(0, self.dtype)


class _Reader(threading.Thread):
    """Background thread: read Parquet record batches and put dicts of lists on a queue."""

    def __init__(self, st: Storage, files: list[str], text_column: str, batch_rows: int, q: queue.Queue):
        super().__init__(daemon=True, name="webmill-tokenize-reader")
        self.st, self.files, self.text_column, self.batch_rows, self.q = st, files, text_column, batch_rows, q
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for f in self.files:
                self._read_file(f)
                if self.stop.is_set():
                    return
            self.q.put(None)
        except BaseException as e:  # handed to the consumer, re-raised there
            self.q.put(e)

    def _read_file(self, f: str) -> None:
        where = self.st.uri(f)
        try:
            pf = self.st.parquet_file(f)
            names = pf.schema_arrow.names
        except (OSError, pa.ArrowException) as e:
            raise UserError(f"{where}: not a readable Parquet file ({e}); re-run the step that wrote it") from e
        if self.text_column not in names:
            raise UserError(
                f"{where}: no column {self.text_column!r} (columns: {names}); pass --text-column or "
                "point --input at the documents directory"
            )
        cols = [c for c in ("id", self.text_column, "source", "quality_bucket") if c in names]
        stem = Path(f).stem
        row = 0
        for batch in pf.iter_batches(batch_size=self.batch_rows, columns=cols):
            n = batch.num_rows
            d = {c: batch.column(c) for c in cols}
            texts = d[self.text_column].to_pylist()
            ids = d["id"].cast(pa.string()).to_pylist() if "id" in d else [f"{stem}:{row + i}" for i in range(n)]
            if "id" in d and d["id"].null_count:
                raise UserError(f"{where}: column 'id' has null values (rows {row}..{row + n}); every document needs an id")
            item = {
                "ids": ids,
                "texts": texts,
                "source": d["source"].cast(pa.string()).to_pylist() if "source" in d else None,
                "quality_bucket": d["quality_bucket"].cast(pa.int32()) if "quality_bucket" in d else None,
            }
            row += n
            while not self.stop.is_set():
                try:
                    self.q.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if self.stop.is_set():
                return


def encode_chunk(enc, texts: list[str], eot: int, np_dtype) -> tuple[np.ndarray, np.ndarray]:
    """Encode texts with ``enc`` (no special tokens parsed) and append ``eot`` to each.

    Returns:
        ``(flat, lengths)``: 1-D ``np_dtype`` tokens of all texts, each followed by ``eot``;
        int64 lengths ``(len(texts),)`` with the EOT counted.
    """
    arrs = [enc.encode_to_numpy(t, allowed_special=set(), disallowed_special=()) for t in texts]
    lens = np.fromiter((a.size + 1 for a in arrs), dtype=np.int64, count=len(arrs))
    eot_arr = np.array([eot], dtype=np.uint32)
    parts: list[np.ndarray] = []
    for a in arrs:
        parts.append(a)
        parts.append(eot_arr)
    flat = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint32)
    return flat.astype(np_dtype, copy=False), lens


def encode_to_spill(
    st: Storage,
    files: list[str],
    enc,
    eot: int,
    dtype: np.dtype,
    spill_path: Path,
    *,
    text_column: str = "text",
    batch_rows: int = 2048,
    num_threads: int = 1,
) -> Encoded:
    """Encode every non-empty document of ``files`` (in order) into the spill file.

    Args:
        st: storage holding the input files.
        files: Parquet file names in ``st``, read in this order.
        enc: a :class:`tiktoken.Encoding`.
        eot: EOT token id appended to every document.
        dtype: numpy token dtype of the spill (uint16/uint32).
        spill_path: a local file to create (the caller removes it).
        text_column: the text column; ``id`` (else ``<file stem>:<row>``), ``source`` (else
            ``"web"``; nulls too) and ``quality_bucket`` are read when present.
        batch_rows: documents per read/encode batch.
        num_threads: encoder threads.

    Returns:
        :class:`Encoded` (possibly with 0 documents).

    Raises:
        UserError: an unreadable file, a missing text column, null ids.
    """
    ids_all: list[str] = []
    src_codes: list[np.ndarray] = []
    src_names: dict[str, int] = {}
    qb_chunks: list[pa.Array] = []
    lens_chunks: list[np.ndarray] = []
    skipped = 0
    n_input = 0
    q: queue.Queue = queue.Queue(maxsize=4)
    reader = _Reader(st, files, text_column, batch_rows, q)
    reader.start()
    pending: deque = deque()
    with open(spill_path, "wb") as spill, ThreadPoolExecutor(num_threads, thread_name_prefix="webmill-encode") as pool:

        def finish_one() -> None:
            for fut in pending.popleft():
                flat, lens = fut.result()
                spill.write(memoryview(flat))
                lens_chunks.append(lens)

        try:
            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                texts = item["texts"]
                n_input += len(texts)
                keep = [i for i, t in enumerate(texts) if t]
                skipped += len(texts) - len(keep)
                if not keep:
                    continue
                if len(keep) < len(texts):
                    texts = [texts[i] for i in keep]
                    ids = [item["ids"][i] for i in keep]
                    srcs = None if item["source"] is None else [item["source"][i] for i in keep]
                    qb = None if item["quality_bucket"] is None else item["quality_bucket"].take(pa.array(keep))
                else:
                    ids, srcs, qb = item["ids"], item["source"], item["quality_bucket"]
                ids_all.extend(ids)
                if srcs is None:
                    code = src_names.setdefault(DEFAULT_SOURCE, len(src_names))
                    src_codes.append(np.full(len(ids), code, dtype=np.int32))
                else:
                    src_codes.append(
                        np.fromiter(
                            (src_names.setdefault(s or DEFAULT_SOURCE, len(src_names)) for s in srcs),
                            dtype=np.int32, count=len(srcs),
                        )
                    )
                qb_chunks.append(qb if qb is not None else pa.nulls(len(ids), pa.int32()))
                # contiguous chunks, ~4 per thread
                n_chunks = max(1, min(len(texts), 4 * num_threads))
                bounds = np.linspace(0, len(texts), n_chunks + 1).astype(int)
                pending.append([
                    pool.submit(encode_chunk, enc, texts[a:b], eot, dtype)
                    for a, b in zip(bounds[:-1], bounds[1:]) if b > a
                ])
                if len(pending) >= 2:
                    finish_one()
            while pending:
                finish_one()
        finally:
            reader.stop.set()

    n = len(ids_all)
    lens = np.concatenate(lens_chunks) if lens_chunks else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    qbs = pa.concat_arrays([c.cast(pa.int32()) for c in qb_chunks]) if qb_chunks else pa.array([], pa.int32())
    return Encoded(
        ids=ids_all,
        codes=np.concatenate(src_codes) if src_codes else np.zeros(0, dtype=np.int32),
        source_codes=src_names,
        quality_buckets=qbs.to_numpy(zero_copy_only=False).astype(np.float64, copy=False),
        lengths=lens,
        offsets=offsets,
        input_documents=n_input,
        skipped=skipped,
        spill_path=spill_path,
        dtype=np.dtype(dtype),
    )
