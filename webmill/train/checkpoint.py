"""Training checkpoints: everything needed to continue a run bit-identically.

A checkpoint ``RUN/checkpoints/step-00001000.pt`` is one ``torch.save`` dict:

* ``model`` — state dict of the bare model (not DDP/compiled wrappers), ``model_config``;
* ``optimizer`` — AdamW state dict; ``step`` — optimizer steps done (the LR schedule is a
  pure function of it);
* ``loader`` — per-rank data cursors (:meth:`ShardLoader.state_dict`), ``rng`` — per-rank RNG
  states (Python ``random``, NumPy legacy global, torch CPU, every CUDA device);
* ``train_config``, ``tokenizer`` (the shard manifest's), ``world_size``.

Writes go through :class:`webmill.storage.Storage` (atomic publish: local temp file + fsync +
rename, or one whole-object write on other filesystems), so a crash never leaves a truncated
``step-*.pt``; temp files a killed writer left are swept after each save (and by the trainer at
start); only the newest ``keep`` checkpoints are kept. Run directories and checkpoint files may
be local paths or fsspec URLs. Loading uses ``torch.load(weights_only=True)``: only tensors and
plain containers are stored.
"""

from __future__ import annotations

import io
import os
import random
import re

import numpy as np
import torch

from webmill.errors import UserError
from webmill.storage import Storage, as_storage, is_url

CHECKPOINTS = "checkpoints"  # RUN/checkpoints/
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_name(step: int) -> str:
    """``checkpoints/step-{step:08d}.pt``, relative to the run directory."""
    return f"{CHECKPOINTS}/step-{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike | Storage) -> list[str]:
    """Checkpoint files of a run (local paths or URLs), oldest step first (temp files ignored)."""
    st = as_storage(run_dir)
    found = sorted((int(m.group(1)), n) for n in st.list(CHECKPOINTS) if (m := _NAME.match(n)))
    return [st.uri(f"{CHECKPOINTS}/{n}") for _, n in found]


def latest_checkpoint(run_dir: str | os.PathLike | Storage) -> str | None:
    """Path (or URL) of the newest checkpoint of a run, or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run_dir: str | os.PathLike | Storage, step: int, state: dict, keep: int = 3) -> str:
    """Write ``state`` to ``RUN/checkpoints/step-{step:08d}.pt`` atomically; keep the newest ``keep``.

    Args:
        run_dir: run directory (created if missing), a path, URL or :class:`Storage`.
        step: optimizer steps done (int ≥ 0), used in the file name.
        state: dict of tensors / plain Python containers.
        keep: number of checkpoints to keep (int ≥ 1); older ones are deleted after the write,
            then temp files left by a killed writer are swept.

    Returns:
        The written checkpoint's path (a URL on non-local storage).
    """
    st = as_storage(run_dir)
    rel = checkpoint_name(step)
    with st.atomic_write(rel) as f:
        torch.save(state, f)
    for old in list_checkpoints(st)[: -max(keep, 1)]:
        st.remove(f"{CHECKPOINTS}/{old.rsplit('/', 1)[-1]}")
    st.sweep_temps(CHECKPOINTS)
    return st.uri(rel)


def _locate(path: str | os.PathLike) -> tuple[Storage, str]:
    """``(storage, relative name)`` of a checkpoint file, or of a run directory's newest one."""
    st = as_storage(path)
    if st.isdir():
        latest = latest_checkpoint(st)
        if latest is None:
            raise UserError(f"{st.uri()}: no checkpoints (expected {st.uri(CHECKPOINTS)}/step-*.pt); train first "
                            "or pass a file")
        return st, f"{CHECKPOINTS}/{latest.rsplit('/', 1)[-1]}"
    s = str(path).rstrip("/")
    parent, name = s.rsplit("/", 1) if is_url(s) else os.path.split(s)
    return as_storage(parent or "."), name


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: a ``step-*.pt`` file, or a run directory (its newest checkpoint is used); a local
            path or an fsspec URL.

    Returns:
        The saved dict, plus ``"path"``: the file read (str).

    Raises:
        UserError: no checkpoint there, or the file is not a readable webmill checkpoint.
    """
    st, rel = _locate(path)
    where = st.uri(rel)
    if not st.isfile(rel):
        raise UserError(f"{where}: checkpoint not found; pass a RUN/checkpoints/step-*.pt file or a run directory")
    try:
        local = st.local_path(rel)
        src = local if local is not None else io.BytesIO(st.read_bytes(rel))
        state = torch.load(src, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/foreign files
        raise UserError(f"{where}: not a readable webmill checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise UserError(f"{where}: not a webmill training checkpoint (no 'model'/'model_config')")
    state["path"] = where
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
