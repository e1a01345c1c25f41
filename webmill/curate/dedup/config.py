"""Configuration of the dedup step: :class:`DedupConfig` and its checks.

FineWeb's settings are the defaults (sources in docs/dedup.md). No Ray, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from webmill.curate import minhash as mh
from webmill.errors import UserError

KEEP_POLICIES = ("quality_then_id", "id")
COMPONENTS_MODES = ("auto", "single", "distributed")
# lid.176 labels of languages written without spaces between words -> characters per shingle
# (issue 18; see docs/dedup.md "Languages without spaces")
DEFAULT_CHAR_SHINGLES = {"zh": 5, "ja": 5, "th": 5, "lo": 5, "km": 5, "my": 5, "bo": 5, "wuu": 5, "yue": 5}
SHUFFLE_STRATEGIES = {"sort": "sort_shuffle_pull_based", "hash": "hash_shuffle"}  # Ray Data names
EXACT_BAND = -1
BYTES_PER_BAND_ROW = 4 + 2 + 8 + 8  # part, band, key, doc in Arrow (no nulls)


@dataclass
class DedupConfig:
    """Configuration of the dedup step (FineWeb defaults; sources in docs/dedup.md).

    Attributes:
        exact: remove exact duplicates of the normalized text (XXH3-64 key).
        minhash: remove MinHash/LSH near duplicates.
        num_perm: MinHash permutations (FineWeb: 112).
        bands, rows: LSH banding, ``bands * rows == num_perm`` (FineWeb: 14 x 8).
        shingle_size: words per shingle (FineWeb: 5).
        seed: permutation seed (datasketch's ``seed``).
        threshold: if set, ``(bands, rows)`` come from datasketch's ``_optimal_param(threshold,
            num_perm, 0.5, 0.5)`` (as ``MinHashLSH(threshold=...)``), ``bands * rows <= num_perm``.
        hash_func: shingle hash, one of ``minhash.SHINGLE_HASHES`` (``xxh3_words`` is fastest).
        scheme: ``"affine32"`` (datasketch >= 2.0) or ``"legacy"`` (datasketch < 2.0).
        batch_docs: documents read and hashed per step of a task.
        max_batch_bytes: a batch is split further so that its text stays below this (bytes).
        chunk_shingles: shingles per numpy step (working buffer num_perm x chunk x 4 bytes).
        keep: ``"quality_then_id"`` (highest ``quality_score``, ties -> smallest ``id``) or ``"id"``.
        max_edges_single_worker: most candidate edges for connected components on the driver
            (~120 bytes each at peak, so the default 5e7 needs ~6 GB); above it
            ``components="single"`` stops with advice and ``"auto"`` goes distributed.
        shuffle_rows_per_partition: band rows per bucket-scan group (22 bytes each).
        shuffle: Ray Data shuffle behind ``groupby``: ``"sort"`` (pull-based sort shuffle, the
            fastest here, see docs/dedup.md) or ``"hash"`` (hash shuffle with aggregator actors).
        task_memory_bytes: ``memory=`` reserved per Ray task (0 = no reservation).
        components: connected components on the driver (``"single"``: scipy, refused above
            ``max_edges_single_worker``), as Ray tasks (``"distributed"``: alternating
            large-star/small-star, no process grows with the edge count) or ``"auto"``
            (distributed above ``distributed_min_edges`` or ``max_edges_single_worker``
            candidate edges, whichever is smaller: auto never refuses). Same components,
            hence byte-identical outputs, either way.
        distributed_min_edges: ``"auto"`` switches to the distributed path above this many
            candidate edges.
        edges_per_partition: directed edge rows per partition of the distributed components
            (bounds the memory of each task).
        max_component_rounds: most large-star/small-star rounds before giving up (UserError).
        char_shingles: document ``language`` -> characters per shingle, for languages written
            without spaces (zh, ja, th, ...); other documents use ``shingle_size`` words.
        write_removed: also write the removed documents to ``OUT/removed/dedup/<name>.parquet``
            with their component id and the kept document's id.
        examples_per_reason: keep at most this many removed documents per reason and file in
            ``OUT/examples/dedup/<name>.parquet`` (the bottom-k by id hash of
            :class:`webmill.curate.examples.ExampleSampler`; 0 = none). ``curate run`` passes
            ``[output] examples_per_reason``.
        write_index: persist the band keys of the kept documents in ``OUT/dedup_index/`` so a
            later run can deduplicate against this one (``--against``).
    """

    exact: bool = True
    minhash: bool = True
    num_perm: int = 112
    bands: int = 14
    rows: int = 8
    shingle_size: int = 5
    seed: int = 1
    threshold: float | None = None
    hash_func: str = "xxh3_words"
    scheme: str = "affine32"
    batch_docs: int = 1000
    max_batch_bytes: int = 64 * 2**20
    chunk_shingles: int = 16384
    keep: str = "quality_then_id"
    max_edges_single_worker: int = 50_000_000
    shuffle_rows_per_partition: int = 10_000_000
    shuffle: str = "sort"
    task_memory_bytes: int = 0
    components: str = "auto"
    distributed_min_edges: int = 10_000_000
    edges_per_partition: int = 8_000_000
    max_component_rounds: int = 200
    char_shingles: dict = field(default_factory=lambda: dict(DEFAULT_CHAR_SHINGLES))
    write_removed: bool = False
    examples_per_reason: int = 5
    write_index: bool = True

    def resolved_bands_rows(self) -> tuple[int, int]:
        """``(bands, rows)`` in effect: from ``threshold`` when set, else the configured ones."""
        if self.threshold is not None:
            return mh.optimal_bands_rows(self.threshold, self.num_perm)
        return self.bands, self.rows

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first invalid key."""
        positive = ("num_perm", "bands", "rows", "shingle_size", "batch_docs", "max_batch_bytes",
                    "chunk_shingles", "max_edges_single_worker", "shuffle_rows_per_partition",
                    "edges_per_partition", "max_component_rounds")
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"dedup config: {key} must be a positive integer, got {value!r}")
        if not self.exact and not self.minhash:
            raise UserError("dedup config: exact and minhash are both off; enable at least one")
        if self.hash_func not in mh.SHINGLE_HASHES:
            raise UserError(f"dedup config: hash_func must be one of {', '.join(mh.SHINGLE_HASHES)}, got {self.hash_func!r}")
        if self.scheme not in mh.SCHEMES:
            raise UserError(f"dedup config: scheme must be one of {', '.join(mh.SCHEMES)}, got {self.scheme!r}")
        if self.shuffle not in SHUFFLE_STRATEGIES:
            raise UserError(f"dedup config: shuffle must be one of {', '.join(SHUFFLE_STRATEGIES)}, got {self.shuffle!r}")
        if self.keep not in KEEP_POLICIES:
            raise UserError(f"dedup config: keep must be one of {', '.join(KEEP_POLICIES)}, got {self.keep!r}")
        if self.threshold is not None:
            if not 0.0 < self.threshold < 1.0:
                raise UserError(f"dedup config: threshold must be in (0, 1), got {self.threshold}")
        elif self.bands * self.rows != self.num_perm:
            raise UserError(
                f"dedup config: bands*rows must equal num_perm ({self.bands}*{self.rows} != {self.num_perm}); "
                "change bands/rows/num_perm or set threshold"
            )
        if self.resolved_bands_rows()[0] > 32767:
            raise UserError("dedup config: bands must be < 32768")
        if self.components not in COMPONENTS_MODES:
            raise UserError(f"dedup config: components must be one of {', '.join(COMPONENTS_MODES)}, got {self.components!r}")
        value = self.distributed_min_edges
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UserError(f"dedup config: distributed_min_edges must be an integer >= 0, got {value!r}")
        value = self.examples_per_reason
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UserError(f"dedup config: examples_per_reason must be an integer >= 0 ([output] "
                            f"examples_per_reason; 0 = no examples), got {value!r}")
        for key in ("write_removed", "write_index"):
            if not isinstance(getattr(self, key), bool):
                raise UserError(f"dedup config: {key} must be true or false, got {getattr(self, key)!r}")
        if not isinstance(self.char_shingles, dict):
            raise UserError(f"dedup config: char_shingles must be a table language -> characters per shingle "
                            f"(e.g. [dedup.char_shingles] zh = 5), got {self.char_shingles!r}")
        for lang, size in self.char_shingles.items():
            if not isinstance(lang, str) or not lang or not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise UserError(f"dedup config: char_shingles.{lang} must be a positive integer (characters per "
                                f"shingle), got {size!r}")
        if self.task_memory_bytes < 0:
            raise UserError(f"dedup config: task_memory_bytes must be >= 0, got {self.task_memory_bytes}")
