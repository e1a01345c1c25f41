"""Ray for webmill: starting or joining Ray quietly, and the per-file actor scheduler.

One way to drive Ray per kind of work (docs/design.md, "Ray"):

* **per-file work** (the documents stage, finalize's PII + quality scoring): :func:`map_files`,
  a small scheduler over a fixed pool of actors. Each actor builds one worker object (models
  loaded once per actor) and processes whole files; an actor is recycled after
  ``max_uses`` files (bounds memory growth), and a file whose actor died is retried on a fresh
  actor up to ``max_retries`` times, then reported as failed. Only small stats dicts travel back
  to the driver; documents go straight from the actor to ``OUT``.
* **the global shuffle of dedup**: Ray Data (:mod:`webmill.curate.dedup`).

:func:`init_ray` keeps a run quiet: Ray's own log lines (the token-authentication warning, Ray
Data's ``streaming_executor`` and progress lines, worker stdout/stderr) go to a log directory
(``OUT/logs/`` for a local ``OUT``) instead of the terminal, unless ``verbose``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from webmill.errors import UserError

RAY_LOG = "ray.log"  # driver-side Ray and Ray Data log lines, in the log directory
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
        import ray.data  # configures the ray.data logger, which the next call replaces

        _quiet_ray_loggers(log_dir / RAY_LOG)
        ray.data.DataContext.get_current().enable_progress_bars = False
    addr = address or os.environ.get("RAY_ADDRESS")
    sink = open(log_dir / RAY_LOG, "a", encoding="utf-8") if quiet else None
    try:
        # Ray and its C++ core may also write straight to sys.stderr while starting
        with contextlib.redirect_stderr(sink) if sink else contextlib.nullcontext():
            if addr:
                ray.init(address=addr, **kwargs)
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
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
    """Ray actor body: builds ``factory(*args)`` once and calls its ``process`` per file."""

    def __init__(self, factory: Callable, args: tuple):
        self.obj = factory(*args)

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
    ray.kill(actor)


def map_files(factory: Callable, args: tuple, tasks: list[tuple], *, num_workers: int = 0,
              memory_mb: int | None = None, max_uses: int = 64, max_retries: int = 2,
              on_result: Callable[[int, Any], None] | None = None,
              name: str = "FileWorker") -> tuple[list, list[tuple[int, str]]]:
    """Run ``factory(*args).process(*task)`` for every task on a pool of Ray actors.

    Args:
        factory: a picklable class (or function) building the per-actor worker object; the
            object has ``process(*task)`` and optionally ``close()``.
        args: arguments of ``factory`` (sent once per actor).
        tasks: one tuple of ``process`` arguments per file.
        num_workers: actors (``0``: one per CPU of the cluster; never more than the tasks).
        memory_mb: memory reserved per actor (``None``: no reservation).
        max_uses: files per actor before it is replaced (bounds memory growth).
        max_retries: re-runs of a task whose actor died (the actor process exited).
        on_result: called as ``on_result(task_index, result)`` as each task finishes.
        name: the actors' class name (their processes show as ``ray::<name>``).

    Returns:
        ``(results, failures)``: ``results[i]`` is task ``i``'s return value (``None`` when it
        failed); ``failures`` lists ``(task_index, reason)`` in the order they happened: an
        exception raised by ``process`` (not retried: it would raise again), or an actor that
        died more than ``max_retries`` times.
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    results: list = [None] * len(tasks)
    failures: list[tuple[int, str]] = []
    if not tasks:
        return results, failures
    n = min(len(tasks), num_workers or int(ray.cluster_resources().get("CPU", 1)))
    opts: dict = {"num_cpus": 1, "max_restarts": 0}
    if memory_mb:
        opts["memory"] = memory_mb * 1024 * 1024
    Actor = ray.remote(**opts)(type(name, (_Host,), {"__module__": __name__}))
    queue = list(range(len(tasks)))
    attempts: dict[int, int] = {}
    running: dict = {}  # ObjectRef → (actor, task index)
    uses: dict = {}
    idle = [Actor.remote(factory, args) for _ in range(max(1, n))]

    def submit() -> None:
        while queue and idle:
            actor = idle.pop()
            i = queue.pop(0)
            running[actor.process.remote(*tasks[i])] = (actor, i)

    submit()
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        ref = ready[0]
        actor, i = running.pop(ref)
        try:
            res = ray.get(ref)
        except (RayActorError, WorkerCrashedError) as e:
            attempts[i] = attempts.get(i, 0) + 1
            if attempts[i] <= max_retries:
                queue.insert(0, i)
            else:
                failures.append((i, f"worker died {attempts[i]} times: {e}"[:500]))
            idle.append(Actor.remote(factory, args))
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
                actor = Actor.remote(factory, args)
            idle.append(actor)
        submit()
    for actor in idle:
        _shutdown(ray, actor, 30)
    return results, failures
