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
        raise UserError(f"cannot connect to Ray at {addr}: {e} (is `ray start --head` running?)") from e
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


def run_documents(files: list[str], out: Path, cfg: dict, force: bool = False,
                  on_progress: Callable[[dict], None] | None = None) -> dict:
    """Run the per-document stages over ``files`` on the current Ray cluster.

    Skips inputs whose marker exists (unless ``force``). Returns ``{"done": [stats...],
    "skipped": [paths], "failed": [{"input", "reason"}]}`` and appends failures to
    ``OUT/failed.jsonl``.
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    from webmill.config import config_hash

    out = Path(out)
    stems = assign_stems(files)
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
    result = {"done": [], "skipped": skipped, "failed": []}
    if not pending:
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
            result["done"].append(stats)
            if on_progress:
                on_progress(stats)
            uses[actor] = uses.get(actor, 0) + 1
            if uses[actor] >= rc["max_files_per_worker"] and queue:
                ray.get(actor.shutdown.remote())
                ray.kill(actor)
                actor = Worker.remote(cfg, str(out))
            idle.append(actor)
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
        submit()
    for actor in idle:
        try:
            ray.get(actor.shutdown.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
        ray.kill(actor)
    if result["failed"]:
        with open(out / "failed.jsonl", "a", encoding="utf-8") as f:
            for item in result["failed"]:
                f.write(json.dumps({**item, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    return result
