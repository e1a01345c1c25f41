"""Training checkpoints: everything needed to continue a run bit-identically.

A checkpoint ``RUN/checkpoints/step-00001000.pt`` is one ``torch.save`` dict:

* ``model`` — state dict of the bare model (not DDP/compiled wrappers), ``model_config``;
* ``optimizer`` — AdamW state dict; ``step`` — optimizer steps done (the LR schedule is a
  pure function of it);
* ``loader`` — per-rank data cursors (:meth:`ShardLoader.state_dict`), ``rng`` — per-rank RNG
  states (Python ``random``, NumPy legacy global, torch CPU, every CUDA device);
* ``train_config``, ``tokenizer`` (the shard manifest's), ``world_size``.

Writes are atomic (temp file in the same directory, then :func:`os.replace`), so a crash never
leaves a truncated ``step-*.pt``; only the newest ``keep`` checkpoints are kept. Loading uses
``torch.load(weights_only=True)``: only tensors and plain containers are stored.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from webmill.errors import UserError

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """``RUN/checkpoints``."""
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint files of a run, oldest step first (ignores temp files)."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """Path of the newest checkpoint of a run, or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run_dir: str | os.PathLike, step: int, state: dict, keep: int = 3) -> Path:
    """Write ``state`` to ``RUN/checkpoints/step-{step:08d}.pt`` atomically; keep the newest ``keep``.

    Args:
        run_dir: run directory (created if missing).
        step: optimizer steps done (int ≥ 0), used in the file name.
        state: dict of tensors / plain Python containers.
        keep: number of checkpoints to keep (int ≥ 1); older ones are deleted after the write.

    Returns:
        The written path.
    """
    d = checkpoint_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step-{step:08d}.pt"
    tmp = d / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(run_dir)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    for partial in d.glob(".step-*.pt.tmp-*"):  # left by a process killed mid-write
        if partial != tmp:
            partial.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: a ``step-*.pt`` file, or a run directory (its newest checkpoint is used).

    Raises:
        UserError: no checkpoint there, or the file is not a readable webmill checkpoint.
    """
    p = Path(path)
    if p.is_dir():
        latest = latest_checkpoint(p)
        if latest is None:
            raise UserError(f"{p}: no checkpoints (expected {checkpoint_dir(p)}/step-*.pt); train first or pass a file")
        p = latest
    if not p.is_file():
        raise UserError(f"{p}: checkpoint not found; pass a RUN/checkpoints/step-*.pt file or a run directory")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/foreign files
        raise UserError(f"{p}: not a readable webmill checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise UserError(f"{p}: not a webmill training checkpoint (no 'model'/'model_config')")
    state["path"] = str(p)
    return state


def get_rng_state() -> dict:
    """All RNG states of this process: python, numpy (legacy global), torch CPU, CUDA devices."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore states captured by :func:`get_rng_state`."""
    random.setstate(_to_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
