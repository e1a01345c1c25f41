"""``curate dedup``: exact + MinHash dedup of a run's documents (:func:`webmill.curate.dedup.run_dedup`).

Option defaults are those of :class:`~webmill.curate.dedup.DedupConfig` (FineWeb's settings).
"""

from __future__ import annotations

import typer

from webmill.curate.cli import app
from webmill.curate.dedup import DedupConfig, run_dedup
from webmill.curate.workers import init_ray, run_log_dir
from webmill.errors import UserError
from webmill.storage import as_storage

_D = DedupConfig()


def parse_char_shingles(text: str) -> dict[str, int]:
    """``"zh=5,ja=5"`` -> ``{"zh": 5, "ja": 5}``; ``"none"`` or ``""`` -> ``{}`` (word shingles for
    every language). Raises :class:`UserError` naming ``--char-shingles`` on a malformed entry."""
    if text.strip().lower() in ("", "none"):
        return {}
    out = {}
    for item in text.split(","):
        lang, sep, size = item.partition("=")
        if not sep or not lang.strip() or not size.strip().isdigit() or int(size) < 1:
            raise UserError(f"--char-shingles: {item.strip()!r} is not LANG=CHARS (e.g. zh=5,ja=5), or 'none'")
        out[lang.strip()] = int(size)
    return out


def dedup_cmd(
    out: str = typer.Argument(..., help="Pipeline output directory OUT, a path or an fsspec URL (reads OUT/<input-subdir>, writes OUT/<output-subdir> and OUT/stats/dedup.json)."),
    input_subdir: str = typer.Option("documents", help="Subdirectory of OUT holding the document Parquet files."),
    output_subdir: str = typer.Option("deduped", help="Subdirectory of OUT to write the deduplicated files to."),
    exact: bool = typer.Option(_D.exact, "--exact/--no-exact", help="Remove exact duplicates of the normalized text."),
    minhash: bool = typer.Option(_D.minhash, "--minhash/--no-minhash", help="Remove MinHash/LSH near duplicates."),
    num_perm: int = typer.Option(_D.num_perm, help="MinHash permutations (FineWeb: 112)."),
    bands: int = typer.Option(_D.bands, help="LSH bands; bands*rows must equal --num-perm (FineWeb: 14)."),
    rows: int = typer.Option(_D.rows, help="Rows (signature values) per LSH band (FineWeb: 8)."),
    threshold: float | None = typer.Option(_D.threshold, help="Jaccard threshold; if given, bands/rows are derived with datasketch's optimal-parameter method and --bands/--rows are ignored.", show_default="off"),
    shingle_size: int = typer.Option(_D.shingle_size, help="Words per shingle (FineWeb: 5)."),
    seed: int = typer.Option(_D.seed, help="Seed of the MinHash permutations (datasketch's seed)."),
    hash_func: str = typer.Option(_D.hash_func, help="Shingle hash: xxh3_words (fastest), xxh3 or sha1 (datasketch default)."),
    scheme: str = typer.Option(_D.scheme, help="Permutation scheme: affine32 (datasketch>=2.0) or legacy (datasketch<2.0)."),
    keep: str = typer.Option(_D.keep, help="Which document of a duplicate component to keep: quality_then_id (highest quality_score, ties: smallest id) or id (smallest id)."),
    batch_docs: int = typer.Option(_D.batch_docs, help="Documents read and hashed per step of a task (bounds task memory)."),
    max_batch_bytes: int = typer.Option(_D.max_batch_bytes, help="Largest text bytes per hashing step (bounds task memory)."),
    chunk_shingles: int = typer.Option(_D.chunk_shingles, help="Shingles per numpy step (working buffer num_perm x chunk x 4 bytes)."),
    max_edges: int = typer.Option(_D.max_edges_single_worker, "--max-edges", help="Most candidate edges for connected components on the driver (~120 bytes each); above it --components single stops with advice and auto goes distributed."),
    shuffle_rows_per_partition: int = typer.Option(_D.shuffle_rows_per_partition, help="Band rows (22 bytes each) per bucket-scan group."),
    shuffle: str = typer.Option(_D.shuffle, help="Ray Data shuffle: sort (pull-based sort shuffle, fastest here) or hash (hash shuffle with aggregator actors)."),
    task_memory_mb: int = typer.Option(_D.task_memory_bytes // 2**20, help="Memory (MiB) reserved per Ray task; 0 = no reservation."),
    components: str = typer.Option(_D.components, help="Connected components: single (scipy on the driver), distributed (Ray tasks, large-star/small-star) or auto (distributed above --distributed-min-edges)."),
    distributed_min_edges: int = typer.Option(_D.distributed_min_edges, help="With --components auto: candidate edges above which the distributed path is used."),
    edges_per_partition: int = typer.Option(_D.edges_per_partition, help="Directed edge rows per task of the distributed components (~80 bytes each in a task)."),
    max_component_rounds: int = typer.Option(_D.max_component_rounds, help="Most large-star/small-star rounds before giving up."),
    char_shingles: str = typer.Option(",".join(f"{k}={v}" for k, v in _D.char_shingles.items()), help="Languages shingled by characters, LANG=CHARS,... ('none': words for every language)."),
    write_removed: bool = typer.Option(_D.write_removed, "--write-removed/--no-write-removed", help="Also write removed documents to OUT/removed/dedup/ with dedup_cluster, kept_id and reason."),
    write_index: bool = typer.Option(_D.write_index, "--write-index/--no-write-index", help="Keep the kept documents' band keys in OUT/dedup_index/ so a later run can use --against OUT."),
    examples_per_reason: int = typer.Option(_D.examples_per_reason, help="Removed documents kept per reason (dedup_exact, dedup_near) in OUT/examples/dedup/ for the report and `curate show` (0 = none)."),
    against: list[str] | None = typer.Option(None, "--against", help="Earlier run's OUT (written with --write-index; repeatable): remove documents duplicating the documents it kept; it is only read.", show_default="none"),
    ray_address: str | None = typer.Option(None, envvar="RAY_ADDRESS", help="Ray cluster address.", show_default="start a local Ray"),
) -> None:
    """Remove exact and MinHash near-duplicate documents (FineWeb settings: 5-gram shingles, 14x8 LSH)."""
    import ray

    cfg = DedupConfig(
        exact=exact, minhash=minhash, num_perm=num_perm, bands=bands, rows=rows, threshold=threshold,
        shingle_size=shingle_size, seed=seed, hash_func=hash_func, scheme=scheme, keep=keep,
        batch_docs=batch_docs, max_batch_bytes=max_batch_bytes, chunk_shingles=chunk_shingles,
        max_edges_single_worker=max_edges, shuffle_rows_per_partition=shuffle_rows_per_partition, shuffle=shuffle,
        task_memory_bytes=task_memory_mb * 2**20, components=components, distributed_min_edges=distributed_min_edges,
        edges_per_partition=edges_per_partition, max_component_rounds=max_component_rounds,
        char_shingles=parse_char_shingles(char_shingles), write_removed=write_removed, write_index=write_index,
        examples_per_reason=examples_per_reason,
    )
    cfg.validate()
    storage = as_storage(out)
    started = False
    if not ray.is_initialized():  # Ray's own logs go to OUT/logs (a temp dir when OUT is remote)
        init_ray(ray_address, log_dir=run_log_dir(storage))
        started = True
    try:
        s = run_dedup(storage, cfg, input_subdir=input_subdir, output_subdir=output_subdir, against=against or [])
    finally:
        if started:
            ray.shutdown()
    typer.echo(
        f"dedup: {s['documents_in']:,} documents in, {s['documents_out']:,} out "
        f"({s['exact']['documents_removed']:,} exact, {s['minhash']['documents_removed']:,} near duplicates removed; "
        f"{s['minhash']['near_duplicate_components']:,} near-duplicate components"
        + (f"; {s['against']['documents_removed']:,} duplicates of earlier runs" if "against" in s else "")
        + f"; {s['components_path']} components) in {s['seconds']['total']:.1f} s; "
        f"stats: {storage.uri('stats/dedup.json')}"
    )


app.command("dedup")(dedup_cmd)
