"""What an ablation runs: the recipes (``-r NAME=CONFIG.toml``), which of them share the
per-document step, and the token budget as optimizer steps and checkpoints.

Sharing: two recipes whose config tables :data:`webmill.curate.stages.DOCUMENT_STEP_TABLES`
are equal write byte-identical per-document outputs (``documents/``, ``stats/``, ``removed/``,
``examples/``, markers), so that step runs once, for the first of them in command-line order;
the others get a copy and run only their own global steps (dedup, PII/quality, ...). Whether
two recipes share is decided from their configs alone, before any work.

Budget (FineWeb's ablations: the same model, seed and token count for every recipe):
``tokens_per_step = micro_batch × block_size``; ``max_steps = ceil(tokens / tokens_per_step)``
rounded up to a multiple of ``eval_points``, so the checkpoints (every ``max_steps /
eval_points`` steps) are evenly spaced and the last one is the end of the schedule.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import re
from dataclasses import dataclass

from webmill.config import config_hash, load_config
from webmill.curate.stages import CLASS_SECTIONS, DOCUMENT_STEP_TABLES, class_for
from webmill.errors import UserError

NAME_RE = re.compile(r"[a-z0-9_-]+")


@dataclass
class Recipe:
    """One recipe of an ablation.

    Attributes:
        name: ``[a-z0-9_-]+``, unique; its directories are ``recipes/<name>/`` and ``runs/<name>/``.
        config_path: the TOML path as given.
        cfg: the loaded config (:func:`webmill.config.load_config`).
        config_hash: :func:`webmill.config.config_hash` of ``cfg`` (sha256 hex).
        document_key: sha256 hex of the tables the per-document step reads (:func:`document_key`).
    """

    name: str
    config_path: str
    cfg: dict
    config_hash: str
    document_key: str


def _canonical(v):
    """``v`` with tuples as lists, sets as sorted lists and numbers as floats (so ``3`` from a
    class default equals ``3.0`` from a TOML file)."""
    if isinstance(v, dict):
        return {str(k): _canonical(x) for k, x in v.items()}
    if isinstance(v, (set, frozenset)):
        return sorted(_canonical(x) for x in v)
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return v


def effective_tables(cfg: dict, names: tuple[str, ...] = DOCUMENT_STEP_TABLES) -> dict:
    """``cfg``'s tables ``names`` with every class-backed table
    (:data:`webmill.curate.stages.CLASS_SECTIONS`) completed with its class's constructor
    defaults, canonicalised: a config listing every default (``examples/fineweb.toml``) and an
    empty one give the same tables. ``[decontaminate]`` only when enabled (as
    :func:`webmill.config.config_hash` treats it)."""
    tables = {k: copy.deepcopy(cfg.get(k)) for k in names
              if k != "decontaminate" or (cfg.get(k) or {}).get("enabled")}
    for path in CLASS_SECTIONS:
        if path[0] not in tables:
            continue
        t = tables
        for p in path:
            t = t.setdefault(p, {})
        for pname, par in inspect.signature(class_for(path).__init__).parameters.items():
            if pname != "self" and par.default is not inspect.Parameter.empty:
                t.setdefault(pname, par.default)
    return _canonical(tables)


def document_key(cfg: dict) -> str:
    """sha256 hex of the canonical JSON of :func:`effective_tables` (the tables the
    per-document step reads, :data:`DOCUMENT_STEP_TABLES`)."""
    return hashlib.sha256(json.dumps(effective_tables(cfg), sort_keys=True, default=str).encode()).hexdigest()


def parse_recipes(specs: list[str]) -> list[Recipe]:
    """Recipes from ``-r NAME=CONFIG.toml`` values, in the order given.

    Raises:
        UserError: fewer than two, a value without ``=``, a name not ``[a-z0-9_-]+``, a repeated
            name (each message names ``-r``), or a config that does not load.
    """
    out: list[Recipe] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise UserError(f"-r {spec!r}: give NAME=CONFIG.toml, e.g. -r fineweb=examples/fineweb.toml")
        if not NAME_RE.fullmatch(name):
            raise UserError(f"-r {spec!r}: recipe name {name!r} must use only a-z, 0-9, _ and - "
                            "(it names the recipe's directories)")
        if any(r.name == name for r in out):
            raise UserError(f"-r {spec!r}: recipe name {name!r} is given twice; give each recipe its own name")
        cfg = load_config(path)
        out.append(Recipe(name, path, cfg, config_hash(cfg), document_key(cfg)))
    if len(out) < 2:
        raise UserError(f"an ablation compares two or more recipes; got {len(out)}: "
                        "pass -r NAME=CONFIG.toml at least twice")
    return out


def shared_document_step(recipes: list[Recipe]) -> dict[str, str]:
    """``{recipe name: name of the recipe whose per-document step it uses}``: the first recipe
    (in the order given) with the same :attr:`Recipe.document_key`; itself when it is the first."""
    owner: dict[str, str] = {}
    out = {}
    for r in recipes:
        out[r.name] = owner.setdefault(r.document_key, r.name)
    return out


@dataclass(frozen=True)
class Budget:
    """The training schedule shared by every recipe.

    Attributes:
        tokens: the requested token budget (int > 0).
        tokens_per_step: ``micro_batch × block_size``.
        max_steps: optimizer steps (a multiple of ``eval_points``).
        ckpt_every: steps between checkpoints (``max_steps / eval_points``).
        eval_points: checkpoints evaluated per run.
    """

    tokens: int
    tokens_per_step: int
    max_steps: int
    ckpt_every: int
    eval_points: int

    @property
    def train_tokens(self) -> int:
        """Tokens every run trains on: ``max_steps × tokens_per_step`` (≥ ``tokens``)."""
        return self.max_steps * self.tokens_per_step

    @property
    def eval_steps(self) -> list[int]:
        """The steps of the evaluated checkpoints."""
        return [self.ckpt_every * i for i in range(1, self.eval_points + 1)]


def make_budget(tokens: int, micro_batch: int, block_size: int, eval_points: int) -> Budget:
    """:class:`Budget` for ``tokens`` at ``micro_batch × block_size`` tokens per step (module docstring).

    Raises:
        UserError: a value < 1 (names the flag).
    """
    for flag, v in (("--tokens", tokens), ("--micro-batch", micro_batch), ("--block-size", block_size),
                    ("--eval-points", eval_points)):
        if v < 1:
            raise UserError(f"{flag} must be ≥ 1, got {v}")
    per_step = micro_batch * block_size
    steps = math.ceil(tokens / per_step)
    steps = math.ceil(steps / eval_points) * eval_points
    return Budget(tokens, per_step, steps, steps // eval_points, eval_points)
