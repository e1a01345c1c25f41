"""Loss and bits per byte of checkpoints on token shards or raw text (``train eval``).

The eval set is one flat sequence of token ids: the documents of a shard split in manifest order
(files sorted by name, row groups and rows in order, as :func:`~webmill.train.data.load_val_batches`
reads them), or the documents of text files tokenized with the checkpoint's tokenizer
(``encode_ordinary``), each followed by the EOT token as in the shards. Its first
``max_tokens + 1`` tokens are used: every token but the first is predicted exactly once. They are
cut into windows of ``block_size`` inputs with stride ``block_size`` (window ``j``: inputs
``tokens[jT : jT+T]``, targets ``tokens[jT+1 : jT+T+1]``; the last window may be shorter), the
layout of the trainer's val batches, so with ``max_tokens`` = ``--val-tokens`` (a multiple of
``micro_batch × block_size``) the loss equals the trainer's val loss (tested to 1e-5). The set
depends only on the data, the tokenizer and ``max_tokens``, so every checkpoint of a run is
evaluated on the same tokens; ``data_sha`` (first 12 hex of the sha256 of the ids as
little-endian uint32) identifies them.

* ``loss`` = mean cross-entropy in nats per predicted token.
* ``bpb`` (bits per byte) = Σ cross-entropy of every predicted token (nats) / ln 2 / Σ UTF-8
  bytes of those tokens, i.e. ``loss × tokens / (ln 2 × bytes)``. A token's bytes come from the
  tokenizer (tiktoken ``decode_single_token_bytes``); special tokens (EOT) count 0 bytes, but
  the nats of predicting them are kept in the sum (the end of a document is part of the text;
  every tokenizer has one EOT per document, so the comparison stays fair). Bits per UTF-8 byte
  is the Pile's tokenizer-independent metric (Gao et al. 2020, "The Pile":
  ``BPB = (L_T/L_B)·ℓ/ln 2``); nanochat's ``evaluate_bpb`` (``nanochat/loss_eval.py``) uses the
  same per-token byte table but also drops the nats of special tokens. Runs with different
  tokenizers therefore compare on the same text.

The eval set (shard splits, ``.txt``/``.jsonl``/``.parquet`` text, the tokenizer check, the
per-token byte table) is built by :mod:`webmill.train.eval_data`; this module runs checkpoints
on it and keeps ``RUN/eval.jsonl``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from webmill.errors import UserError
from webmill.storage import Storage, as_storage, is_url
from webmill.train.eval_data import DEFAULT_MAX_TOKENS, shard_eval_set, text_eval_set, token_bytes

EVAL_LOG = "eval.jsonl"  # RUN/eval.jsonl, one JSON record per evaluated checkpoint
LOGITS_BUDGET = 1 << 25  # floats of logits per forward (128 MiB) when batch_size is not given


# ---- the computation -----------------------------------------------------------------------------


@torch.no_grad()
def loss_sums(model: torch.nn.Module, tokens: np.ndarray, byte_table: np.ndarray | None, *,
              batch_size: int | None = None, device: str | torch.device = "cpu") -> tuple[float, int, int | None]:
    """Summed cross-entropy of ``tokens[1:]`` given their windows (see the module docstring).

    Args:
        model: a :class:`~webmill.train.model.GPT` on ``device`` (eval mode is set and restored).
        tokens: int64 array (n + 1,).
        byte_table: int64 (vocab,) from :func:`token_bytes`, or None (no byte count).
        batch_size: windows per forward; None: as many as keep the logits under
            ``LOGITS_BUDGET`` floats (1 for a 100k vocabulary at T = 256).

    Returns:
        ``(nats, predicted tokens, bytes or None)``; nats summed in float64 from per-token fp32
        cross-entropies (logsumexp − target logit) over the real vocabulary.
    """
    cfg = model.config
    T, V = cfg.block_size, cfg.vocab_size
    if tokens.max() >= V:
        raise UserError(f"token id {int(tokens.max())} ≥ the model's vocab_size {V}: the data's tokenizer is not "
                        "the model's; pass the checkpoint's tokenizer with --tokenizer")
    B = batch_size or max(1, LOGITS_BUDGET // (T * cfg.padded_vocab_size))
    t = torch.from_numpy(tokens)
    n = len(tokens) - 1
    starts = list(range(0, n, T))
    was = model.training
    model.eval()
    nats = 0.0
    try:
        full = [s for s in starts if s + T <= n]
        groups = [full[i:i + B] for i in range(0, len(full), B)] + [[s] for s in starts if s + T > n]
        for g in groups:
            L = min(T, n - g[0])
            x = torch.stack([t[s:s + L] for s in g]).to(device)
            y = torch.stack([t[s + 1:s + L + 1] for s in g]).to(device)
            logits, _ = model(x)  # (b, L, V): a view over the real vocabulary
            logits = logits.float()
            # cross-entropy = logsumexp − target logit, without copying the (b, L, V) view
            ce = torch.logsumexp(logits, dim=-1) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
            nats += float(ce.double().sum())
    finally:
        model.train(was)
    nbytes = int(byte_table[tokens[1:]].sum()) if byte_table is not None else None
    return nats, n, nbytes


def metrics_of(nats: float, tokens: int, nbytes: int | None) -> dict:
    """``{"loss": nats/token, "bpb": bits per byte or None}`` from the sums of :func:`loss_sums`."""
    bpb = nats / math.log(2) / nbytes if nbytes else None
    return {"loss": nats / tokens, "bpb": bpb}


# ---- checkpoints and runs ------------------------------------------------------------------------


def _load_model(checkpoint: str | os.PathLike, device):
    from webmill.train.checkpoint import load_checkpoint
    from webmill.train.model import GPT, GPTConfig

    state = load_checkpoint(checkpoint, map_location="cpu")
    model = GPT(GPTConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return state, model.to(device).eval()


def _tokenizer(state: dict, override: str | None, shards: Storage | None):
    """The checkpoint's tokenizer (:class:`webmill.train.sample.Tokenizer`) and a note; ``enc`` is
    None when it cannot be loaded (then no bytes). A shard directory's own copy is tried first."""
    from webmill.train.sample import load_tokenizer, tokenizer_source

    info = state.get("tokenizer") or {}
    sources = [override] if override else []  # an explicit tokenizer is the only one tried
    if not override and shards is not None and shards.is_local and shards.isfile("manifest.json"):
        m_tok = shards.read_json("manifest.json").get("tokenizer") or {}
        if m_tok.get("path"):  # a trained tokenizer shipped with the shards
            sources.append(tokenizer_source(m_tok, shards.uri()))
    if not override:
        sources.append(tokenizer_source(info))
    warn = None
    for src in sources:
        tok, warn = load_tokenizer(src, info or None)
        if tok.enc is not None:
            return tok, None
    return tok, warn


def _resolve_data(data, kind: str) -> tuple[str, object]:
    if kind not in ("auto", "shards", "text"):
        raise ValueError(f"kind must be auto, shards or text, got {kind!r}")
    if isinstance(data, (list, tuple)):
        if kind == "shards":
            raise ValueError("kind='shards' takes one directory")
        return "text", list(data)
    st = as_storage(data)
    if kind == "shards" or (kind == "auto" and st.isfile("manifest.json")):
        return "shards", st
    return "text", [data.uri() if isinstance(data, Storage) else data]


def evaluate_checkpoint(checkpoint: str | os.PathLike, data, *, split: str = "val",
                        max_tokens: int | None = DEFAULT_MAX_TOKENS, batch_size: int | None = None,
                        device: str = "cpu", tokenizer: str | None = None, tasks: Sequence[str] = (),
                        kind: str = "auto", _cache: dict | None = None) -> dict:
    """Loss and bits per byte of one checkpoint on shards or text (module docstring).

    Args:
        checkpoint: a ``step-*.pt`` file or a run directory (its newest), local or URL.
        data: a shard directory (has ``manifest.json``), a text file or directory, or a list of
            text files (local paths or URLs); ``kind`` = ``"shards"``/``"text"`` forces the reading.
        split: shard split (``val``/``train``); ignored for text.
        max_tokens: predicted tokens evaluated (int > 0; None: all).
        batch_size: windows per forward (None: from the logits budget).
        device: ``cpu`` or ``cuda``; the model runs in fp32.
        tokenizer: a tokenizer name or directory instead of the checkpoint's recorded one.
        tasks: multiple-choice task files for :func:`webmill.train.tasks.evaluate_tasks`.
        _cache: internal: :func:`evaluate_run` shares the eval set and byte table between checkpoints.

    Returns:
        ``{"checkpoint", "step", "data", "data_sha", "split", "tokenizer", "tokens", "bytes",
        "documents", "loss", "bpb", "seconds", "tasks"}``: ``tokens`` predicted (int), ``bytes``
        their UTF-8 bytes (int, None when the tokenizer cannot be loaded: shards only), ``loss``
        nats/token, ``bpb`` bits/byte (None without bytes), ``seconds`` wall time, ``tasks`` a
        list of evaluate_tasks results (empty without ``tasks``); plus ``note`` (why there is no
        ``bpb``) when the tokenizer cannot be loaded.

    Raises:
        UserError: unreadable checkpoint or data, a shard tokenizer other than the checkpoint's,
            text data or tasks without a loadable tokenizer (pass ``tokenizer``).
    """
    if max_tokens is not None and max_tokens < 1:
        raise UserError(f"--max-tokens must be ≥ 1, got {max_tokens}")
    t0 = time.perf_counter()
    state, model = _load_model(checkpoint, device)
    info = state.get("tokenizer") or {}
    what, src = _resolve_data(data, kind)
    tok, warn = _tokenizer(state, tokenizer, src if what == "shards" else None)
    if tok.enc is None and (what == "text" or tasks):
        raise UserError(f"{state['path']}: {warn}; --text and --tasks need the checkpoint's tokenizer: pass "
                        "--tokenizer NAME_OR_DIR")
    cache = _cache if _cache is not None else {}
    key = (info.get("ranks_sha256"), model.config.vocab_size)
    if key not in cache:
        if what == "shards":
            es = shard_eval_set(src, info, split=split, max_tokens=max_tokens, where_ckpt=state["path"])
        else:
            es = text_eval_set(src, tok.enc, int(info.get("eot_id", tok.eot_id)), max_tokens=max_tokens)
        table = token_bytes(tok.enc, model.config.vocab_size) if tok.enc is not None else None
        cache[key] = (es, table)
    es, table = cache[key]
    nats, n, nbytes = loss_sums(model, es.tokens, table, batch_size=batch_size, device=device)
    task_results = []
    if tasks:
        from webmill.train.tasks import evaluate_tasks

        task_results = [evaluate_tasks(model, tok.enc, p, device=device) for p in tasks]
    return {"checkpoint": state["path"], "step": int(state.get("step", 0)), "data": es.data, "data_sha": es.sha,
            "split": es.split, "tokenizer": info.get("name"), "tokens": n, "bytes": nbytes,
            "documents": es.documents, **metrics_of(nats, n, nbytes), "seconds": time.perf_counter() - t0,
            "tasks": task_results, **({"note": warn} if warn else {})}


def run_dir_of(checkpoint: str | os.PathLike) -> Storage:
    """The run directory of a checkpoint argument: itself when a directory, else the parent of
    its ``checkpoints/`` folder (or its own folder when not inside one)."""
    from webmill.train.checkpoint import CHECKPOINTS

    st = as_storage(checkpoint)
    if st.isdir():
        return st
    s = os.fspath(checkpoint).rstrip("/")
    parent = s.rsplit("/", 1)[0] if is_url(s) else (os.path.dirname(s) or ".")
    if parent.rstrip("/").rsplit("/", 1)[-1] == CHECKPOINTS or os.path.basename(parent) == CHECKPOINTS:
        parent = parent.rstrip("/").rsplit("/", 1)[0] if is_url(parent) else (os.path.dirname(parent) or ".")
    return as_storage(parent)


def append_records(run_dir: str | os.PathLike | Storage, records: Sequence[dict]) -> str:
    """Append ``records`` (one JSON line each) to ``RUN/eval.jsonl`` through Storage (the file is
    rewritten whole, atomically: object stores have no append). Returns its URI."""
    st = as_storage(run_dir)
    old = st.read_text(EVAL_LOG) if st.isfile(EVAL_LOG) else ""
    if old and not old.endswith("\n"):
        old += "\n"
    st.write_text(EVAL_LOG, old + "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return st.uri(EVAL_LOG)


def evaluate_run(run_dir: str | os.PathLike, data, *, every: bool = False, write: bool = True,
                 say=None, **kwargs) -> list[dict]:
    """Evaluate the newest checkpoint of a run, or with ``every`` each one in step order (the curve).

    ``run_dir`` may also be one checkpoint file (then only it). The eval set is built once and
    shared by all checkpoints. With ``write``, every result is appended to ``RUN/eval.jsonl``
    as soon as it is computed. ``say(record)`` is called after each checkpoint. Other keyword
    arguments go to :func:`evaluate_checkpoint`. Returns the records in step order.

    Raises:
        UserError: no checkpoints, and as :func:`evaluate_checkpoint`.
    """
    from webmill.train.checkpoint import list_checkpoints

    st = as_storage(run_dir)
    if st.isdir():
        ckpts = list_checkpoints(st)
        if not ckpts:
            raise UserError(f"{st.uri()}: no checkpoints/step-*.pt; train first or pass a checkpoint file")
        ckpts = ckpts if every else ckpts[-1:]
    else:
        ckpts = [os.fspath(run_dir)]
    run, cache, out = run_dir_of(run_dir), {}, []
    for c in ckpts:
        rec = evaluate_checkpoint(c, data, _cache=cache, **kwargs)
        out.append(rec)
        if write:
            append_records(run, [rec])
        if say is not None:
            say(rec)
    return out
