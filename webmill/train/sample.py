"""Sampling from a trained :class:`~webmill.train.model.GPT` and loading its tokenizer.

``generate`` is deliberately simple (no KV cache, one sequence), like nanoGPT's: every new
token re-runs the model on the last ``block_size`` tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from webmill.errors import UserError


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int = 64,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    seed: int | None = 0,
    eot_id: int | None = None,
) -> list[int]:
    """Continue ``prompt_ids`` with up to ``max_new_tokens`` tokens; return only the new ids.

    Args:
        model: a :class:`GPT` (its ``config.block_size`` crops the context); put in eval mode
            here and restored afterwards.
        prompt_ids: non-empty list of token ids.
        max_new_tokens: tokens to generate (int ≥ 0).
        temperature: 0 means greedy (argmax); otherwise logits are divided by it.
        top_k: keep only the k most likely tokens (Fan et al. 2018); None/0 keeps all.
        top_p: nucleus sampling, keep the smallest set with probability ≥ p (Holtzman et al.
            2020, §3.1); None or 1.0 keeps all.
        repetition_penalty: > 1 discourages tokens already in the context: their positive
            logits are divided by it, negative ones multiplied (Keskar et al. 2019, CTRL, §4.1).
        seed: seed of a private ``torch.Generator`` (the global RNG is untouched, so sampling
            during training does not change the training run); None draws from the global RNG.
        eot_id: stop after generating this id (it is included in the output).

    Returns:
        list[int] of generated ids. The same arguments and seed give the same ids.

    Raises:
        ValueError: empty prompt or invalid sampling parameters.
    """
    if not prompt_ids:
        raise ValueError("prompt_ids is empty; give at least one token (e.g. the EOT id)")
    if temperature < 0 or repetition_penalty <= 0 or (top_p is not None and not 0 < top_p <= 1):
        raise ValueError(f"bad sampling parameters: temperature={temperature}, top_p={top_p}, "
                         f"repetition_penalty={repetition_penalty}")
    device = next(model.parameters()).device
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
    was_training = model.training
    model.eval()
    block = model.config.block_size
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    out: list[int] = []
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block:])
        logits = logits[0, -1].float()  # (V,)
        if repetition_penalty != 1.0:
            seen = torch.unique(idx[0, -block:])
            picked = logits[seen]
            logits[seen] = torch.where(picked > 0, picked / repetition_penalty, picked * repetition_penalty)
        if temperature == 0:
            nxt = int(torch.argmax(logits))
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits[logits < kth] = -float("inf")
            if top_p is not None and top_p < 1.0:
                sorted_logits, order = torch.sort(logits, descending=True)
                cum = F.softmax(sorted_logits, dim=-1).cumsum(-1)
                drop = cum - F.softmax(sorted_logits, dim=-1) >= top_p  # keep the token crossing p
                logits[order[drop]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        out.append(nxt)
        idx = torch.cat([idx, torch.tensor([[nxt]], device=device)], dim=1)
        if eot_id is not None and nxt == eot_id:
            break
    model.train(was_training)
    return out


class Tokenizer:
    """Text ↔ ids for samples; ``enc`` is a tiktoken Encoding or None (then ids are shown)."""

    def __init__(self, enc, eot_id: int | None):
        self.enc, self.eot_id = enc, eot_id

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token strings are treated as text).

        Raises:
            UserError: no tokenizer could be loaded.
        """
        if self.enc is None:
            raise UserError("no tokenizer could be loaded for this run; pass --tokenizer NAME_OR_DIR")
        return self.enc.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``, or ``"<ids: ...>"`` when no tokenizer is available."""
        if self.enc is None:
            return "<ids: " + " ".join(map(str, ids)) + ">"
        return self.enc.decode(ids)


def tokenizer_source(tok: dict, shard_dir: str | os.PathLike | None = None) -> str | None:
    """Where to load a manifest's tokenizer from: its ``path`` directory if present, else its name.

    ``curate tokenize`` copies a trained tokenizer next to the shards and records
    ``tokenizer.path`` relative to the shard directory; checkpoints store it absolute.
    """
    if tok.get("path"):
        p = Path(tok["path"])
        if not p.is_absolute() and shard_dir is not None:
            p = Path(shard_dir) / p
        if p.is_dir():
            return str(p.resolve())
    return tok.get("name")


def load_tokenizer(name: str | None, expected: dict | None = None) -> tuple[Tokenizer, str | None]:
    """Load the tokenizer named in the shard manifest (or a directory) for samples.

    Tries ``webmill.tokenize.encoding.get_encoding(name)``, then ``tiktoken.get_encoding(name)``.
    When ``expected`` (the manifest's tokenizer dict) is given and the loaded tokenizer's
    ``ranks_sha256`` or ``vocab_size`` differ, it is not used.

    Returns:
        ``(Tokenizer, warning)``: warning is None when the tokenizer loaded and matches, else a
        one-line reason; the Tokenizer then decodes to token ids.
    """
    eot = expected.get("eot_id") if expected else None
    if not name:
        return Tokenizer(None, eot), "no tokenizer name; samples are shown as token ids"
    enc, info, err = None, None, None
    try:
        from webmill.tokenize.encoding import get_encoding, tokenizer_info

        enc = get_encoding(name)
        info = tokenizer_info(enc)
    except ImportError:
        try:
            import tiktoken

            enc = tiktoken.get_encoding(name)
        except Exception as e:
            err = f"{type(e).__name__}: {e}"
    except Exception as e:
        err = f"{type(e).__name__}: {e}"
    if enc is None:
        return Tokenizer(None, eot), f"cannot load tokenizer {name!r} ({err}); samples are shown as token ids"
    if expected and info:
        for k in ("ranks_sha256", "vocab_size", "eot_id"):
            if info.get(k) != expected.get(k):
                return Tokenizer(None, eot), (
                    f"tokenizer {name!r} has {k}={info.get(k)!r} but the shards were made with "
                    f"{expected.get(k)!r}; samples are shown as token ids (pass --tokenizer DIR)"
                )
    return Tokenizer(enc, eot if eot is not None else getattr(enc, "eot_token", None)), None
