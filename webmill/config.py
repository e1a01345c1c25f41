"""Pipeline configuration: FineWeb defaults, overridable from a TOML file and the command line.

The configuration is a nested dict. Sections and keys (defaults below) are validated: an unknown
section or key, or a value of the wrong type, raises :class:`webmill.errors.UserError` naming
the key. Sections that feed a filter class (``[filters.*]``, ``[pii]``) or ``[dedup]`` are
checked against that class's constructor, so every threshold of a rule is a config key.
``examples/fineweb.toml`` lists FineWeb's chain with every key.

Which tables are class-backed, and by which class, comes from the stage registry
(:data:`webmill.curate.stages.CLASS_SECTIONS`), and so do the ``[filters.*]`` tables of
:data:`DEFAULTS` (one per rule stage, in chain order). The canonical JSON of the defaults is
hashed into every marker and shard manifest (:func:`config_hash`): adding a rule changes it,
as it should.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import tomllib
from pathlib import Path
from typing import Any

from webmill.curate.stages import CLASS_SECTIONS, RULE_STAGES, class_for  # noqa: F401 - re-exported
from webmill.errors import UserError

DEFAULTS: dict[str, Any] = {
    "url_filter": {"enabled": True},  # + URLFilter kwargs
    "extract": {
        "extractor": "trafilatura",  # or "resiliparse"
        "timeout_s": 1.0,  # datatrove's default per-document extraction timeout
        "max_docs_per_child": 5000,  # recycle the extraction subprocess (bounds memory)
        "http_status": [200],  # HTTP statuses of responses that are extracted; [] → any
        "fast": False,  # trafilatura fast mode (no fallback extractors): faster, fewer docs
    },
    "language": {"enabled": True},  # + LanguageFilter kwargs (languages=["en"], threshold=0.65)
    "filters": {s.name: {"enabled": True} for s in RULE_STAGES},  # + each rule class's kwargs
    "dedup": {"enabled": True},  # + DedupConfig fields
    "pii": {"enabled": True},  # + PIIFilter kwargs
    # on by default in annotate-only mode: every document gets quality_score and quality_bucket,
    # nothing is dropped (the FineWeb kept set is unchanged); drops are opt-in (mode threshold /
    # top_fraction)
    "quality": {
        "enabled": True,
        "model_path": "",  # empty → the bundled default model
        "mode": "buckets",  # "threshold" | "top_fraction" | "buckets" (annotate only)
        "threshold": 0.018112,  # DCLM's fastText threshold (Li et al. 2024); model-specific
        "top_fraction": 0.1,
        "n_buckets": 20,  # Nemotron-CC (Su et al. 2024, section 2.2)
    },
    "rephrase": {"enabled": False},  # + RephraseConfig fields (docs/rephrase.md)
    # benchmark decontamination (docs/decontamination.md): drop or flag documents sharing an
    # n-gram with an eval set; off by default (then left out of config_hash: outputs unchanged)
    "decontaminate": {
        "enabled": False,
        "sets": [],  # paths/globs/URLs, or tables {path = "...", field = "question", name = "mmlu"}
        "ngram": 13,  # words per n-gram: GPT-3's choice (Brown et al. 2020, appendix C)
        "min_words": 8,  # shorter items are skipped; GPT-3's minimum N (appendix C)
        "action": "remove",  # "remove" (drop reason decontam_<set>) | "flag" (column decontam_sets)
    },
    "tokenize": {
        "tokenizer": "cl100k_base",
        "shard_tokens": 100_000_000,
        "val_fraction": 0.0005,
        "seed": 0,
    },
    "ray": {
        "executor": "ray",  # "ray" | "local": per-file steps on a local process pool (no Ray for them)
        "num_workers": 0,  # 0 → cluster CPUs / num_cpus (re-checked as nodes join)
        "memory_mb": 2048,  # memory reserved per per-file worker
        "max_files_per_worker": 64,  # recycle worker actors (bounds memory growth)
        "max_retries": 2,  # re-runs of a file whose worker died (or whose node was lost)
        "num_cpus": 1.0,  # CPUs reserved per per-file worker (fractions pack several per CPU)
        "start_jitter_s": 0.0,  # first workers wait a random 0..N s before their first request
    },
    "output": {
        "write_removed": False,  # OUT/removed/<stage>/: every dropped document, full schema + decision
        "examples_per_reason": 5,  # OUT/examples/: a deterministic sample per drop reason (0 = off)
    },
    # `curate annotate` (LLM quality annotations, docs/quality.md); not part of `curate run`
    "annotate": {"enabled": False},  # + AnnotateConfig fields
    # where outputs live does not change them: left out of config_hash. Sub-tables per protocol
    # ([storage.s3] endpoint_url = ..., anon = ..., key/secret, client_kwargs) are passed to that
    # fsspec filesystem (webmill.storage.configure_storage; docs/cluster.md)
    "storage": {
        "max_attempts": 6,  # tries per object-store request on throttling/5xx/reset (1 = no retry)
        "backoff_s": 0.5,  # first retry waits up to this; doubles per retry, full jitter
    },
}

def _type_ok(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple, str))
    return isinstance(value, type(default))


def _check_class_section(path: tuple[str, ...], table: dict) -> None:
    where = ".".join(path)
    if not isinstance(table.get("enabled", True), bool):
        raise UserError(f"config [{where}] enabled must be true or false, got {table['enabled']!r}")
    if set(table) <= {"enabled"}:
        return
    cls = class_for(path)
    params = inspect.signature(cls).parameters
    factories = {f.name: f.default_factory for f in dataclasses.fields(cls)
                 if f.default_factory is not dataclasses.MISSING} if dataclasses.is_dataclass(cls) else {}
    for key, value in table.items():
        if key == "enabled":
            continue
        if key not in params:
            known = ", ".join(k for k, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
            raise UserError(f"unknown config key [{where}] {key!r}; known keys: enabled, {known}")
        default = factories[key]() if key in factories else params[key].default
        if value is False and isinstance(default, (int, float)) and not isinstance(default, bool):
            continue  # `false` turns a threshold off in the rule classes
        if default is not inspect.Parameter.empty and not _type_ok(value, default):
            raise UserError(f"config [{where}] {key} must be {type(default).__name__}, got {value!r}")


def _merge(base: dict, over: dict, path: tuple[str, ...]) -> None:
    for key, value in over.items():
        here = path + (key,)
        where = ".".join(here)
        if path == ("storage",) and key not in DEFAULTS["storage"]:  # [storage.<protocol>]
            if not isinstance(value, dict):
                raise UserError(f"config [storage] {key} is unknown; known keys: "
                                f"{', '.join(DEFAULTS['storage'])}, or a table of fsspec options per "
                                "protocol, e.g. [storage.s3] endpoint_url = \"http://127.0.0.1:9000\"")
            base.setdefault(key, {}).update(value)
        elif path + (key,) in CLASS_SECTIONS:
            if not isinstance(value, dict):
                raise UserError(f"config [{where}] must be a table")
            _check_class_section(here, value)
            base.setdefault(key, {}).update(value)
        elif key not in base:
            raise UserError(f"unknown config key {where!r}; known here: {', '.join(base)}")
        elif isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"config [{where}] must be a table")
            _merge(base[key], value, here)
        else:
            if not _type_ok(value, base[key]):
                raise UserError(f"config {where} must be {type(base[key]).__name__}, got {value!r}")
            base[key] = value


def read_toml(path: str | Path) -> dict:
    """The tables of the TOML file at ``path``, unvalidated (the one place TOML is read).

    Raises:
        UserError: the file is missing, or is not valid UTF-8 TOML (names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"cannot parse config {p}: {e}") from e


def table_with_overrides(path: str | Path | None, name: str, overrides: dict[str, Any]) -> dict:
    """The ``[name]`` table of the TOML file at ``path`` (``{}`` without a file), with the
    ``overrides`` that are not ``None`` (command-line options) put over it; unvalidated.

    Raises:
        UserError: the file is missing, or is not valid UTF-8 TOML (names the file).
    """
    table = dict(read_toml(path).get(name, {})) if path is not None else {}
    table.update({k: v for k, v in overrides.items() if v is not None})
    return table


def dataclass_from_table(cls, table: dict | None, section: str):
    """``cls(**table)`` for a settings dataclass built from config table ``[section]``, after
    checking every key against ``cls``'s fields and every value against the field's default type
    (``enabled`` is ignored: it is ``curate run``'s switch).

    Raises:
        UserError: unknown key (lists the known ones) or a value of the wrong type (names
            ``[section] key``); the class's own checks may raise more.
    """
    table = dict(table or {})
    table.pop("enabled", None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in table.items():
        if key not in fields:
            raise UserError(f"unknown config key [{section}] {key!r}; known keys: enabled, {', '.join(fields)}")
        default = fields[key].default
        if default is not dataclasses.MISSING and not _type_ok(value, default):
            raise UserError(f"config [{section}] {key} must be {type(default).__name__}, got {value!r}")
    return cls(**table)


def load_config(path: str | Path | None = None, overrides: dict | None = None, *,
                base: str | Path | None = None) -> dict:
    """Defaults, then the TOML file ``base`` (a named profile, :mod:`webmill.curate.profiles`),
    then the TOML file at ``path``, then ``overrides`` (same nesting); each layer is checked as
    it is applied.

    Raises:
        UserError: missing/unparseable file, unknown key, or wrong value type (names the key).
    """
    cfg = copy.deepcopy(DEFAULTS)
    if base:
        _merge(cfg, read_toml(base), ())
    if path:
        _merge(cfg, read_toml(path), ())
    if overrides:
        _merge(cfg, overrides, ())
    _check_decontaminate(cfg["decontaminate"])
    return cfg


def _check_decontaminate(table: dict) -> None:
    """``[decontaminate]`` values that types alone do not check (the eval files are read, and
    checked, when the run builds its index: :func:`webmill.curate.decontam.prepare_index`).

    Raises:
        UserError: ``action`` not remove/flag, ``ngram``/``min_words`` out of range (names the key).
    """
    from webmill.filters.decontam import ACTIONS, check_params

    if table["action"] not in ACTIONS:
        raise UserError(f"config [decontaminate] action must be one of {', '.join(ACTIONS)}, "
                        f"got {table['action']!r}")
    check_params(table["ngram"], table["min_words"])


def kwargs_of(table: dict) -> dict:
    """Constructor keyword arguments of a class-backed section (``enabled`` removed)."""
    return {k: v for k, v in table.items() if k != "enabled"}


# how a run is scheduled, where its outputs live, and a step `curate run` does not run
NOT_HASHED = ("ray", "storage", "annotate")


def config_hash(cfg: dict) -> str:
    """sha256 hex of the canonical JSON of ``cfg`` (recorded in markers and the shard manifest),
    without the tables in :data:`NOT_HASHED`: ``[ray]`` (workers, resources, retries) and
    ``[storage]`` (filesystem options, credentials) do not change the outputs (nor does
    ``[annotate]``, a separate command), so a rerun with
    more workers or on another cluster resumes the same run and writes the same bytes.
    ``[decontaminate]`` counts only when enabled, so a run without it keeps the hash it had
    before the stage existed (the eval files' content is not hashed: after editing them, rerun
    with ``--force``)."""
    cfg = {k: v for k, v in cfg.items() if k not in NOT_HASHED
           and (k != "decontaminate" or v.get("enabled"))}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()
