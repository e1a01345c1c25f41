"""The Ray plan of ``curate run``.

Per-document stages: one input file = one task, executed by a fixed pool of worker actors
(:class:`FileWorker`, each holding a :class:`~webmill.curate.documents.FileProcessor`, i.e.
lid.176, the blocklists and the extraction subprocess, loaded once per actor). Raw HTML never
leaves the actor: only stats come back to the driver, documents go straight to Parquet.
Actors are recycled after ``ray.max_files_per_worker`` files (bounds memory growth); a file
whose actor dies is retried on a fresh actor up to ``ray.max_retries`` times, then listed in
``OUT/failed.jsonl``.

Then the global steps (each also its own ``curate`` subcommand): dedup → PII + quality →
tokenize → stats report.
"""

from __future__ import annotations

import glob
import json
import os
import time
from pathlib import Path
from typing import Callable

from webmill.curate.outputs import marker_path
from webmill.curate.readers import input_stem
from webmill.errors import UserError

INPUT_SUFFIXES = (".warc.gz", ".warc", ".arc.gz", ".arc", ".wet.gz", ".warc.wet.gz", ".wet")


def discover_inputs(specs: list[str]) -> list[str]:
    """Expand directories, globs, ``@list.txt`` files and fsspec URLs into a sorted file list.

    A directory contributes its files ending in a WARC/WET/ARC suffix (recursively; WAT files
    are skipped: they hold metadata, not text).

    Raises:
        UserError: a path does not exist, or nothing was found (the pipeline never starts Ray
            on an empty input).
    """
    files: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            lst = Path(spec[1:])
            if not lst.is_file():
                raise UserError(f"input list not found: {lst}")
            files += [ln.strip() for ln in lst.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        elif "://" in spec:
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(spec)
            found = []
            for p in paths:
                if fs.isdir(p):
                    found += [f for f in fs.find(p) if f.endswith(INPUT_SUFFIXES)]
                else:
                    found.append(p)
            proto = spec.split("://", 1)[0]
            files += [f if "://" in f else f"{proto}://{f}" for f in found]
        elif any(c in spec for c in "*?["):
            files += [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
        else:
            p = Path(spec)
            if p.is_dir():
                files += [str(f) for f in p.rglob("*") if f.is_file() and f.name.endswith(INPUT_SUFFIXES)
                          and ".wat." not in f.name]
            elif p.is_file():
                files.append(str(p))
            else:
                raise UserError(f"input not found: {spec} (give a directory, a glob, a file or @list.txt)")
    files = sorted(dict.fromkeys(files))
    if not files:
        raise UserError(f"no WARC/WET/ARC files found in {' '.join(specs)} "
                        f"(looked for names ending in {', '.join(INPUT_SUFFIXES)})")
    return files


def check_inputs(files: list[str]) -> tuple[list[str], list[dict]]:
    """Refuse local inputs that are certainly not archives, before any worker starts.

    Each local file is sniffed (:func:`webmill.curate.readers.sniff_format`: its first bytes,
    decompressed when gzip): an empty file, one without a WARC/ARC record header in its first
    1 MB, or one that cannot be opened is rejected with the reason. Remote inputs (URLs) are not
    opened here; their readers report problems in their stats.

    Returns:
        ``(usable, rejected)``: the inputs to process, and ``[{"input", "reason"}]``.

    Raises:
        UserError: no input is usable (names the first bad file and why).
    """
    from webmill.curate.readers import sniff_format

    usable, rejected = [], []
    for f in files:
        reason = None
        if "://" not in f:
            try:
                kind = sniff_format(f)
            except OSError as e:
                kind, reason = "", f"cannot be read: {e.strerror or e}"
            if kind == "empty":
                reason = "empty file (0 bytes, or only empty gzip members): re-download it or leave it out"
            elif kind == "unknown":
                reason = ("not a WARC/WET/ARC file (no WARC/1.x or ARC record header in its first 1 MB): "
                          "give WARC, WET or ARC files (.warc.gz, .warc.wet.gz, .arc.gz, ...)")
        if reason:
            rejected.append({"input": f, "reason": reason})
        else:
            usable.append(f)
    if not usable:
        first = rejected[0]
        more = f" (and {len(rejected) - 1} more inputs like it)" if len(rejected) > 1 else ""
        raise UserError(f"{first['input']}: {first['reason']}{more}")
    return usable, rejected


def assign_stems(files: list[str]) -> dict[str, str]:
    """Map each input to a unique, rerun-stable output stem.

    The stem is the basename without archive suffixes; when two inputs share it (``x.warc.gz``
    and ``x.warc.wet.gz``) the basename without ``.gz`` is used; when even basenames collide
    (same name in two directories), a short hash of the absolute path is appended.
    """
    import hashlib

    def groups(key) -> dict[str, list[str]]:
        g: dict[str, list[str]] = {}
        for f in files:
            g.setdefault(key(f), []).append(f)
        return g

    out = {}
    for stem, group in groups(input_stem).items():
        for f in group:
            if len(group) == 1:
                out[f] = stem
                continue
            base = f.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gz")
            same = [g for g in group if g.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gz") == base]
            full = f if "://" in f else os.path.abspath(f)
            out[f] = base if len(same) == 1 else f"{base}-{hashlib.sha1(full.encode()).hexdigest()[:8]}"
    return out


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (or ``$RAY_ADDRESS``) or start an embedded local Ray.

    Checks the object store size at start and refuses one under 256 MB with a clear message.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs = dict(include_dashboard=False, log_to_driver=True, configure_logging=True,
                  logging_level="WARNING")
    addr = address or os.environ.get("RAY_ADDRESS")
    try:
        if addr:
            ray.init(address=addr, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
    except ConnectionError as e:
        raise UserError(f"cannot connect to Ray at {addr}: {e} (is `ray start --head` running there? does this "
                        "process have the cluster's auth token: RAY_AUTH_TOKEN or ~/.ray/auth_token?)") from e
    store = ray.cluster_resources().get("object_store_memory", 0)
    if store and store < 256 * 1024**2:
        raise UserError(f"Ray object store is only {store / 1024**2:.0f} MB; give Ray more memory "
                        "(ray start --object-store-memory) or free /dev/shm")


def _worker_class():
    import ray

    @ray.remote(num_cpus=1, max_restarts=0)
    class FileWorker:
        """Ray actor wrapping a FileProcessor (models loaded once per actor)."""

        def __init__(self, cfg: dict, out: str):
            from webmill.curate.documents import FileProcessor

            self.proc = FileProcessor(cfg, Path(out))

        def process(self, path: str, stem: str) -> dict:
            return self.proc.process(path, stem)

        def shutdown(self) -> bool:
            self.proc.close()
            return True

    return FileWorker


def remove_stale_temps(out: Path) -> int:
    """Delete the temp files (``.<name>.<pid>.tmp``) a killed run left in the per-file output
    directories; returns how many. Never run two ``curate run`` on one OUT at the same time."""
    n = 0
    for sub in ("documents", "stats", "markers", "removed"):
        d = Path(out) / sub
        if d.is_dir():
            for tmp in d.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)
                n += 1
    return n


def update_failed_list(out: Path, files: list[str], failed: list[dict]) -> None:
    """Rewrite ``OUT/failed.jsonl`` so that it lists the inputs that are failed *now*.

    Entries of inputs handled by this run (``files``: done, skipped or failed again) are replaced
    by this run's failures; entries of other inputs (an earlier run over more files) are kept.
    The file is removed when nothing is left.
    """
    path = Path(out) / "failed.jsonl"
    handled = set(files)
    keep = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("input") not in handled:
                keep.append(item)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    keep += [{**item, "time": now} for item in failed]
    if not keep:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(item) + "\n" for item in keep), encoding="utf-8")
    os.replace(tmp, path)


def run_documents(files: list[str], out: Path, cfg: dict, force: bool = False,
                  on_progress: Callable[[dict], None] | None = None,
                  rejected: list[dict] | None = None) -> dict:
    """Run the per-document stages over ``files`` on the current Ray cluster.

    Skips inputs whose marker exists (unless ``force``); ``rejected`` (from
    :func:`check_inputs`) are reported as failed without being run. Returns ``{"done":
    [stats...], "skipped": [paths], "failed": [{"input", "reason"}]}`` and keeps
    ``OUT/failed.jsonl`` listing the inputs that failed (see :func:`update_failed_list`).
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    from webmill.config import config_hash

    out = Path(out)
    rejected = list(rejected or [])
    all_inputs = list(files) + [r["input"] for r in rejected if r["input"] not in files]
    files = [f for f in files if f not in {r["input"] for r in rejected}]
    stems = assign_stems(files)
    remove_stale_temps(out)
    pending, skipped = [], []
    cfg_hash = config_hash(cfg)
    for f in files:
        m = marker_path(out, stems[f])
        if m.exists() and not force:
            skipped.append(f)
            old = json.loads(m.read_text()).get("config_hash")
            if old != cfg_hash:
                print(f"note: {f} was processed with another config; rerun with --force to redo it")
        else:
            pending.append(f)
    result = {"done": [], "skipped": skipped, "failed": rejected}
    if not pending:
        update_failed_list(out, all_inputs, result["failed"])
        return result
    # Warm the blocklist hash cache once in the driver so that actors only memory-map it.
    if cfg["url_filter"].get("enabled", True) and cfg["url_filter"].get("use_ut1", True):
        from webmill.filters.url import ASSETS, hashed_list

        hashed_list(ASSETS / "domains.gz")
        hashed_list(ASSETS / "urls.gz")

    rc = cfg["ray"]
    n_cpus = int(ray.cluster_resources().get("CPU", 1))
    n_workers = min(len(pending), rc["num_workers"] or n_cpus)
    Worker = _worker_class().options(memory=rc["memory_mb"] * 1024 * 1024)
    queue = list(pending)
    attempts: dict[str, int] = {}
    running: dict = {}  # ObjectRef → (actor, path)
    uses: dict = {}
    idle = [Worker.remote(cfg, str(out)) for _ in range(n_workers)]

    def submit() -> None:
        while queue and idle:
            actor = idle.pop()
            path = queue.pop(0)
            running[actor.process.remote(path, stems[path])] = (actor, path)

    submit()
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        ref = ready[0]
        actor, path = running.pop(ref)
        try:
            stats = ray.get(ref)
        except (RayActorError, WorkerCrashedError) as e:
            attempts[path] = attempts.get(path, 0) + 1
            if attempts[path] <= rc["max_retries"]:
                queue.insert(0, path)
            else:
                result["failed"].append({"input": path, "reason": f"worker died {attempts[path]} times: {e}"[:500]})
            idle.append(Worker.remote(cfg, str(out)))
        except RayTaskError as e:
            cause = e.cause if getattr(e, "cause", None) is not None else e
            result["failed"].append({"input": path, "reason": f"{type(cause).__name__}: {cause}"[:500]})
            idle.append(actor)
        else:
            result["done"].append(stats)
            if on_progress:
                on_progress(stats)
            uses[actor] = uses.get(actor, 0) + 1
            if uses[actor] >= rc["max_files_per_worker"] and queue:
                # Recycle the actor (bounds memory). Its file is done: a failure here must not
                # count against (or re-queue) that file.
                try:
                    ray.get(actor.shutdown.remote(), timeout=60)
                except Exception:  # noqa: BLE001 - the actor is replaced either way
                    pass
                ray.kill(actor)
                actor = Worker.remote(cfg, str(out))
            idle.append(actor)
        submit()
    for actor in idle:
        try:
            ray.get(actor.shutdown.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
        ray.kill(actor)
    update_failed_list(out, all_inputs, result["failed"])
    return result
