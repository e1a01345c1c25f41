"""Ray for webmill: starting or joining Ray quietly, and the per-file actor scheduler.

One way to drive Ray per kind of work (docs/design.md, "Ray"):

* **per-file work** (the documents stage, finalize's PII + quality scoring): :func:`map_files`,
  a small scheduler over a pool of actors sized from the ``[ray]`` config (:func:`map_options`:
  CPUs and memory per actor, a jittered first start). Each actor builds one worker object
  (models loaded once per actor) and processes whole files; an actor is recycled after
  ``max_uses`` files (bounds memory growth), and a file whose actor died (or whose node was
  lost) is retried on another actor up to ``max_retries`` times, then reported as failed. Files
  go only to actors that have started, so actors waiting for room (a lost node, an autoscaling
  cluster) hold none. Only small stats dicts travel back to the driver; documents go straight
  from the actor to ``OUT``. docs/cluster.md, "Ray cluster".
* **the global shuffle of dedup**: Ray Data (:mod:`webmill.curate.dedup`).

With ``[ray] executor = "local"`` (:func:`init_workers`) the per-file work runs on a local process
pool with the same contract (:mod:`webmill.curate.local_pool`) and no Ray is started until a step
needs it (:func:`ensure_ray`).

:func:`init_ray` keeps a run quiet: Ray's own log lines (the token-authentication warning, Ray
Data's ``streaming_executor`` and progress lines, worker stdout/stderr) go to a log directory
(``OUT/logs/`` for a local ``OUT``) instead of the terminal, unless ``verbose``.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.abc
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from webmill.errors import UserError

RAY_LOG = "ray.log"  # driver-side Ray and Ray Data log lines, in the log directory
#: ``[ray] executor``: where per-file work runs (``local``: webmill/curate/local_pool.py)
EXECUTORS = ("ray", "local")
_state: dict[str, Any] = {"log_dir": None, "embedded": False}


def _quiet_ray_loggers(log_file: Path) -> None:
    """Send the ``ray`` and ``ray.data`` loggers of this process to ``log_file`` only."""
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"))
    handler.name = "webmill-ray-log"
    for name in ("ray", "ray.data"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.addHandler(handler)
        lg.propagate = False


class _AfterImport(importlib.abc.MetaPathFinder):
    """A finder that wraps module ``name``'s loader so that ``hook(module)`` runs right after
    the module is executed (once; Python has no post-import hook of its own)."""

    def __init__(self, name: str, hook: Callable):
        self.name, self.hook = name, hook

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                exec_module, hook = spec.loader.exec_module, self.hook

                def exec_then_hook(module, exec_module=exec_module, hook=hook):
                    exec_module(module)
                    hook(module)

                spec.loader.exec_module = exec_then_hook
                return spec
        return None


def after_import(name: str, hook: Callable) -> None:
    """Call ``hook(module)`` once module ``name`` is imported: now when it already is, else
    right after the first import of it in this process."""
    if name in sys.modules:
        hook(sys.modules[name])
        return
    for f in sys.meta_path:  # one pending hook per module: the newest replaces the older
        if isinstance(f, _AfterImport) and f.name == name:
            f.hook = hook
            return
    sys.meta_path.insert(0, _AfterImport(name, hook))


def run_log_dir(st) -> Path:
    """Where Ray's own logs of a command over ``OUT`` go: ``OUT/logs`` when ``OUT`` (a
    :class:`~webmill.storage.Storage`) is on local disk, else a new local temp directory."""
    import tempfile

    return st.local_path("logs") if st.is_local else Path(tempfile.mkdtemp(prefix="webmill-ray-logs-"))


def init_ray(address: str | None = None, num_cpus: int | None = None, log_dir: str | Path | None = None,
             verbose: bool = False) -> Path | None:
    """Connect to ``address`` (or ``$RAY_ADDRESS``) or start an embedded local Ray.

    Args:
        address: Ray cluster address; ``None``: ``$RAY_ADDRESS`` or an embedded local Ray.
        num_cpus: CPUs of an embedded Ray (default: all).
        log_dir: local directory for Ray's own logs (``ray.log``; worker output is copied to
            ``workers/`` by :func:`collect_worker_logs`). ``None`` with ``verbose=False``: Ray
            logs to the terminal as it does by default (subcommands other than ``run``).
        verbose: show Ray's logs and worker output on the terminal (``curate run --verbose``).

    Returns:
        The directory holding Ray's logs, or ``None`` when they go to the terminal.

    Raises:
        UserError: the cluster cannot be reached, or its object store is under 256 MB.
    """
    import ray

    if ray.is_initialized():
        return _state["log_dir"]
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    quiet = log_dir is not None and not verbose
    kwargs = dict(include_dashboard=False, log_to_driver=not quiet, configure_logging=True,
                  logging_level="INFO" if quiet else "WARNING")
    if quiet:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        _quiet_ray_loggers(log_dir / RAY_LOG)
        # importing ray.data configures its logger (to the terminal), so quiet it again right
        # after that import: at once if it is loaded, else when a step first imports it (dedup).
        # Not importing it here saves 1-3 s of start-up of runs that never use Ray Data.
        after_import("ray.data", lambda data: (_quiet_ray_loggers(log_dir / RAY_LOG),
                                               setattr(data.DataContext.get_current(),
                                                       "enable_progress_bars", False)))
    addr = address or os.environ.get("RAY_ADDRESS")
    sink = open(log_dir / RAY_LOG, "a", encoding="utf-8") if quiet else None
    try:
        # Ray and its C++ core may also write straight to sys.stderr while starting
        with contextlib.redirect_stderr(sink) if sink else contextlib.nullcontext():
            if addr:
                ray.init(address=addr, **kwargs)
            else:
                # address="local": always a new embedded Ray, never one that `ray start` runs
                # on this machine (ray.init() with no address would join it)
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **kwargs)
    except ConnectionError as e:
        raise UserError(f"cannot connect to Ray at {addr}: {e} (is `ray start --head` running there? does this "
                        "process have the cluster's auth token: RAY_AUTH_TOKEN or ~/.ray/auth_token?)") from e
    finally:
        if sink:
            sink.close()
    _state.update(log_dir=log_dir if quiet else None, embedded=not addr)
    store = ray.cluster_resources().get("object_store_memory", 0)
    if store and store < 256 * 1024**2:
        raise UserError(f"Ray object store is only {store / 1024**2:.0f} MB; give Ray more memory "
                        "(ray start --object-store-memory) or free /dev/shm")
    return _state["log_dir"]


def init_workers(cfg: dict, address: str | None = None, log_dir: str | Path | None = None,
                 verbose: bool = False) -> Path | None:
    """Prepare the per-file executor of ``cfg["ray"]["executor"]``: :func:`init_ray` for
    ``"ray"``; for ``"local"`` no Ray is started (a step that needs it calls :func:`init_ray`
    when it runs) and the workers' output goes to ``log_dir/workers/`` unless ``verbose``.

    Returns:
        The log directory (``None``: logs go to the terminal).

    Raises:
        UserError: an unknown executor, or (``"ray"``) as :func:`init_ray`.
    """
    executor = map_options(cfg["ray"])["executor"]
    if executor == "ray":
        return init_ray(address, log_dir=log_dir, verbose=verbose)
    quiet = log_dir is not None and not verbose
    if quiet:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
    _state.update(log_dir=Path(log_dir) if quiet else None, embedded=False, ray_args=(address, log_dir, verbose))
    return _state["log_dir"]


def ensure_ray() -> None:
    """Start or join Ray now if this process has none yet, with the address and log settings
    given to :func:`init_workers` (a step that needs Ray, in a run on the local executor)."""
    import ray

    if not ray.is_initialized():
        address, log_dir, verbose = _state.get("ray_args") or (None, None, False)
        init_ray(address, log_dir=log_dir, verbose=verbose)


def ray_session_logs() -> str | None:
    """Ray's session log directory of this process (``/tmp/ray/session_*/logs``), if known."""
    try:
        import ray

        return ray._private.worker._global_node.get_logs_dir_path()  # no public API for it
    except Exception:  # noqa: BLE001 - only used for messages and log copies
        return None


def collect_worker_logs() -> Path | None:
    """Copy the non-empty worker ``*.out``/``*.err`` files of an embedded quiet Ray into
    ``<log_dir>/workers/``; returns that directory (``None``: nothing to collect).

    On a cluster the worker logs stay on the nodes (``/tmp/ray/session_latest/logs``).
    """
    if "ray" not in sys.modules:  # no Ray in this process (the local executor): nothing to copy
        return None
    log_dir, src = _state["log_dir"], ray_session_logs()
    if log_dir is None or not _state["embedded"] or not src or not os.path.isdir(src):
        return None
    dst = Path(log_dir) / "workers"
    for name in sorted(os.listdir(src)):
        p = os.path.join(src, name)
        if name.startswith("worker-") and name.endswith((".out", ".err")) and os.path.getsize(p) > 0:
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst / name)
    return dst if dst.is_dir() else None


class _Host:
    """Ray actor body: builds ``factory(*args)`` once (after ``delay_s`` seconds: the jittered
    start) and calls its ``process`` per file."""

    def __init__(self, factory: Callable, args: tuple, delay_s: float = 0.0):
        if delay_s > 0:
            time.sleep(delay_s)
        self.obj = factory(*args)

    def ready(self) -> bool:
        return True

    def process(self, *task) -> Any:
        return self.obj.process(*task)

    def shutdown(self) -> bool:
        close = getattr(self.obj, "close", None)
        if close is not None:
            close()
        return True


def _shutdown(ray, actor, timeout: float) -> None:
    try:
        ray.get(actor.shutdown.remote(), timeout=timeout)
    except Exception:  # noqa: BLE001 - the actor is killed either way
        pass
    _kill(ray, actor)


def _kill(ray, actor) -> None:
    try:
        ray.kill(actor)
    except Exception:  # noqa: BLE001 - already dead (its node is gone)
        pass


def map_options(ray_cfg: dict) -> dict:
    """Keyword arguments of :func:`map_files` from the config's ``[ray]`` table
    (:data:`webmill.config.DEFAULTS`; docs/cluster.md, "Ray cluster").

    Raises:
        UserError: an unknown ``executor``, ``num_cpus`` not above 0, or a negative
            ``start_jitter_s`` or ``memory_mb``.
    """
    opts = {"executor": ray_cfg.get("executor", "ray"),
            "num_workers": ray_cfg["num_workers"], "num_cpus": float(ray_cfg.get("num_cpus", 1.0)),
            "memory_mb": ray_cfg["memory_mb"] or None, "max_uses": ray_cfg["max_files_per_worker"],
            "max_retries": ray_cfg["max_retries"], "start_jitter_s": float(ray_cfg.get("start_jitter_s", 0.0))}
    if opts["executor"] not in EXECUTORS:
        raise UserError(f"config [ray] executor must be one of {', '.join(EXECUTORS)}, got {opts['executor']!r}")
    if opts["num_cpus"] <= 0:
        raise UserError(f"config [ray] num_cpus must be above 0 (CPUs reserved per worker), got {opts['num_cpus']}")
    for key in ("start_jitter_s", "memory_mb"):
        if (opts[key] or 0) < 0:
            raise UserError(f"config [ray] {key} must be 0 or more, got {opts[key]}")
    return opts


def map_files(factory: Callable, args: tuple, tasks: list[tuple], *, executor: str = "ray", num_workers: int = 0,
              num_cpus: float = 1.0, memory_mb: int | None = None, max_uses: int = 64, max_retries: int = 2,
              start_jitter_s: float = 0.0, on_result: Callable[[int, Any], None] | None = None,
              name: str = "FileWorker", rescale_s: float = 5.0) -> tuple[list, list[tuple[int, str]]]:
    """Run ``factory(*args).process(*task)`` for every task on a pool of Ray actors
    (``executor="local"``: on a local process pool, :func:`webmill.curate.local_pool.map_files_local`).

    A task goes only to an actor that has started (built its worker object), so an actor that
    cannot be placed (its node was lost, the cluster is full) holds no file; it stays requested
    (an autoscaler sees the demand) and is dropped when the queue is empty. With
    ``num_workers=0`` the pool follows the cluster: every ``rescale_s`` seconds while files are
    queued, actors are added up to the cluster's CPUs / ``num_cpus`` (nodes that join get work).

    Args:
        factory: a picklable class (or function) building the per-actor worker object; the
            object has ``process(*task)`` and optionally ``close()``.
        args: arguments of ``factory`` (sent once per actor).
        tasks: one tuple of ``process`` arguments per file.
        num_workers: actors (``0``: cluster CPUs / ``num_cpus``, re-checked as nodes come and
            go; never more than the files left).
        num_cpus: CPUs reserved per actor (Ray resource; fractions pack several per CPU).
        memory_mb: memory reserved per actor in MiB (Ray's ``memory`` resource; ``None``: none).
        max_uses: files per actor before it is replaced (bounds memory growth).
        max_retries: re-runs of a task whose actor died (its process exited, or its node was
            lost); also the actors that may fail to start in a row before the queued files
            are reported as failed.
        start_jitter_s: each actor of the first pool waits a uniform random 0..``start_jitter_s``
            seconds before building its worker (its first request to the object store), so
            that many workers do not hit one bucket at once (datatrove's
            ``randomize_start_duration`` for FineWeb; 0: no wait).
        on_result: called as ``on_result(task_index, result)`` as each task finishes.
        name: the actors' class name (their processes show as ``ray::<name>``).
        rescale_s: seconds between checks of the cluster's CPUs (``num_workers=0``).

    Returns:
        ``(results, failures)``: ``results[i]`` is task ``i``'s return value (``None`` when it
        failed); ``failures`` lists ``(task_index, reason)`` in the order they happened: an
        exception raised by ``process`` (not retried: it would raise again), an actor that
        died more than ``max_retries`` times, or no actor that could start.
    """
    if executor == "local":
        from webmill.curate.local_pool import map_files_local

        return map_files_local(factory, args, tasks, num_workers=num_workers, num_cpus=num_cpus, max_uses=max_uses,
                               max_retries=max_retries, on_result=on_result, log_dir=_state["log_dir"])
    import ray
    from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, RayError, RayTaskError, WorkerCrashedError

    lost = (RayActorError, WorkerCrashedError, NodeDiedError, ObjectLostError)  # the actor or its node is gone
    results: list = [None] * len(tasks)
    failures: list[tuple[int, str]] = []
    if not tasks:
        return results, failures
    opts: dict = {"num_cpus": num_cpus, "max_restarts": 0}
    if memory_mb:
        opts["memory"] = int(memory_mb * 1024 * 1024)
    Actor = ray.remote(**opts)(type(name, (_Host,), {"__module__": __name__}))
    queue = collections.deque(range(len(tasks)))
    attempts: dict[int, int] = {}
    running: dict = {}  # ObjectRef of process() → (actor, task index)
    starting: dict = {}  # ObjectRef of ready() → actor
    idle: list = []
    uses: dict = {}
    start_errors = [0, ""]  # actors in a row that failed to start, the last reason

    def wanted() -> int:
        n = num_workers or max(1, int(ray.cluster_resources().get("CPU", 0) / num_cpus + 1e-9))
        return min(n, len(queue) + len(running))

    def grow(jitter: bool) -> None:
        if start_errors[0] > max_retries:
            return
        for _ in range(wanted() - len(idle) - len(running) - len(starting)):
            delay = random.uniform(0, start_jitter_s) if jitter and start_jitter_s > 0 else 0.0
            actor = Actor.remote(factory, args, delay)
            starting[actor.ready.remote()] = actor

    grow(jitter=True)
    next_check = time.monotonic() + rescale_s
    while queue or running:
        while queue and idle:
            actor = idle.pop()
            i = queue.popleft()
            running[actor.process.remote(*tasks[i])] = (actor, i)
        if not running and not starting:  # files left and no actor could start
            failures += [(i, f"worker could not start {start_errors[0]} times: {start_errors[1]}"[:500])
                         for i in queue]
            queue.clear()
            break
        ready, _ = ray.wait(list(running) + list(starting), num_returns=1, timeout=rescale_s)
        if not num_workers and queue and time.monotonic() >= next_check:
            grow(jitter=False)  # nodes joined (or left) the cluster
            next_check = time.monotonic() + rescale_s
        if not ready:
            continue
        ref = ready[0]
        if ref in starting:
            actor = starting.pop(ref)
            try:
                ray.get(ref)
            except RayError as e:  # its constructor raised, or its node was lost
                start_errors[:] = [start_errors[0] + 1, f"{type(e).__name__}: {e}"]
                _kill(ray, actor)
                grow(jitter=False)
            else:
                start_errors[0] = 0
                idle.append(actor)
            continue
        actor, i = running.pop(ref)
        try:
            res = ray.get(ref)
        except lost as e:
            _kill(ray, actor)  # an unreachable actor may still be alive: it must not write on
            attempts[i] = attempts.get(i, 0) + 1
            if attempts[i] <= max_retries:
                queue.appendleft(i)
            else:
                failures.append((i, f"worker died {attempts[i]} times: {e}"[:500]))
            grow(jitter=False)
        except RayTaskError as e:
            cause = e.cause if getattr(e, "cause", None) is not None else e
            failures.append((i, f"{type(cause).__name__}: {cause}"[:500]))
            idle.append(actor)
        else:
            results[i] = res
            if on_result:
                on_result(i, res)
            uses[actor] = uses.get(actor, 0) + 1
            if uses[actor] >= max_uses and queue:
                # Recycle the actor (bounds memory). Its task is done: a failure here must not
                # count against (or re-queue) that task.
                _shutdown(ray, actor, 60)
                grow(jitter=False)
            else:
                idle.append(actor)
    for actor in idle:
        _shutdown(ray, actor, 30)
    for actor in starting.values():  # never started (no room on the cluster): not needed now
        _kill(ray, actor)
    return results, failures
