"""The per-file scheduler on a local process pool: ``[ray] executor = "local"``.

The same contract as :func:`webmill.curate.workers.map_files` (one worker object per process,
built once; whole files as tasks; recycling after ``max_uses`` files; a file whose worker died
re-run up to ``max_retries`` times; an exception raised by ``process`` reported, not retried),
on :class:`concurrent.futures.ProcessPoolExecutor` instead of Ray actors. It is for runs on one
machine: no Ray is started for the per-file steps, which saves Ray's fixed start-up and
shutdown (4-13 s per command on a 2-core machine, bench/README.md "The fast path"), the cost
that dominates small and medium runs (datatrove's ``LocalPipelineExecutor`` plays the same
part). Steps that need Ray (dedup's Ray Data shuffle) still start one when they run.

Worker processes are started with ``spawn`` (a fresh interpreter: the driver may hold
threads, and fork would copy them), exiting within a second of the driver's death (a
``kill -9`` of ``curate run`` leaves no worker writing on), ``OMP_NUM_THREADS`` set to the CPUs per worker before the
worker's modules load (as Ray does for its workers), and, when a log directory is given, their
stdout/stderr go to ``<log_dir>/workers/local-<pid>.log`` (empty ones are removed).

A worker that dies (killed by the OOM killer, a crash in C code) breaks the whole pool, and the
pool does not say whose worker it was: the pool is started again and the files that were in
flight are re-run one at a time; a file is charged with a death (one of ``max_retries``) only
when it ran alone, so one bad file never makes the files beside it fail.
"""

from __future__ import annotations

import collections
import importlib
import multiprocessing
import os
import pickle
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

_worker: dict[str, Any] = {"obj": None, "error": None}


def _init_worker(module: str, qualname: str, args_pickle: bytes, threads: int, log_dir: str | None) -> None:
    """Initializer of a pool process: redirect output, set the thread count, then import the
    factory and build the worker object (a failure is kept and raised by each task)."""
    import multiprocessing.util

    from webmill.curate.extract import exit_with_parent

    exit_with_parent(os.getppid())  # a killed driver (kill -9) leaves no worker writing on
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        fd = os.open(os.path.join(log_dir, f"local-{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        factory = importlib.import_module(module)
        for part in qualname.split("."):
            factory = getattr(factory, part)
        _worker["obj"] = factory(*pickle.loads(args_pickle))
    except Exception as e:  # noqa: BLE001 - reported per task (the pool must not break on it)
        _worker["error"] = f"{type(e).__name__}: {e}"
        return
    close = getattr(_worker["obj"], "close", None)
    if close is not None:  # runs when the process exits normally (recycled, or the pool shut down)
        multiprocessing.util.Finalize(None, close, exitpriority=10)


def _run_task(task: tuple) -> Any:
    if _worker["error"] is not None:
        raise RuntimeError(f"worker could not start: {_worker['error']}")
    return _worker["obj"].process(*task)


def _stop(pool: ProcessPoolExecutor, kill: bool) -> None:
    if kill:  # interrupted or broken: do not wait for files in flight
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            p.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _remove_empty_logs(log_dir: str | None) -> None:
    if log_dir and os.path.isdir(log_dir):
        for name in os.listdir(log_dir):
            p = os.path.join(log_dir, name)
            if name.startswith("local-") and os.path.getsize(p) == 0:
                os.remove(p)
        if not os.listdir(log_dir):
            os.rmdir(log_dir)


def map_files_local(factory: Callable, args: tuple, tasks: list[tuple], *, num_workers: int = 0,
                    num_cpus: float = 1.0, max_uses: int = 64, max_retries: int = 2,
                    on_result: Callable[[int, Any], None] | None = None, log_dir: str | Path | None = None,
                    **_ray_only: Any) -> tuple[list, list[tuple[int, str]]]:
    """Run ``factory(*args).process(*task)`` for every task on a local process pool.

    Args:
        factory: a class (or function) importable by module and qualified name, building the
            per-process worker object; the object has ``process(*task)`` and optionally ``close()``.
        args: arguments of ``factory`` (pickled once, built once per process).
        tasks: one tuple of ``process`` arguments per file.
        num_workers: processes (``0``: this machine's CPUs / ``num_cpus``; never more than the tasks).
        num_cpus: CPUs per worker; also each worker's ``OMP_NUM_THREADS`` (at least 1).
        max_uses: files per process before it is replaced (bounds memory growth).
        max_retries: re-runs of a file whose worker process died while it ran alone.
        on_result: called as ``on_result(task_index, result)`` in the driver as each task finishes.
        log_dir: directory for the workers' stdout/stderr (``None``: the terminal).
        **_ray_only: the Ray-only options of :func:`~webmill.curate.workers.map_options`
            (``memory_mb``, ``start_jitter_s``, ``name``, ``rescale_s``) are accepted and unused.

    Returns:
        ``(results, failures)`` as :func:`webmill.curate.workers.map_files`: ``results[i]`` is task
        ``i``'s return value (``None`` when it failed); ``failures`` lists ``(task_index, reason)``.
    """
    results: list = [None] * len(tasks)
    failures: list[tuple[int, str]] = []
    if not tasks:
        return results, failures
    n = num_workers or max(1, int((os.cpu_count() or 1) / num_cpus + 1e-9))
    n = min(n, len(tasks))
    log = str(Path(log_dir) / "workers") if log_dir is not None else None
    initargs = (factory.__module__, factory.__qualname__, pickle.dumps(args), max(1, int(num_cpus)), log)
    queue = collections.deque(range(len(tasks)))
    suspects: collections.deque = collections.deque()  # in flight when a worker died: re-run one at a time
    attempts: dict[int, int] = {}
    ctx = multiprocessing.get_context("spawn")
    try:
        while queue or suspects:
            pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=initargs,
                                       max_tasks_per_child=max(1, max_uses))
            running: dict = {}  # future → task index
            broken = None
            try:
                while (queue or suspects or running) and broken is None:
                    if suspects:  # alone, so that a death names its file
                        if not running:
                            i = suspects.popleft()
                            running[pool.submit(_run_task, tasks[i])] = i
                    else:
                        while queue and len(running) < n:
                            i = queue.popleft()
                            running[pool.submit(_run_task, tasks[i])] = i
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        try:
                            res = fut.result()
                        except BrokenProcessPool as e:
                            broken = e  # fut stays in running: handled with the others in flight below
                            continue
                        except Exception as e:  # noqa: BLE001 - raised by process(): reported, not retried
                            failures.append((running.pop(fut), f"{type(e).__name__}: {e}"[:500]))
                            continue
                        i = running.pop(fut)
                        results[i] = res
                        if on_result:
                            on_result(i, res)
            except BaseException:
                _stop(pool, kill=True)
                raise
            _stop(pool, kill=broken is not None)
            if broken is None:
                continue
            for fut, i in list(running.items()):  # finished before the break: keep the result
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    results[i] = fut.result()
                    if on_result:
                        on_result(i, results[i])
                    del running[fut]
            lost = sorted(running.values())
            if len(lost) != 1:  # several in flight: none is charged; each re-runs alone
                suspects.extend(lost)
                continue
            i = lost[0]
            attempts[i] = attempts.get(i, 0) + 1
            if attempts[i] <= max_retries:
                suspects.appendleft(i)
            else:
                failures.append((i, f"worker died {attempts[i]} times: {broken}"[:500]))
    finally:
        _remove_empty_logs(log)
    return results, failures
