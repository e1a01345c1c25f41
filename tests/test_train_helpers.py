"""Shared helpers for the tests of webmill.train (imported by tests/test_train_*.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from webmill.tokenize.shards import ShardWriter

REPO = Path(__file__).resolve().parents[1]
EXAMPLES_WARC = REPO / "examples" / "warc"  # bundled with the repository: the tests never skip for data


def synthetic_tokenizer(vocab_size: int) -> dict:
    """Tokenizer identity for synthetic shards: EOT is the last id."""
    return {"name": "synthetic-test", "ranks_sha256": "0" * 64, "vocab_size": vocab_size,
            "eot_id": vocab_size - 1, "bos_id": None, "boundary": "eot"}


def make_shards(out: Path, docs: dict[str, list[np.ndarray]], vocab_size: int, *,
                row_group_rows: int = 4, shard_tokens: int = 10**9) -> dict:
    """Write ``{"train": [doc, ...], "val": [...]}`` (docs without EOT) with the real ShardWriter."""
    tok = synthetic_tokenizer(vocab_size)
    with ShardWriter(out, tok, shard_tokens=shard_tokens, row_group_rows=row_group_rows) as w:
        for split, ds in docs.items():
            ds = [np.append(np.asarray(d, dtype=np.int64), tok["eot_id"]) for d in ds]
            if not ds:
                continue
            flat = np.concatenate(ds)
            offsets = np.concatenate([[0], np.cumsum([len(d) for d in ds])])
            w.write_batch(split, [f"{split}-{i}" for i in range(len(ds))], flat, offsets, "web")
    return w.manifest


def counting_docs(n_docs: int, doc_len: int, start: int = 0) -> list[np.ndarray]:
    """Docs whose tokens are consecutive unique ids (start, start+1, ...): coverage is checkable."""
    return [np.arange(start + i * doc_len, start + (i + 1) * doc_len) for i in range(n_docs)]


def pattern_docs(n_docs: int, vocab: int, seed: int = 0) -> list[np.ndarray]:
    """Learnable docs: each repeats a short random motif (so a small model's loss falls fast)."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        motif = rng.integers(0, vocab - 1, size=rng.integers(3, 8))
        docs.append(np.tile(motif, rng.integers(8, 20)))
    return docs


def run_cli(*args: str, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m webmill.train.cli ARGS`` in a fresh process (2 threads)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "webmill.train.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def invoke(*args: str):
    """Run the ``train`` typer app in this process; returns click's Result (stdout, stderr, exit_code)."""
    from typer.testing import CliRunner

    from webmill.train.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train fastest on one thread on the shared test machine; restored afterwards.

    Import it into a test module (``from test_train_helpers import one_thread``) to enable it.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
