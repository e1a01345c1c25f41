"""``curate ablate``: the steps of a data ablation, resumable (:func:`run_ablation`).

Layout of ``ABLATION`` (a local directory or an fsspec URL; every read and write goes through
:class:`webmill.storage.Storage`)::

    ablation.json                   settings + recipes (config paths, hashes) of this ablation
    recipes/<name>/                 a normal curate OUT (documents/, stats/, final/, report/ ...)
        ablate-curated.json         written after its global steps: final subdir, sharing, seconds
        train_docs/                 final documents minus the held-out ones
        shards/                     token shards of train_docs (the recipe's [tokenize])
    eval/heldout.parquet            the common eval set (heldout.py); eval/eval.json its counts
    runs/<name>/                    a train run: checkpoints/, metrics.jsonl, eval.jsonl
        ablate-train.json           written after training: steps, params, tokens, seconds
    results.json, report.html       report.py

Steps: curate each recipe (the per-document step once per group of recipes that share it,
plan.py; Ray is started once) → hold out and build the eval set → tokenize → train (same model,
seed and budget) → evaluate every checkpoint on the eval set (+ tasks) → results + report.

Resuming: each step leaves a record and is skipped when it is there (curation: the per-input
markers of curate run and ``ablate-curated.json``; hold-out: ``eval/eval.json``; tokenize:
``shards/manifest.json``; training: a checkpoint at the last step, else it resumes from its
newest; evaluation: records in ``runs/<name>/eval.jsonl`` tagged with the eval set's key). A
rerun of the same command therefore does no new work and writes the same ``results.json``.
Settings or recipes other than those in ``ablation.json`` are refused (``--force`` starts over).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Callable

from webmill.ablate.heldout import DEFAULT_MAX_BYTES, EVAL_FILE, TRAIN_DOCS, split_recipe, write_eval_set
from webmill.ablate.plan import Budget, Recipe, make_budget, shared_document_step
from webmill.errors import UserError
from webmill.storage import Storage, as_storage

STATE = "ablation.json"
CURATED = "ablate-curated.json"
TRAINED = "ablate-train.json"
EVAL_STATE = "eval/eval.json"
EVAL_TAG = "ablation_eval"  # key added to each eval.jsonl record: the eval set + tasks it used


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ---- state -------------------------------------------------------------------------------------


def check_state(st: Storage, settings: dict, recipes: list[Recipe], force: bool) -> None:
    """Refuse to resume an ablation made with other settings or recipes; write ``ablation.json``.

    With ``force`` the earlier outputs (recipes/, runs/, eval/, results, report) are deleted.

    Raises:
        UserError: ``ablation.json`` differs (names the changed settings or recipe and says to
            pass ``--force`` or choose another ``-o``).
    """
    state = {"settings": settings,
             "recipes": {r.name: {"config": r.config_path, "config_hash": r.config_hash} for r in recipes}}
    if force:
        for d in ("recipes", "runs", "eval"):
            st.remove_tree(d)
        for f in (STATE, "results.json", "report.html"):
            st.remove(f)
    elif st.isfile(STATE):
        old = st.read_json(STATE)
        where = st.uri(STATE)
        if list(old.get("recipes", {})) != list(state["recipes"]):
            raise UserError(f"{where}: this ablation has recipes {', '.join(old.get('recipes', {}))}, not "
                            f"{', '.join(state['recipes'])}; rerun with --force to start over, or use another -o")
        for name, rec in state["recipes"].items():
            if old["recipes"][name]["config_hash"] != rec["config_hash"]:
                raise UserError(f"recipe {name!r} ({rec['config']}) was curated in {st.uri('recipes/' + name)} with "
                                "another config; rerun with --force to redo the ablation, give the changed recipe "
                                "another name, or use another -o")
        changed = sorted(k for k in set(old.get("settings", {})) | set(settings)
                         if old.get("settings", {}).get(k) != settings.get(k))
        if changed:
            raise UserError(f"{where}: this ablation was run with other settings ({', '.join(changed)}); rerun "
                            "with --force to redo it with the new ones, or use another -o")
    st.write_json(STATE, state)


# ---- curation ----------------------------------------------------------------------------------


def copy_document_step(src: Storage, dst: Storage, cfg: dict, owner: str) -> int:
    """Copy the per-document outputs of ``src`` (``documents/``, ``stats/``, ``markers/``,
    ``removed/``, ``examples/``, ``decontam/``) to ``dst``, replacing what is there; each
    marker gets ``cfg``'s config hash (the outputs are what ``cfg`` gives) and
    ``"shared_from": owner``. Returns the number of files copied."""
    from webmill.config import config_hash
    from webmill.curate.outputs import PER_FILE_DIRS

    n = 0
    cfg_hash = config_hash(cfg)
    for sub in (*PER_FILE_DIRS, "decontam"):
        dst.remove_tree(sub)
        for name in src.list(sub, recursive=True):
            rel = f"{sub}/{name}"
            if sub == "markers":
                dst.write_json(rel, {**src.read_json(rel), "config_hash": cfg_hash, "shared_from": owner})
            else:
                dst.write_bytes(rel, src.read_bytes(rel))
            n += 1
    return n


def curate_recipes(inputs: list[str], st: Storage, recipes: list[Recipe], shared: dict[str, str], *,
                   ray_address: str | None, echo: Callable[[str], None]) -> dict[str, dict]:
    """Curate every recipe not yet curated into ``ABLATION/recipes/<name>`` (module docstring).

    Returns ``{name: ablate-curated.json record}``.

    Raises:
        UserError: as :func:`webmill.curate.pipeline.run_pipeline` (inputs, languages, Ray), or
            every input failed for a recipe.
    """
    from webmill.curate.pipeline import prepare_inputs, run_documents, run_global_steps, validate_languages
    from webmill.curate.workers import collect_worker_logs, init_ray, run_log_dir
    from webmill.storage import configure_storage

    done = {r.name: st.read_json(f"recipes/{r.name}/{CURATED}") for r in recipes
            if st.isfile(f"recipes/{r.name}/{CURATED}")}
    pending = [r for r in recipes if r.name not in done]
    if not pending:
        return done
    configure_storage(recipes[0].cfg.get("storage"))
    inp = prepare_inputs(inputs)
    for r in pending:
        validate_languages(r.cfg)
    log_dir = init_ray(ray_address, log_dir=run_log_dir(st))
    try:
        for r in pending:
            t0 = time.perf_counter()
            rst = st.sub(f"recipes/{r.name}")
            rst.makedirs()
            owner = shared[r.name]
            if owner == r.name:
                echo(f"[{r.name}] per-document step over {len(inp.files)} inputs")
                res = run_documents(inp.files, rst, r.cfg, rejected=inp.rejected, echo=echo)
                failed = res["failed"]
            else:
                ost = st.sub(f"recipes/{owner}")
                n = copy_document_step(ost, rst, r.cfg, owner)
                echo(f"[{r.name}] per-document step shared with {owner} ({n} files copied)")
                failed = []
                rst.remove("failed.jsonl")
                if ost.isfile("failed.jsonl"):  # the owner's failed inputs are this recipe's too
                    rst.write_bytes("failed.jsonl", ost.read_bytes("failed.jsonl"))
                    failed = [json.loads(x) for x in ost.read_text("failed.jsonl").splitlines() if x.strip()]
            for f in failed:
                echo(f"[{r.name}] failed: {f['input']}: {f['reason']}")
            if not rst.list("documents", suffix=".parquet"):
                raise UserError(f"recipe {r.name!r}: no input gave documents (see {rst.uri('failed.jsonl')})")
            src = run_global_steps(rst, r.cfg, tokenize=False)
            from webmill.curate.report import write_report

            try:
                write_report(rst)
            except UserError as e:  # the data is complete; a report problem must not stop the ablation
                echo(f"[{r.name}] warning: report not written: {e}")
            rec = {"final_subdir": src, "shared_from": owner, "config_hash": r.config_hash,
                   "seconds": round(time.perf_counter() - t0, 1), "failed_inputs": len(failed)}
            if not failed:  # a rerun retries failed inputs
                rst.write_json(CURATED, rec)
            done[r.name] = rec
    finally:
        collect_worker_logs()
    if log_dir is not None and not st.is_local:
        echo(f"Ray logs of this ablation: {log_dir}")
    return done


# ---- hold-out, tokenize, train, evaluate --------------------------------------------------------


def build_eval_set(st: Storage, recipes: list[Recipe], curated: dict[str, dict], fraction: float | None,
                   eval_text: list[str], max_bytes: int | None = None) -> dict:
    """Split every recipe into train_docs/ + held-out rows and write the eval set (heldout.py),
    unless ``eval/eval.json`` exists. Returns the eval.json record: ``{"source": "heldout" |
    "text", "data": [URIs], "documents", "bytes", "key", "recipes": {name: split counts}}``."""
    if st.isfile(EVAL_STATE):
        return st.read_json(EVAL_STATE)
    held, counts = {}, {}
    for r in recipes:
        held[r.name], counts[r.name] = split_recipe(st.sub(f"recipes/{r.name}"), curated[r.name]["final_subdir"],
                                                    None if eval_text else fraction)
    if eval_text:
        from webmill.train.eval_data import read_documents, text_files

        docs = [d for fst, name in text_files(eval_text) for d in read_documents(fst, name)]
        data = [os.fspath(p) for p in eval_text]
        rec = {"source": "text", "data": data, "documents": len(docs),
               "bytes": sum(len(d.encode()) for d in docs), "key": _sha(docs)}
    else:
        info = write_eval_set(st, held, max_bytes)
        rec = {"source": "heldout", "data": [st.uri(EVAL_FILE)], "documents": info["documents"],
               "bytes": info["bytes"], "documents_available": info["documents_available"],
               "key": hashlib.sha256(st.read_bytes(EVAL_FILE)).hexdigest()}
    rec["recipes"] = counts
    st.write_json(EVAL_STATE, rec)
    return rec


def tokenize_recipe(st: Storage, r: Recipe) -> dict:
    """Token shards of ``recipes/<name>/train_docs`` with the recipe's ``[tokenize]`` table, as
    ``curate run`` makes them (:func:`webmill.curate.pipeline.tokenize_step`: ``bpe:N`` trains the
    tokenizer on the training documents first); skipped when ``shards/manifest.json`` exists.
    Returns the manifest.

    Raises:
        UserError: as ``tokenize_step``, the message prefixed with the recipe's config file.
    """
    from webmill.curate.pipeline import tokenize_step

    rst = st.sub(f"recipes/{r.name}")
    if rst.isfile("shards/manifest.json"):
        return rst.read_json("shards/manifest.json")
    try:
        m = tokenize_step(rst, TRAIN_DOCS, r.cfg)
    except UserError as e:
        raise UserError(f"{r.config_path}: {e}") from e
    m.pop("_timing_s", None)
    return m


def train_recipe(st: Storage, r: Recipe, budget: Budget, model: dict, *, seed: int, lr: float | None,
                 warmup_steps: int | None, device: str, echo: Callable[[str], None]) -> dict:
    """Train ``runs/<name>`` on the recipe's shards for ``budget.max_steps`` steps, a checkpoint
    every ``budget.ckpt_every`` (all kept); resumes from its newest checkpoint; skipped when
    ``ablate-train.json`` exists. Returns that record: ``{"steps", "params", "tokens_per_step",
    "seconds"}``."""
    from webmill.train.checkpoint import latest_checkpoint
    from webmill.train.config import TrainConfig
    from webmill.train.loop import train

    run = st.sub(f"runs/{r.name}")
    if run.isfile(TRAINED):
        return run.read_json(TRAINED)
    t0 = time.perf_counter()
    warmup = warmup_steps if warmup_steps is not None else max(1, budget.max_steps // 10)
    cfg = TrainConfig(shards=st.uri(f"recipes/{r.name}/shards"), out=run.uri(), preset=model["preset"],
                      n_layer=model.get("n_layer"), n_head=model.get("n_head"), n_embd=model.get("n_embd"),
                      block_size=model.get("block_size"), micro_batch=model["micro_batch"],
                      max_steps=budget.max_steps, warmup_steps=min(warmup, budget.max_steps),
                      seed=seed, ckpt_every=budget.ckpt_every, keep_checkpoints=budget.eval_points,
                      eval_every=budget.ckpt_every, sample_every=0, tensorboard=False, quiet=True,
                      device=device, resume=latest_checkpoint(run) is not None,
                      **({"lr": lr} if lr is not None else {}))
    echo(f"[{r.name}] training {budget.max_steps} steps × {budget.tokens_per_step:,} tokens")
    res = train(cfg)
    rec = {"steps": budget.max_steps, "params": res["params"], "tokens_per_step": res["tokens_per_step"],
           "seconds": round(time.perf_counter() - t0, 1)}
    run.write_json(TRAINED, rec)
    return rec


def evaluate_recipe(st: Storage, r: Recipe, eval_rec: dict, tasks: list[str], device: str,
                    echo: Callable[[str], None]) -> list[dict]:
    """Evaluate every checkpoint of ``runs/<name>`` on the eval set (raw text: bits per byte
    compare across tokenizers; all of it: ``max_tokens=None``) and ``tasks``; records already in
    ``eval.jsonl`` with the same eval key are reused. Returns the records in step order."""
    from webmill.train.checkpoint import list_checkpoints
    from webmill.train.evaluate import EVAL_LOG, append_records, evaluate_checkpoint

    run = st.sub(f"runs/{r.name}")
    tag = _sha([eval_rec["key"], [os.fspath(t) for t in tasks]])
    have = {}
    if run.isfile(EVAL_LOG):
        for line in run.read_text(EVAL_LOG).splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get(EVAL_TAG) == tag:
                    have[rec["step"]] = rec
    out = []
    for c in list_checkpoints(run):
        step = int(c.rsplit("step-", 1)[1].split(".")[0])
        if step not in have:
            rec = evaluate_checkpoint(c, list(eval_rec["data"]), kind="text", max_tokens=None, device=device,
                                      tasks=list(tasks))
            rec[EVAL_TAG] = tag
            append_records(run, [rec])
            echo(f"[{r.name}] step {step}: loss {rec['loss']:.4f}, bpb {rec['bpb']:.4f}")
            have[step] = rec
        out.append(have[step])
    return out


def run_ablation(inputs: list[str], out: str | os.PathLike | Storage, recipes: list[Recipe], *,
                 tokens: int, preset: str = "tiny", n_layer: int | None = None, n_head: int | None = None,
                 n_embd: int | None = None, block_size: int | None = None, micro_batch: int = 8,
                 lr: float | None = None, warmup_steps: int | None = None, seed: int = 1337,
                 eval_points: int = 4, heldout_fraction: float = 0.1,
                 eval_bytes: int | None = DEFAULT_MAX_BYTES, eval_text: list[str] | None = None,
                 tasks: list[str] | None = None, device: str = "auto", ray_address: str | None = None,
                 force: bool = False, echo: Callable[[str], None] = _stderr) -> dict:
    """Run (or resume) a data ablation; returns the results dict also written to ``results.json``.

    Args:
        inputs: WARC input specs, as ``curate run`` takes them.
        out: the ablation directory ``ABLATION`` (local path, fsspec URL or Storage).
        recipes: from :func:`webmill.ablate.plan.parse_recipes` (two or more).
        tokens: training tokens per recipe (the budget; rounded up to whole steps, plan.py).
        preset, n_layer, n_head, n_embd, block_size, micro_batch, lr, warmup_steps, seed: the
            model and schedule, the same for every recipe (``train pretrain``'s meanings;
            ``warmup_steps`` None: a tenth of the steps, at least 1; ``lr`` None: TrainConfig's).
        eval_points: evenly spaced checkpoints evaluated per run (the last is the end).
        heldout_fraction: share of documents held out by a hash of their id (heldout.py).
        eval_bytes: cap of the held-out eval set in UTF-8 bytes (documents in id order; None: all).
        eval_text: text files (.txt/.jsonl/.parquet) to evaluate on instead; nothing is held out.
        tasks: multiple-choice task files (:mod:`webmill.train.tasks`).
        device: ``auto`` (cuda when present), ``cpu`` or ``cuda``.
        ray_address: Ray cluster for curation (None: ``$RAY_ADDRESS`` or an embedded Ray).
        force: delete earlier outputs of this ablation and redo everything.
        echo: where status lines go.

    Raises:
        UserError: bad settings, an ablation.json with other settings/recipes (without
            ``force``), an empty eval set, and the errors of curation, tokenization and training.
    """
    from webmill.ablate.report import build_results, write_report
    from webmill.train.model import PRESETS

    st = as_storage(out)
    if preset not in PRESETS:
        raise UserError(f"--preset {preset!r}: choose one of {', '.join(sorted(PRESETS))}")
    eval_text = [os.fspath(p) for p in (eval_text or [])]
    tasks = [os.fspath(p) for p in (tasks or [])]
    for t in tasks:
        if not os.path.isfile(t):
            raise UserError(f"--tasks {t}: file not found")
    if not eval_text:
        from webmill.ablate.heldout import heldout_mask

        heldout_mask([], heldout_fraction)  # checks the range
        if eval_bytes is not None and eval_bytes < 1:
            raise UserError(f"--eval-bytes must be ≥ 1, got {eval_bytes}")
    bs = block_size or PRESETS[preset]["block_size"]
    budget = make_budget(tokens, micro_batch, bs, eval_points)
    model = {"preset": preset, "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd, "block_size": bs,
             "micro_batch": micro_batch}
    from webmill.train.loop import resolve_device

    dev = resolve_device(device)
    settings = {"inputs": list(inputs), "tokens": tokens, "model": model, "lr": lr, "warmup_steps": warmup_steps,
                "seed": seed, "eval_points": eval_points,
                "heldout_fraction": None if eval_text else heldout_fraction,
                "eval_bytes": None if eval_text else eval_bytes, "eval_text": eval_text}
    st.check_writable()
    check_state(st, settings, recipes, force)
    shared = shared_document_step(recipes)
    curated = curate_recipes(inputs, st, recipes, shared, ray_address=ray_address, echo=echo)
    eval_rec = build_eval_set(st, recipes, curated, heldout_fraction, eval_text, eval_bytes)
    echo(f"eval set: {eval_rec['documents']} documents, {eval_rec['bytes']:,} bytes ({eval_rec['source']})")
    manifests, trained, evals = {}, {}, {}
    for r in recipes:
        manifests[r.name] = tokenize_recipe(st, r)
        train_tokens = manifests[r.name]["splits"]["train"]["num_tokens"]
        if train_tokens < budget.train_tokens:
            echo(f"warning: recipe {r.name!r} has {train_tokens:,} training tokens for a budget of "
                 f"{budget.train_tokens:,}: its data is repeated {budget.train_tokens / train_tokens:.2f} times")
        trained[r.name] = train_recipe(st, r, budget, model, seed=seed, lr=lr, warmup_steps=warmup_steps,
                                       device=dev, echo=echo)
        evals[r.name] = evaluate_recipe(st, r, eval_rec, tasks, dev, echo)
    results = build_results(st, recipes, shared, curated, eval_rec, manifests, trained, evals, budget, settings)
    st.write_text("results.json", json.dumps(results, indent=1, sort_keys=True) + "\n")
    write_report(st, results)
    return results
