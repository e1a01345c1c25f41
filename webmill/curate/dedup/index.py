"""The incremental-dedup index: the band keys of a run's *kept* documents, persisted in
``OUT/dedup_index/`` so that a later run (``curate dedup NEW_OUT --against OUT``) removes its
documents that duplicate them, without touching ``OUT``.

Layout (one index file per input file, same name)::

    OUT/dedup_index/.staging/<name>   stage 1 side output of one input file: (band int16, key
                                      uint64, row int64 = row in the input file); every document
    OUT/dedup_index/<name>            after the keep step: rows of the kept documents only, with
                                      doc int64 = the document's *kept ordinal* (its row in the
                                      name-ordered concatenation of OUT/deduped/*), sorted by
                                      (band, key, doc); zstd
    OUT/dedup_index/meta.json         written last (the completion marker): format version, the
                                      signature parameters, files with kept counts and offsets

Lifecycle in :func:`~webmill.curate.dedup.run_dedup`: stage 1 writes one staging file per
input through :class:`KeyStager` (which also deletes ``meta.json``: from then on the index is
incomplete until this run ends); after the keep step :func:`publish_file_index` turns each
staging file into its index file; :func:`write_index_meta` writes ``meta.json`` and sweeps
leftovers. A later run calls :func:`open_against` (checks), feeds the earlier index rows into
its shuffle with :func:`against_band_rows_udf` (node ids ``base + kept ordinal``, above every
node of its own) and names the earlier documents with :func:`resolve_against_ids`.

Why this is the union's result: the kept documents of one run share no band bucket (two that
did would be one component), and the signature parameters are checked equal, so the candidate
graph of "this run + earlier kept documents" is the graph of deduplicating the union once; the
job then keeps an earlier document in every component that has one (test:
tests/test_dedup_incremental.py).

Size: 18 bytes per row before compression, ``bands + 1`` rows per kept document (270 bytes for
FineWeb's 14 bands + exact); the keys are random 64-bit values, so zstd saves mostly on ``band``
and ``doc`` (measured in docs/dedup.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from webmill.curate.dedup.config import DedupConfig
from webmill.errors import UserError
from webmill.storage import Storage, as_storage

INDEX_SUBDIR = "dedup_index"  # OUT/dedup_index/ next to OUT/deduped/
STAGING_SUBDIR = f"{INDEX_SUBDIR}/.staging"
META_NAME = "meta.json"
INDEX_FORMAT = "webmill-dedup-index"
INDEX_VERSION = 1
INDEX_ROW_GROUP = 1 << 20  # rows per Parquet row group of index files (18 MiB before compression)
STAGING_SCHEMA = pa.schema([("band", pa.int16()), ("key", pa.uint64()), ("row", pa.int64())])
INDEX_SCHEMA = pa.schema([("band", pa.int16()), ("key", pa.uint64()), ("doc", pa.int64())])
# DedupConfig fields (bands, rows: resolved) that must be equal for two runs' band keys to match
SIGNATURE_KEYS = ("exact", "minhash", "num_perm", "bands", "rows", "shingle_size", "seed", "hash_func",
                  "scheme", "char_shingles")


def signature_params(cfg: DedupConfig) -> dict:
    """The parameters of ``cfg`` that decide the band keys (``bands``/``rows`` resolved from
    ``threshold``), as JSON-compatible values keyed by :data:`SIGNATURE_KEYS`."""
    bands, rows = cfg.resolved_bands_rows()
    params = {k: getattr(cfg, k) for k in SIGNATURE_KEYS if k not in ("bands", "rows")}
    params.update(bands=int(bands), rows=int(rows), char_shingles=dict(sorted(dict(cfg.char_shingles).items())))
    return json.loads(json.dumps(params))


def _staging_rel(name: str) -> str:
    return f"{STAGING_SUBDIR}/{name}"


def _index_rel(name: str) -> str:
    return f"{INDEX_SUBDIR}/{name}"


# ---------------------------------------------------------------------------------------------- writing


class KeyStager:
    """Stage-1 side output of one input file: its band rows, streamed to
    ``OUT/dedup_index/.staging/<name>`` and published atomically by :meth:`close`.

    Args:
        storage: the run's ``OUT``.
        name: the input file's name (``"x.parquet"``); the index file gets the same name.

    Use as a context manager (published on a normal exit, discarded on an exception) or call
    :meth:`add` then :meth:`close`. Memory: at most :data:`INDEX_ROW_GROUP` buffered rows
    (18 bytes each) plus the Parquet writer's page buffers. Creating one deletes
    ``OUT/dedup_index/meta.json``: the run that stages keys is rewriting the index.
    """

    def __init__(self, storage: Storage, name: str):
        import pyarrow.parquet as pq

        self.storage = as_storage(storage)
        self.name = name
        self.rows = 0
        self._buf: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self.storage.remove(f"{INDEX_SUBDIR}/{META_NAME}")
        self._cm = self.storage.atomic_write(_staging_rel(name))
        sink = self._cm.__enter__()
        try:
            self._writer = pq.ParquetWriter(sink, STAGING_SCHEMA, compression="zstd")
        except BaseException as exc:
            self._cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._open = True

    def add(self, band: np.ndarray, key: np.ndarray, local_row: np.ndarray) -> None:
        """Stage band rows: ``band`` int16 (-1 = exact key), ``key`` uint64, ``local_row`` int64
        row of the document in the input file; equal lengths (else ``ValueError``)."""
        band, key, local_row = (np.asarray(band, np.int16), np.asarray(key, np.uint64),
                                np.asarray(local_row, np.int64))
        if not len(band) == len(key) == len(local_row):
            raise ValueError(f"KeyStager.add: lengths differ ({len(band)}, {len(key)}, {len(local_row)})")
        if not self._open:
            raise ValueError(f"KeyStager.add: the stager of {self.name} is closed")
        self._buf.append((band, key, local_row))
        self._buffered += len(band)
        self.rows += len(band)
        if self._buffered >= INDEX_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        cols = [np.concatenate([b[i] for b in self._buf]) for i in range(3)]
        self._writer.write_table(pa.table(cols, schema=STAGING_SCHEMA), row_group_size=INDEX_ROW_GROUP)
        self._buf, self._buffered = [], 0

    def close(self) -> None:
        """Write the buffered rows and publish the staging file (a no-op when already closed)."""
        if not self._open:
            return
        self._open = False
        try:
            self._flush()
            self._writer.close()
        except BaseException as exc:
            self._cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._cm.__exit__(None, None, None)

    def abort(self) -> None:
        """Discard the staged rows: nothing is published."""
        if not self._open:
            return
        self._open = False
        exc = RuntimeError(f"staging of {self.name} aborted")
        try:
            self._writer.close()
        except Exception:
            pass
        try:
            self._cm.__exit__(RuntimeError, exc, None)
        except RuntimeError as raised:
            if raised is not exc:
                raise

    def __enter__(self) -> "KeyStager":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def publish_file_index(storage: Storage, name: str, removed_local_rows: np.ndarray, kept_offset: int) -> int:
    """Turn the staging file of input ``name`` into its index file ``OUT/dedup_index/<name>``.

    Args:
        storage: the run's ``OUT``.
        name: the input file's name.
        removed_local_rows: int64 rows (in the input file) of the documents dedup removed; any
            order, duplicates allowed.
        kept_offset: kept documents of the files before ``name`` (name order), i.e. the kept
            ordinal of this file's first kept document.

    Output rows: ``band`` int16, ``key`` uint64, ``doc`` int64 = ``kept_offset + row - (removed
    rows before it)`` (the document's row in the concatenation of ``OUT/deduped/*``), only kept
    documents, sorted by (band, key, doc), zstd, row groups of at most :data:`INDEX_ROW_GROUP`
    rows (a new one per band); then the staging file is deleted. Memory: the staged rows (18
    bytes each) plus about 3 times one band's rows.

    Returns:
        rows written. Idempotent: rerun after the staging file is gone, it returns the rows of
        the index file already published.

    Raises:
        UserError: neither the staging nor the index file exists (stage 1 did not stage this
            file: rerun ``curate dedup``).
    """
    storage = as_storage(storage)
    staging, final = _staging_rel(name), _index_rel(name)
    if not storage.exists(staging):
        if storage.exists(final):
            return int(storage.parquet_file(final).metadata.num_rows)
        raise UserError(f"dedup index: no staged keys for {name} ({storage.uri(staging)} is missing); "
                        f"rerun `curate dedup {storage.uri()}`")
    import pyarrow.parquet as pq

    table = storage.read_parquet(staging).combine_chunks()
    band, key, row = (table.column(c).to_numpy() for c in ("band", "key", "row"))
    removed = np.unique(np.asarray(removed_local_rows, np.int64))
    is_removed = np.zeros(int(max(row.max(initial=-1), removed.max(initial=-1))) + 1, bool)
    is_removed[removed] = True
    written = 0
    with storage.atomic_write(final) as sink, \
            pq.ParquetWriter(sink, INDEX_SCHEMA, compression="zstd", write_statistics=True,
                             use_dictionary=False) as writer:
        for b in np.unique(band):  # one band at a time: memory ~ the staged rows + one band's
            sel = np.flatnonzero((band == b) & ~is_removed[row])
            r, k = row[sel], key[sel]
            doc = int(kept_offset) + r - np.searchsorted(removed, r, side="left")
            order = np.argsort(k)  # kept documents of a run share no bucket: keys are distinct
            if len(order) > 1 and (k[order][1:] == k[order][:-1]).any():
                order = np.lexsort((doc, k))  # unless called with other removals: ties by doc
            writer.write_table(pa.table([np.full(len(sel), b, np.int16), k[order], doc[order]], schema=INDEX_SCHEMA),
                               row_group_size=INDEX_ROW_GROUP)
            written += len(sel)
        if not written:
            writer.write_table(INDEX_SCHEMA.empty_table())
    del table
    storage.remove(staging)
    return written


def write_index_meta(storage: Storage, cfg: DedupConfig, names: list[str], kept_counts: list[int],
                     output_subdir: str = "deduped") -> None:
    """Write ``OUT/dedup_index/meta.json`` (last: it marks the index complete) and sweep.

    Args:
        storage: the run's ``OUT``.
        cfg: the run's settings (:func:`signature_params` are recorded).
        names: the input file names in name order (every one must have its index file).
        kept_counts: documents kept per file (rows of ``OUT/<output_subdir>/<name>``).
        output_subdir: where the kept documents are (read back by :func:`resolve_against_ids`).

    Meta: ``format``, ``version``, ``signature`` (:func:`signature_params`), ``deduped_subdir``,
    ``files`` (``name``, ``kept``, ``offset`` = kept documents before it) and ``total_kept``.
    Sweep: the staging directory, temp files below ``OUT/dedup_index`` and index files of names
    not in ``names`` (an earlier run's inputs).

    Raises:
        ValueError: ``names`` and ``kept_counts`` differ in length.
        UserError: an index file of ``names`` was not published (rerun ``curate dedup``).
    """
    storage = as_storage(storage)
    if len(names) != len(kept_counts):
        raise ValueError(f"write_index_meta: {len(names)} names but {len(kept_counts)} kept counts")
    present = set(storage.list(INDEX_SUBDIR, suffix=".parquet"))
    missing = [n for n in names if n not in present]
    if missing:
        raise UserError(f"dedup index: {storage.uri(_index_rel(missing[0]))} was not written "
                        f"({len(missing)} file(s) missing); rerun `curate dedup {storage.uri()}`")
    for stale in sorted(present - set(names)):
        storage.remove(_index_rel(stale))
    storage.remove_tree(STAGING_SUBDIR)
    storage.sweep_temps(INDEX_SUBDIR)
    offsets = np.concatenate([[0], np.cumsum(np.asarray(kept_counts, np.int64))]).tolist()
    meta = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "signature": signature_params(cfg),
        "deduped_subdir": output_subdir,
        "files": [{"name": n, "kept": int(k), "offset": int(o)} for n, k, o in zip(names, kept_counts, offsets)],
        "total_kept": int(offsets[-1]),
    }
    storage.write_json(f"{INDEX_SUBDIR}/{META_NAME}", meta, indent=1, sort_keys=True)


def remove_index(storage: Storage) -> None:
    """Delete ``OUT/dedup_index`` (a run without ``write_index`` rewrites ``deduped/``, which
    would leave an earlier index describing documents that changed)."""
    as_storage(storage).remove_tree(INDEX_SUBDIR)


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class Against:
    """What a run needs about the earlier runs it deduplicates against (picklable).

    Attributes:
        items: one per non-empty index file: ``root`` (URI of the earlier ``OUT``), ``rel`` (the
            index file below it), ``base`` (node id of the run's kept ordinal 0) and
            ``options`` (JSON of the root's storage_options) -- the rows of
            :func:`against_band_rows_udf`.
        bases: the first node id of each earlier run (node = base + kept ordinal).
        total: documents kept by all earlier runs (their node ids fill
            ``[bases[0], bases[0] + total)``).
        roots: URIs of the earlier ``OUT`` directories, in the order given.
        metas: each earlier run's ``meta.json``.
        options: each earlier run's storage_options.
    """

    items: list[dict] = field(default_factory=list)
    bases: list[int] = field(default_factory=list)
    total: int = 0
    roots: list[str] = field(default_factory=list)
    metas: list[dict] = field(default_factory=list)
    options: list[dict] = field(default_factory=list)

    def storage(self, i: int) -> Storage:
        """The earlier run ``i``'s ``OUT``."""
        return Storage(self.roots[i], self.options[i])


def _identity(st: Storage) -> str:
    """A comparable name of a storage root (local: the resolved absolute path)."""
    if st.is_local:
        return "file://" + os.path.realpath(st.path())
    return f"{st.fs.protocol if isinstance(st.fs.protocol, str) else st.fs.protocol[0]}://{st.path().strip('/')}"


def open_against(against: list, cfg: DedupConfig, base: int, out: "str | os.PathLike | Storage | None" = None) -> Against:
    """Check the earlier runs' indexes and lay out their node ids.

    Args:
        against: earlier ``OUT`` directories (paths, fsspec URLs or :class:`Storage`).
        cfg: this run's settings.
        base: the first node id of the earlier documents (this run's document count, so every
            earlier document's node is above this run's nodes).
        out: this run's ``OUT``; refused as an ``against`` entry when given.

    Returns:
        an :class:`Against` (empty when ``against`` is).

    Raises:
        UserError: an entry is this run's ``OUT`` or given twice, has no
            ``dedup_index/meta.json`` or index file, has another format version, or was built
            with other signature parameters (names the directory, the key, both values and the
            fix).
    """
    res = Against()
    mine = _identity(as_storage(out)) if out is not None else None
    seen: set[str] = set()
    params = signature_params(cfg)
    node = int(base)
    for entry in against:
        st = as_storage(entry)
        where = st.uri()
        ident = _identity(st)
        if ident == mine:
            raise UserError(f"dedup --against {where}: this is the run's own OUT; give the OUT of an earlier run")
        if ident in seen:
            raise UserError(f"dedup --against {where}: given twice; give each earlier OUT once")
        seen.add(ident)
        meta_rel = f"{INDEX_SUBDIR}/{META_NAME}"
        if not st.isfile(meta_rel):
            raise UserError(f"dedup --against {where}: {st.uri(meta_rel)} not found (no complete dedup index); "
                            f"run `curate dedup {where}` to the end with write_index on (the default), "
                            "or drop this --against")
        meta = st.read_json(meta_rel)
        if meta.get("format") != INDEX_FORMAT or meta.get("version") != INDEX_VERSION:
            raise UserError(f"dedup --against {where}: {st.uri(meta_rel)} has format {meta.get('format')!r} "
                            f"version {meta.get('version')!r}, this webmill reads {INDEX_FORMAT!r} version "
                            f"{INDEX_VERSION}; rerun `curate dedup {where}` with this webmill to rebuild it")
        old = meta.get("signature", {})
        for key in SIGNATURE_KEYS:
            if old.get(key) != params[key]:
                raise UserError(f"dedup --against {where}: its index was built with {key}={old.get(key)!r}, this "
                                f"run has {key}={params[key]!r}; band keys only match with equal settings: rerun "
                                f"with {key}={old.get(key)!r} (or rebuild that index: `curate dedup {where}` with "
                                "this run's settings)")
        present = set(st.list(INDEX_SUBDIR, suffix=".parquet"))
        for f in meta["files"]:
            if f["name"] not in present:
                raise UserError(f"dedup --against {where}: index file {st.uri(_index_rel(f['name']))} is missing; "
                                f"rerun `curate dedup {where}` to rebuild the index")
        run = len(res.roots)
        res.roots.append(where)
        res.options.append(dict(st.storage_options))
        res.metas.append(meta)
        res.bases.append(node)
        opts = json.dumps(st.storage_options, sort_keys=True, default=str)
        for f in meta["files"]:
            if int(f["kept"]) > 0:
                res.items.append({"root": where, "rel": _index_rel(f["name"]), "base": node, "options": opts, "run": run})
        node += int(meta["total_kept"])
    res.total = node - int(base)
    return res


def against_band_rows_udf(batch: dict, num_partitions: int) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data ``map_batches`` function over :attr:`Against.items` rows.

    Yields, per row group of each index file, the band rows of stage 1's schema: ``part``
    (int32, ``key % num_partitions``), ``band`` (int16), ``key`` (uint64), ``doc`` (int64 =
    ``base`` + kept ordinal). Memory: one row group (:data:`INDEX_ROW_GROUP` rows).
    """
    p = np.uint64(num_partitions)
    options = batch.get("options")
    for i, (root, rel, base) in enumerate(zip(batch["root"], batch["rel"], batch["base"])):
        opts = json.loads(str(options[i])) if options is not None else None
        st = Storage(str(root), opts)
        for rb in st.parquet_file(str(rel)).iter_batches(batch_size=INDEX_ROW_GROUP, columns=["band", "key", "doc"]):
            key = rb.column(1).to_numpy()
            yield {
                "part": (key % p).astype(np.int32),
                "band": rb.column(0).to_numpy().astype(np.int16),
                "key": key,
                "doc": rb.column(2).to_numpy() + np.int64(base),
            }


def _read_rows(st: Storage, rel: str, rows: np.ndarray, column: str, expected_rows: int, where: str) -> list:
    """Values of ``column`` at ``rows`` (int64, any order) of Parquet file ``rel``, reading only
    the row groups that hold them."""
    pf = st.parquet_file(rel)
    md = pf.metadata
    if md.num_rows != expected_rows:
        raise UserError(f"dedup --against {where}: {st.uri(rel)} has {md.num_rows} rows, its dedup index "
                        f"says {expected_rows}; that OUT changed after its index was written: rerun "
                        f"`curate dedup {where}`")
    starts = np.concatenate([[0], np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)])])
    groups = np.unique(np.searchsorted(starts, rows, side="right") - 1)
    table = pf.read_row_groups(groups.tolist(), columns=[column])
    # position of each requested row in the concatenation of the groups read
    group_base = np.cumsum(np.concatenate([[0], np.diff(starts)[groups]]))[:-1]
    g = np.searchsorted(starts, rows, side="right") - 1
    pos = group_base[np.searchsorted(groups, g)] + (rows - starts[g])
    return table.column(column).take(pa.array(pos)).to_pylist()


def resolve_against_ids(against: Against, nodes: np.ndarray) -> list[str]:
    """The ``id`` of earlier-run documents.

    Args:
        against: from :func:`open_against`.
        nodes: int64 node ids in ``[against.bases[0], against.bases[0] + against.total)``.

    Returns:
        their ids, in the order of ``nodes``, read from each earlier ``OUT/<deduped>/<name>``
        (only the ``id`` column of the row groups holding them).

    Raises:
        ValueError: a node outside the earlier runs' range.
        UserError: an earlier deduped file no longer has the rows its index recorded.
    """
    nodes = np.asarray(nodes, np.int64)
    out: list = [None] * len(nodes)
    if not len(nodes):
        return []
    lo, hi = against.bases[0], against.bases[0] + against.total
    if nodes.min() < lo or nodes.max() >= hi:
        raise ValueError(f"resolve_against_ids: nodes must lie in [{lo}, {hi}), got [{nodes.min()}, {nodes.max()}]")
    run = np.searchsorted(np.asarray(against.bases, np.int64), nodes, side="right") - 1
    for r in np.unique(run):
        meta, st = against.metas[r], against.storage(int(r))
        files = meta["files"]
        offsets = np.array([f["offset"] for f in files], np.int64)
        sel = np.flatnonzero(run == r)
        ordinal = nodes[sel] - against.bases[r]
        fidx = np.searchsorted(offsets, ordinal, side="right") - 1
        for f in np.unique(fidx):
            here = fidx == f
            rel = f"{meta['deduped_subdir']}/{files[f]['name']}"
            ids = _read_rows(st, rel, ordinal[here] - offsets[f], "id", int(files[f]["kept"]), against.roots[r])
            for i, v in zip(sel[here], ids):
                out[i] = v
    return out
