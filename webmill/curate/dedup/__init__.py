"""Exact + MinHash near-duplicate removal over ``OUT/documents`` as a CPU Ray job.

Plan (see docs/dedup.md for the memory model and what to do at scale)::

    OUT/<input_subdir>/*.parquet (sorted by name; global row index = file offset + row)
      1. signatures  signatures.py, Ray Data, one task per file, ``batch_docs`` rows at a time:
                     normalize -> exact key (XXH3-64 of the normalized text, "band" -1) and
                     MinHash signature -> ``bands`` LSH band keys; emits rows
                     (part, band, key, doc) with part = key mod P
      2. buckets     graph.py, ``groupby("part").map_groups``: Ray Data shuffle on ``part`` (a
                     hash of the band key; sort shuffle by default); each of the P groups is
                     scanned vectorized (sort by band, key, doc); every bucket with >= 2
                     documents emits star edges (smallest doc -> each other doc)
      3. components  ``components="single"``: graph.py, driver: edges pulled and deduplicated
                     (band copies), scipy.sparse.csgraph.connected_components (refused above
                     ``max_edges_single_worker`` edges); ``"distributed"``: components.py,
                     large-star/small-star as Ray tasks on the edge blocks (labels stay in
                     the object store);
                     ``"auto"``: distributed above ``distributed_min_edges`` edges. Exact groups
                     are the exact-key stars (graph.exact_groups), no second components pass
      4. keep        keep.py, per component the highest ``quality_score`` (missing =
                     lowest), ties -> smallest ``id`` -> smallest global row index; documents of
                     earlier runs (``against``) always win. Single path: one Ray task per file
                     reads ``id``/``quality_score`` of its members, the driver sorts. Distributed
                     path: labels regrouped to files, member keys read per file, regrouped by
                     component, one task per partition decides, decisions regrouped to files
                     (nothing per document on the driver)
      5. write       files.py, one Ray task per file streams the file again, drops removed
                     rows, adds ``dedup_cluster`` and publishes OUT/<output_subdir>/<stem>.parquet
                     atomically (removed rows -> OUT/removed/dedup/ with ``write_removed``);
                     then its index file OUT/dedup_index/<stem>.parquet (index.py,
                     ``write_index``: band keys of the kept documents, for a later ``against``)
    stats -> OUT/stats/dedup.json          (driver: job.py, run_dedup)

Why each Ray mechanism:

* **Ray Data** (stages 1-2) only for the shuffle: grouping every band row of every file by its
  key is the one all-to-all step of the pipeline, and Ray Data's ``groupby`` shuffle streams and
  spills it without hand-written partition bookkeeping. Stage 1 is a ``map_batches`` over a
  list of file names because its output is the Dataset that the shuffle consumes; its function
  reads each file itself through :class:`~webmill.storage.Storage` (no Ray Data datasource), so
  ``OUT`` may be on any fsspec filesystem.
* **Plain Ray tasks** (distributed stage 3, stages 4-5): per-file and per-partition work that
  holds no state worth keeping in a worker (no model to load, unlike ``finalize``'s actors), so
  stateless tasks passing ObjectRefs are the simplest form; ``ray.get`` returns the results in
  file order.

Exact duplicates are treated as one more LSH "band" whose key is the whole normalized text, so
one shuffle serves both; since identical normalized texts have identical signatures, the
components equal those of "exact dedup first, then MinHash on the survivors", and the kept
document is the same (the keep rule is a total order).

Every read and write of ``OUT`` goes through :mod:`webmill.storage`. The typer command is in
:mod:`webmill.curate.cli.dedup`.
"""

from webmill.curate.dedup.config import (
    BYTES_PER_BAND_ROW,
    COMPONENTS_MODES,
    EXACT_BAND,
    KEEP_POLICIES,
    SHUFFLE_STRATEGIES,
    DedupConfig,
)
from webmill.curate.dedup.files import read_keep_columns, scan_inputs, write_deduped_file
from webmill.curate.dedup.graph import (
    bucket_edges,
    component_stats,
    connected_components,
    exact_groups,
    unique_edges,
)
from webmill.curate.dedup.job import REMOVED_SUBDIR, run_dedup
from webmill.curate.dedup.signatures import band_rows_for_file

__all__ = [
    "BYTES_PER_BAND_ROW", "COMPONENTS_MODES", "EXACT_BAND", "KEEP_POLICIES", "REMOVED_SUBDIR",
    "SHUFFLE_STRATEGIES", "DedupConfig", "band_rows_for_file", "bucket_edges", "component_stats",
    "connected_components", "exact_groups", "read_keep_columns", "run_dedup", "scan_inputs",
    "unique_edges", "write_deduped_file",
]
