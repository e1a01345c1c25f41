"""The whole curation run as one function: :func:`run_pipeline`.

Order (each step is also its own ``curate`` subcommand, so it can be re-run alone)::

    inputs            curate/inputs.py: discover, check, stems (driver, before Ray starts)
    documents stage   per-document stages of curate/stages.py, one file per task on the
                      per-file actor scheduler (curate/workers.py): OUT/documents, stats, markers
    dedup             Ray Data shuffle (curate/dedup/): OUT/deduped
    PII + quality     per-file actor scheduler (curate/finalize.py): OUT/final
    rephrase          optional (curate/rephrase/): OUT/rephrased
    tokenize          bpe:N trains a tokenizer on this run's text first: OUT/tokenizer, OUT/shards
    report            OUT/report (a report problem never fails the run)

``OUT`` is a local directory or any fsspec URL; every read and write of it in this package goes
through :class:`webmill.storage.Storage`. A rerun skips the inputs that have a completion
marker (``OUT/markers/<stem>.done``, written last) and repeats the global steps, which are
deterministic: the same inputs give byte-identical ``documents/``, ``deduped/``, ``final/`` and
``shards/``.

From Python::

    from webmill.config import load_config
    from webmill.curate.pipeline import run_pipeline

    res = run_pipeline(["examples/warc"], "webmill-out/demo", load_config("examples/demo.toml"))
    print(res.failed, res.report)
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from webmill.config import config_hash, kwargs_of
from webmill.curate.inputs import (INPUT_SUFFIXES, assign_stems, check_inputs,  # noqa: F401 - re-exported
                                   discover_inputs)
from webmill.curate.outputs import PER_FILE_DIRS, marker_rel
from webmill.curate.workers import (collect_worker_logs, ensure_ray, init_ray, init_workers,  # noqa: F401 - re-exported
                                    map_files, map_options, run_log_dir)
from webmill.errors import UserError
from webmill.storage import Storage, as_storage, configure_storage


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def remove_stale_temps(out: str | os.PathLike | Storage) -> int:
    """Delete the temp files a killed run left in the per-file output directories
    (:data:`~webmill.curate.outputs.PER_FILE_DIRS`); returns how many. Never run two
    ``curate run`` on one OUT at the same time."""
    st = as_storage(out)
    return sum(st.sweep_temps(sub) for sub in PER_FILE_DIRS)


def update_failed_list(out: str | os.PathLike | Storage, files: list[str], failed: list[dict]) -> None:
    """Rewrite ``OUT/failed.jsonl`` so that it lists the inputs that are failed *now*.

    Entries of inputs handled by this run (``files``: done, skipped or failed again) are replaced
    by this run's failures; entries of other inputs (an earlier run over more files) are kept.
    The file is removed when nothing is left.
    """
    import json

    st = as_storage(out)
    handled = set(files)
    keep = []
    if st.exists("failed.jsonl"):
        for line in st.read_text("failed.jsonl").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("input") not in handled:
                keep.append(item)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    keep += [{**item, "time": now} for item in failed]
    if not keep:
        st.remove("failed.jsonl")
        return
    st.write_text("failed.jsonl", "".join(json.dumps(item) + "\n" for item in keep))


def run_documents(files: list[str], out: str | os.PathLike | Storage, cfg: dict, force: bool = False,
                  on_progress: Callable[[dict], None] | None = None,
                  rejected: list[dict] | None = None, echo: Callable[[str], None] = _stderr) -> dict:
    """Run the per-document stages over ``files`` with the configured executor (the current Ray
    cluster, or a local process pool with ``[ray] executor = "local"``).

    Skips inputs whose marker exists (unless ``force``); ``rejected`` (from
    :func:`check_inputs`) are reported as failed without being run. Returns ``{"done":
    [stats...], "skipped": [paths], "failed": [{"input", "reason"}]}`` and keeps
    ``OUT/failed.jsonl`` listing the inputs that failed (see :func:`update_failed_list`).
    """
    from webmill.curate.documents import FileProcessor

    st = as_storage(out)
    rejected = list(rejected or [])
    all_inputs = list(files) + [r["input"] for r in rejected if r["input"] not in files]
    files = [f for f in files if f not in {r["input"] for r in rejected}]
    stems = assign_stems(files)
    remove_stale_temps(st)
    pending, skipped = [], []
    cfg_hash = config_hash(cfg)
    for f in files:
        m = marker_rel(stems[f])
        if st.exists(m) and not force:
            skipped.append(f)
            if st.read_json(m).get("config_hash") != cfg_hash:
                echo(f"note: {f} was processed with another config; rerun with --force to redo it")
        else:
            pending.append(f)
    result = {"done": [], "skipped": skipped, "failed": rejected}
    if pending:
        # Warm the blocklist hash cache once in the driver so that actors only memory-map it.
        if cfg["url_filter"].get("enabled", True) and cfg["url_filter"].get("use_ut1", True):
            from webmill.filters.url import ASSETS, hashed_list

            hashed_list(ASSETS / "domains.gz")
            hashed_list(ASSETS / "urls.gz")
        if cfg.get("decontaminate", {}).get("enabled"):  # the n-gram index, built once here; actors load it
            from webmill.curate.decontam import prepare_index

            for s in prepare_index(st, cfg)["sets"]:
                bad = f", {s['bad_lines']} bad lines skipped (listed in {st.uri('decontam/index.json')})" \
                    if s["bad_lines"] else ""
                echo(f"decontaminate: {s['name']}: {s['items']} items, {s['ngrams']} n-grams{bad}")

        def done(_i: int, stats: dict) -> None:
            result["done"].append(stats)
            if on_progress:
                on_progress(stats)

        _, failures = map_files(FileProcessor, (cfg, st), [(p, stems[p]) for p in pending],
                                **map_options(cfg["ray"]), on_result=done, name="FileWorker")
        result["failed"] += [{"input": pending[i], "reason": reason} for i, reason in failures]
    update_failed_list(st, all_inputs, result["failed"])
    return result


def tokenize_step(out: str | os.PathLike | Storage, src: str, cfg: dict) -> dict:
    """Token shards of ``OUT/<src>`` in ``OUT/shards`` with ``cfg``'s ``[tokenize]`` table;
    ``tokenizer = "bpe:N"`` first trains a byte-level BPE of vocab N (rustbpe) on that text into
    ``OUT/tokenizer``. Returns the shard manifest (:func:`webmill.tokenize.dataset.tokenize_dataset`).

    Raises:
        UserError: a malformed ``bpe:N``, or as ``tokenize_dataset`` (unknown tokenizer, ...).
    """
    from webmill.tokenize.dataset import tokenize_dataset

    st = as_storage(out)
    t = cfg["tokenize"]
    tokenizer = t["tokenizer"]
    if tokenizer.startswith("bpe:"):
        from webmill.tokenize.bpe import iter_texts, train_tokenizer

        try:
            vocab = int(tokenizer.split(":", 1)[1])
        except ValueError as e:
            raise UserError(f"[tokenize] tokenizer {tokenizer!r}: use bpe:<vocab size>, e.g. bpe:4096") from e
        train_tokenizer(iter_texts(st.sub(src)), vocab, st.sub("tokenizer"), name=f"webmill-bpe-{vocab}")
        tokenizer = st.uri("tokenizer")
    return tokenize_dataset(st.sub(src), st.sub("shards"), tokenizer=tokenizer, shard_tokens=t["shard_tokens"],
                            val_fraction=t["val_fraction"], seed=t["seed"], config_hash=config_hash(cfg))


def run_global_steps(out: str | os.PathLike | Storage, cfg: dict, tokenize: bool = True) -> str:
    """dedup → PII + quality → rephrase → tokenize, each as ``cfg`` enables it, over ``OUT``.

    Returns the subdirectory of ``OUT`` holding the final documents (``"final"``, ...).
    """
    st = as_storage(out)
    src = "documents"
    if cfg["dedup"].get("enabled", True):
        from webmill.curate.dedup import DedupConfig, run_dedup

        ensure_ray()  # the Ray Data shuffle; started here when the per-file steps ran without Ray

        kwargs = {"write_removed": cfg["output"].get("write_removed", False),
                  "examples_per_reason": cfg["output"].get("examples_per_reason", 5), **kwargs_of(cfg["dedup"])}
        run_dedup(st, DedupConfig(**kwargs), input_subdir="documents", output_subdir="deduped")
        src = "deduped"
    if cfg["pii"].get("enabled", True) or cfg["quality"].get("enabled", False):
        from webmill.curate.finalize import run_finalize

        run_finalize(st, cfg, input_subdir=src, output_subdir="final")
        src = "final"
    if cfg["rephrase"].get("enabled", False):
        from webmill.curate.rephrase import run_rephrase

        run_rephrase(st, cfg, input_subdir=src, output_subdir="rephrased")
        src = "rephrased"
    if tokenize:
        tokenize_step(st, src, cfg)
    return src


@dataclass
class Inputs:
    """Discovered and checked inputs (:func:`prepare_inputs`)."""

    files: list[str]
    rejected: list[dict] = field(default_factory=list)


def prepare_inputs(specs: list[str]) -> Inputs:
    """:func:`discover_inputs` then :func:`check_inputs` (raises :class:`UserError` when no
    input is usable)."""
    files, rejected = check_inputs(discover_inputs(list(specs)))
    return Inputs(files, rejected)


@dataclass
class RunResult:
    """What :func:`run_pipeline` did.

    Attributes:
        out: the output directory (URL or path as given).
        done: per-input stats dicts of the inputs processed now.
        skipped: inputs skipped because their completion marker exists.
        failed: ``[{"input", "reason"}]``: inputs missing from the output (``OUT/failed.jsonl``).
        final_subdir: subdirectory of ``OUT`` with the final documents.
        report: path/URL of the report page, or ``None``.
        log_dir: local directory with Ray's own logs, or ``None`` (they went to the terminal).
    """

    out: str
    done: list[dict]
    skipped: list[str]
    failed: list[dict]
    final_subdir: str = "documents"
    report: str | None = None
    log_dir: str | None = None


def validate_languages(cfg: dict) -> None:
    """Check ``[language] languages`` against lid.176's labels before any work starts.

    Raises:
        UserError: an unknown code (names it, suggests the ISO 639-1 code for a 3-letter one).
    """
    if not cfg["language"].get("enabled", True):
        return
    from webmill.curate.languages import check_languages

    check_languages(cfg["language"].get("languages", ["en"]), cfg["language"].get("model_path", ""))


def run_pipeline(inputs: list[str] | Inputs, out: str | os.PathLike | Storage, cfg: dict, *,
                 ray_address: str | None = None, force: bool = False, tokenize: bool = True,
                 report: bool = True, on_progress: Callable[[dict], None] | None = None,
                 verbose: bool = False, echo: Callable[[str], None] = _stderr) -> RunResult:
    """Run the whole pipeline: inputs → per-document stages → dedup → PII/quality → rephrase →
    tokenize → report.

    Args:
        inputs: input specs (directories, globs, files, ``@list.txt``, fsspec URLs) or an
            :class:`Inputs` from :func:`prepare_inputs`.
        out: output directory: a local path, an fsspec URL (``s3://bucket/out``) or a Storage.
        cfg: pipeline config from :func:`webmill.config.load_config`.
        ray_address: Ray cluster address; ``None``: ``$RAY_ADDRESS`` or an embedded local Ray.
            With ``[ray] executor = "local"`` the per-file steps run on a local process pool
            and Ray is started (or joined at this address) only for dedup.
        force: reprocess inputs that already have a completion marker.
        tokenize: write token shards (``OUT/shards``).
        report: write ``OUT/report`` at the end.
        on_progress: called with each input's stats dict as it finishes.
        verbose: show Ray's own logs on the terminal instead of ``OUT/logs/``.
        echo: where status lines go (default: stderr).

    Returns:
        A :class:`RunResult`; ``failed`` is non-empty when some inputs are missing.

    Raises:
        UserError: no usable input, an unwritable ``OUT``, a bad config value (e.g. a language
            code lid.176 does not know), or an unreachable Ray cluster, all before any work.
    """
    configure_storage(cfg.get("storage"))
    st = as_storage(out)
    if not isinstance(inputs, Inputs):
        inputs = prepare_inputs(inputs)
    validate_languages(cfg)
    st.check_writable()
    log_dir = init_workers(cfg, ray_address, log_dir=run_log_dir(st), verbose=verbose)
    if log_dir is not None and not st.is_local:
        echo(f"logs of this run: {log_dir} (OUT is not on local disk)")
    try:
        res = run_documents(inputs.files, st, cfg, force=force, on_progress=on_progress,
                            rejected=inputs.rejected, echo=echo)
        if res["skipped"]:
            echo(f"skipped {len(res['skipped'])} inputs with completion markers (use --force to redo)")
        for f in res["failed"]:
            if f not in inputs.rejected:
                echo(f"failed: {f['input']}: {f['reason']}")
        if res["failed"]:
            echo(f"{len(res['failed'])} inputs failed; they are listed in {st.uri('failed.jsonl')} "
                 "(rerun the same command to retry them)")
        if st.list("documents", suffix=".parquet"):
            src = run_global_steps(st, cfg, tokenize=tokenize)
        else:  # every input failed: nothing for dedup, PII/quality, rephrase or tokenize to read
            echo("no document files (every input failed): the global steps are skipped")
            src = "documents"
    finally:
        collect_worker_logs()
    page = None
    if report:
        from webmill.curate.report import write_report

        try:
            page = str(write_report(st))
            echo(f"report: {page}")
        except UserError as e:  # the data is complete; a report problem must not fail the run
            echo(f"warning: report not written: {e}")
    return RunResult(out=st.uri(), done=res["done"], skipped=res["skipped"], failed=res["failed"],
                     final_subdir=src, report=page, log_dir=str(log_dir) if log_dir else None)
