"""Multiple-choice tasks scored by log-likelihood (the lm-evaluation-harness method).

A task is a JSON-lines file, one item per line::

    {"context": "Question: What colour is the sky?\\nAnswer:", "choices": ["blue", "green"], "label": 0}

``context`` (str), ``choices`` (list of ≥ 2 non-empty str), ``label`` (int index of the right
choice), optional ``id`` (str or int); other keys are ignored, blank lines are skipped.

Scoring follows lm-evaluation-harness (Gao et al. 2021/2023, ``lm_eval``: a ``multiple_choice``
task issues one ``loglikelihood(context, target_delimiter + choice)`` request per choice, with
``target_delimiter = " "``; ``HFLM._encode_pair`` and ``_loglikelihood_tokens``):

* the continuation is ``" " + choice``, the choice exactly as the item gives it;
* trailing whitespace of the context is moved to the front of the continuation, then
  ``context + continuation`` is tokenized as one string and split after the context's own token
  count (so the tokenizer sees the same text it saw in training, and the continuation's tokens
  are those of the whole string); an empty context is replaced by the EOT token;
* the input is the last ``block_size + 1`` tokens of ``context + continuation`` minus the last
  token: the context is cut on the left, the choice is always kept whole (a choice longer than
  ``block_size`` tokens is refused);
* the score of a choice is the summed log-probability (nats) of its continuation tokens.

``acc``: the item is right when the highest summed log-probability is the label's.
``acc_norm``: the same after dividing each sum by the choice's length in **UTF-8 bytes**
(without the delimiter). lm-eval divides by ``len(choice)`` in characters; for ASCII text
(HellaSwag, ARC, PIQA) the two are identical, and bytes are the unit of bits per byte
(:mod:`webmill.train.evaluate`), independent of tokenizer and script. Ties go to the first
choice (``numpy.argmax``), as in lm-eval.

The converters :func:`from_hellaswag`, :func:`from_arc` and :func:`from_piqa` turn rows of those
Hugging Face datasets into items with lm-eval's prompts (``docs/training.md``); no data ships here.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

from webmill.errors import UserError
from webmill.train.eval_data import json_lines
from webmill.storage import Storage, as_storage, is_url

TARGET_DELIMITER = " "  # lm-eval's default target_delimiter for multiple_choice tasks


@dataclass(frozen=True)
class TaskItem:
    """One multiple-choice item; ``line`` is its 1-based line in the task file (for messages)."""

    context: str
    choices: tuple[str, ...]
    label: int
    id: str | None = None
    line: int = 0


def _split_path(path: str | os.PathLike) -> tuple[Storage, str]:
    s = os.fspath(path).rstrip("/")
    parent, name = s.rsplit("/", 1) if is_url(s) else os.path.split(s)
    return as_storage(parent or "."), name


def task_name(path: str | os.PathLike) -> str:
    """The task's name: the file name without its last suffix (``arc_easy.jsonl`` → ``arc_easy``)."""
    return PurePosixPath(os.fspath(path).rstrip("/").rsplit("/", 1)[-1]).stem


def parse_item(obj, where: str) -> TaskItem:
    """Validate one decoded JSON line and return it as a :class:`TaskItem`.

    Args:
        obj: the decoded JSON value of the line.
        where: ``"FILE:LINE"`` used in error messages (the line number is parsed from it).

    Raises:
        UserError: not an object, a missing/mistyped key, fewer than 2 choices, an empty choice,
            or a label out of range; the message starts with ``where``.
    """
    fix = 'each line must be {"context": str, "choices": [str, str, ...], "label": int}'
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}; {fix}")
    for key in ("context", "choices", "label"):
        if key not in obj:
            raise UserError(f"{where}: missing key {key!r}; {fix}")
    context, choices, label = obj["context"], obj["choices"], obj["label"]
    if not isinstance(context, str):
        raise UserError(f"{where}: 'context' must be a string, got {type(context).__name__}")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise UserError(f"{where}: 'choices' must be a list of strings; {fix}")
    if len(choices) < 2:
        raise UserError(f"{where}: 'choices' has {len(choices)} entries; a multiple-choice item needs at least 2")
    empty = [i for i, c in enumerate(choices) if not c]
    if empty:
        raise UserError(f"{where}: choice {empty[0]} is empty; every choice needs text "
                        "(acc_norm divides by its length)")
    if isinstance(label, bool) or not isinstance(label, int):
        raise UserError(f"{where}: 'label' must be an integer index into 'choices', got {label!r}")
    if not 0 <= label < len(choices):
        raise UserError(f"{where}: label {label} is out of range for {len(choices)} choices (0..{len(choices) - 1})")
    item_id = obj.get("id")
    tail = where.rsplit(":", 1)[-1]
    line = int(tail) if tail.isdigit() else 0
    return TaskItem(context, tuple(choices), label, None if item_id is None else str(item_id), line)


def load_task(path: str | os.PathLike) -> list[TaskItem]:
    """Read a task file (JSON lines, local path or fsspec URL) into items.

    Returns:
        list of :class:`TaskItem`, in file order (blank lines skipped).

    Raises:
        UserError: the file is missing, a line is not valid JSON or not a valid item (the message
            names ``FILE:LINE`` and the fix, see :func:`parse_item`), or the file has no items.
    """
    st, name = _split_path(path)
    where = st.uri(name)
    if not name or not st.isfile(name):
        raise UserError(f"{where}: task file not found; pass a JSON-lines file of "
                        '{"context", "choices", "label"} items')
    items = []
    for n, obj in json_lines(st.read_text(name), where):
        items.append(parse_item(obj, f"{where}:{n}"))
    if not items:
        raise UserError(f"{where}: no items; a task file holds one JSON item per line")
    return items


def _encoder(tokenizer):
    """``text -> ids`` without special tokens: tiktoken's ``encode_ordinary`` if present, else ``encode``."""
    enc = getattr(tokenizer, "encode_ordinary", None)
    return enc if callable(enc) else tokenizer.encode


def _eot_id(tokenizer) -> int | None:
    eot = getattr(tokenizer, "eot_id", None)  # webmill.train.sample.Tokenizer
    return eot if eot is not None else getattr(tokenizer, "eot_token", None)  # tiktoken.Encoding


def encode_pair(tokenizer, context: str, choice: str) -> tuple[list[int], list[int]]:
    """Token ids of the context and of the continuation ``" " + choice`` (lm-eval's ``_encode_pair``).

    Trailing whitespace of ``context`` is moved to the continuation; the whole string is
    encoded once and split after ``len(encode(context))`` tokens. An empty context becomes
    ``[EOT]`` (lm-eval's prefix token).

    Args:
        tokenizer: a :class:`webmill.train.sample.Tokenizer` or a ``tiktoken.Encoding``.

    Returns:
        ``(context_ids, continuation_ids)``, lists of int; the continuation is never empty.

    Raises:
        UserError: empty context and the tokenizer has no EOT id.
    """
    encode = _encoder(tokenizer)
    continuation = TARGET_DELIMITER + choice
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    if not context:
        eot = _eot_id(tokenizer)
        if eot is None:
            raise UserError("an item has an empty context and the tokenizer has no EOT id to stand for it; "
                            "give the item a context")
        return [eot], encode(continuation)
    whole = encode(context + continuation)
    n_ctx = len(encode(context))
    return whole[:n_ctx], whole[n_ctx:]


def _config(model):
    for m in (model, getattr(model, "module", None), getattr(model, "_orig_mod", None)):
        if m is not None and hasattr(m, "config"):
            return m.config
    raise TypeError(f"{type(model).__name__} has no .config; pass a webmill.train.model.GPT")


def choice_loglikelihoods(model: torch.nn.Module, tokenizer, items: list[TaskItem], *,
                          device: str | torch.device | None = None, batch_size: int = 16,
                          where: str = "task") -> list[list[float]]:
    """Summed log-probability (nats) of each choice's continuation given the item's context.

    Requests (one per item and choice) are sorted by length, longest first, and run in batches
    of ``batch_size`` sequences right-padded to the batch's longest (causal attention: padding
    never influences real positions); logits are turned into log-probabilities in float32 only
    at the continuation positions. The model is put in eval mode (restored afterwards) and run
    under ``torch.no_grad``. Deterministic for a given model, items and ``batch_size`` (another
    batch size may change the last bits through matmul shapes, as in lm-eval).

    Args:
        model: a :class:`~webmill.train.model.GPT` (or a DDP/compiled wrapper of one), already
            on ``device``; its ``config.block_size`` bounds each input.
        tokenizer: as in :func:`encode_pair` (the tokenizer the model was trained with).
        items: from :func:`load_task`.
        device: where the inputs go; None uses the model's device.
        batch_size: sequences per forward pass (int ≥ 1); memory ≈ batch × block × vocab × 4 B.
        where: the task file, for error messages.

    Returns:
        ``scores[i][j]``: float log-probability of choice ``j`` of item ``i`` (≤ 0).

    Raises:
        UserError: a choice's continuation is longer than ``block_size`` tokens, or the
            tokenizer gives an id outside the model's vocabulary, or an empty context without an
            EOT id (each names ``FILE:LINE``).
        ValueError: ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    cfg = _config(model)
    block = cfg.block_size
    if device is None:
        device = next(model.parameters()).device
    requests = []  # (item index, choice index, input ids, continuation ids)
    for i, item in enumerate(items):
        if not item.context.strip() and _eot_id(tokenizer) is None:
            raise UserError(f"{where}:{item.line}: the context is empty and the tokenizer has no EOT id to stand "
                            "for it; give the item a context")
        for j, choice in enumerate(item.choices):
            ctx, cont = encode_pair(tokenizer, item.context, choice)
            if len(cont) > block:
                raise UserError(f"{where}:{item.line}: choice {j} is {len(cont)} tokens, longer than the model's "
                                f"context of {block} tokens; shorten it or use a model with a larger block_size")
            if max(ctx + cont) >= cfg.vocab_size:
                raise UserError(f"{where}:{item.line}: the tokenizer gives id {max(ctx + cont)} but the model has "
                                f"{cfg.vocab_size} ids; pass the tokenizer the model was trained with")
            inp = (ctx + cont)[-(block + 1):][:-1]
            requests.append((i, j, inp, cont))
    order = sorted(range(len(requests)), key=lambda r: -len(requests[r][2]))  # stable: deterministic
    scores = [[0.0] * len(item.choices) for item in items]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = [requests[r] for r in order[start:start + batch_size]]
                width = len(batch[0][2])
                x = torch.zeros((len(batch), width), dtype=torch.long)
                for b, (_, _, inp, _) in enumerate(batch):
                    x[b, :len(inp)] = torch.tensor(inp, dtype=torch.long)
                logits, _ = model(x.to(device))  # (B, width, V)
                for b, (i, j, inp, cont) in enumerate(batch):
                    n, k = len(inp), len(cont)
                    logp = F.log_softmax(logits[b, n - k:n].float(), dim=-1)  # (k, V)
                    target = torch.tensor(cont, dtype=torch.long, device=logp.device)
                    scores[i][j] = float(logp.gather(1, target[:, None]).double().sum())
    finally:
        model.train(was_training)
    return scores


def _mean_stderr(x: np.ndarray) -> float | None:
    """Standard error of the mean, sample std (n − 1) / √n, as lm-eval's ``mean_stderr``."""
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else None


def evaluate_tasks(model: torch.nn.Module, tokenizer, path: str | os.PathLike, *,
                   device: str | torch.device | None = None, batch_size: int = 16) -> dict:
    """Accuracy of ``model`` on one multiple-choice task file.

    Args:
        model, tokenizer, device, batch_size: as in :func:`choice_loglikelihoods`.
        path: a task file (local path or fsspec URL), see :func:`load_task`.

    Returns:
        ``{"task": file stem, "n": items, "acc": float, "acc_norm": float, "acc_stderr",
        "acc_norm_stderr": float or None (n = 1), "seconds": wall time (float)}``; see the module
        docstring for both accuracies.

    Raises:
        UserError: as :func:`load_task` and :func:`choice_loglikelihoods`.
    """
    t0 = time.perf_counter()
    items = load_task(path)
    st, name = _split_path(path)
    scores = choice_loglikelihoods(model, tokenizer, items, device=device, batch_size=batch_size,
                                   where=st.uri(name))
    hit, hit_norm = np.zeros(len(items)), np.zeros(len(items))
    for k, (item, s) in enumerate(zip(items, scores)):
        lengths = np.array([len(c.encode("utf-8")) for c in item.choices], dtype=np.float64)
        hit[k] = float(np.argmax(s) == item.label)
        hit_norm[k] = float(np.argmax(np.asarray(s) / lengths) == item.label)
    return {"task": task_name(path), "n": len(items), "acc": float(hit.mean()), "acc_norm": float(hit_norm.mean()),
            "acc_stderr": _mean_stderr(hit), "acc_norm_stderr": _mean_stderr(hit_norm),
            "seconds": time.perf_counter() - t0}


# --- converters: one Hugging Face dataset row -> one task item (lm-eval's prompts) ---------------


def _hellaswag_clean(text: str) -> str:
    """lm-eval ``hellaswag/utils.py`` ``preprocess``: strip, `` [title]`` → ``". "``, drop WikiHow
    ``[...]`` tags, collapse double spaces."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _label(row: dict, key: str, n: int, dataset: str) -> int:
    raw = row.get(key)
    try:
        label = int(raw)
    except (TypeError, ValueError):
        label = -1
    if not 0 <= label < n:
        raise ValueError(f"{dataset} row has {key}={raw!r}, not an answer index 0..{n - 1} "
                         "(test splits are unlabelled: convert the validation split)")
    return label


def from_hellaswag(row: dict) -> dict:
    """A HellaSwag row (``Rowan/hellaswag``: ``ind``, ``activity_label``, ``ctx_a``, ``ctx_b``,
    ``endings`` (4 str), ``label`` (str digit)) → a task item.

    Context ``preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`` and each
    ending ``preprocess``-ed, as lm-eval's ``hellaswag`` task (``utils.process_docs``).

    Raises:
        ValueError: no usable label (the test split has ``label == ""``).
    """
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    choices = [_hellaswag_clean(e) for e in row["endings"]]
    item = {"context": _hellaswag_clean(row["activity_label"] + ": " + ctx), "choices": choices,
            "label": _label(row, "label", len(choices), "hellaswag")}
    if row.get("ind") is not None:
        item["id"] = str(row["ind"])
    return item


def from_arc(row: dict) -> dict:
    """An ARC row (``allenai/ai2_arc``, configs ``ARC-Easy``/``ARC-Challenge``: ``id``, ``question``,
    ``choices`` = {``text``: [str], ``label``: ["A", ...] or ["1", ...]}, ``answerKey``) → a task item.

    Context ``"Question: {question}\\nAnswer:"``, choices the texts, label the index of
    ``answerKey`` in ``choices.label`` (lm-eval's ``arc_easy``/``arc_challenge``).

    Raises:
        ValueError: ``answerKey`` is not among the choice labels.
    """
    labels = list(row["choices"]["label"])
    if row["answerKey"] not in labels:
        raise ValueError(f"arc row {row.get('id')!r}: answerKey {row['answerKey']!r} not in choice labels {labels}")
    return {"context": f"Question: {row['question']}\nAnswer:", "choices": list(row["choices"]["text"]),
            "label": labels.index(row["answerKey"]), "id": str(row["id"])}


def from_piqa(row: dict) -> dict:
    """A PIQA row (``goal``, ``sol1``, ``sol2``, ``label`` 0/1) → a task item.

    Context ``"Question: {goal}\\nAnswer:"``, choices ``[sol1, sol2]`` (lm-eval's ``piqa``).

    Raises:
        ValueError: no usable label (the test split has ``label == -1``).
    """
    return {"context": f"Question: {row['goal']}\nAnswer:", "choices": [row["sol1"], row["sol2"]],
            "label": _label(row, "label", 2, "piqa")}
