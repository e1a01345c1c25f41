"""Export a GPT-2-architecture checkpoint to a Hugging Face ``GPT2LMHeadModel`` directory.

The result loads with ``transformers.AutoModelForCausalLM.from_pretrained(DIR)`` and can be
evaluated with lm-evaluation-harness (``lm_eval --model hf --model_args pretrained=DIR``).
Only the ``gpt2-124m``/``tiny`` architecture maps onto GPT2LMHeadModel: LayerNorm, learned
positions, tanh-GELU 4C MLP, tied embeddings, no QK-norm. HF's ``Conv1D`` stores weights as
(in, out), the transpose of ``nn.Linear``. The vocabulary is exported unpadded (``V`` rows),
so HF logits equal ours exactly. Needs ``transformers`` (optional dependency).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from webmill.errors import UserError
from webmill.storage import as_storage
from webmill.train.checkpoint import load_checkpoint
from webmill.train.model import GPT, GPTConfig
from webmill.train.sample import tokenizer_source

_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def check_exportable(cfg: GPTConfig) -> None:
    """Raise :class:`UserError` naming the first setting GPT2LMHeadModel cannot represent."""
    want = {"norm": "layernorm", "pos": "learned", "mlp": "gelu", "qk_norm": False, "tie_embeddings": True}
    for k, v in want.items():
        if getattr(cfg, k) != v:
            raise UserError(f"export-hf supports the GPT-2 architecture only; this model has {k}={getattr(cfg, k)!r} "
                            f"(needs {v!r}); train with --preset gpt2-124m or tiny")


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Map our state dict onto GPT2LMHeadModel names (fp32 copies; zero biases if ``bias=False``).

    Returns a dict ``name -> tensor``; ``transformer.wte.weight`` / ``lm_head.weight`` have shape
    (V, C) with the padding rows removed.
    """
    cfg = model.config
    check_exportable(cfg)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out = {}
    for k, v in sd.items():
        if k == "lm_head.weight":
            continue
        if k == "transformer.wte.weight":
            v = v[: cfg.vocab_size]
        if k.endswith(_TRANSPOSED):
            v = v.t()
        out[k] = v.contiguous()
    out["lm_head.weight"] = out["transformer.wte.weight"]
    if not cfg.bias:  # GPT2LMHeadModel always has biases
        C = cfg.n_embd
        for i in range(cfg.n_layer):
            p = f"transformer.h.{i}."
            for name, n in (("ln_1.bias", C), ("ln_2.bias", C), ("attn.c_attn.bias", 3 * C),
                            ("attn.c_proj.bias", C), ("mlp.c_fc.bias", 4 * C), ("mlp.c_proj.bias", C)):
                out[p + name] = torch.zeros(n)
        out["transformer.ln_f.bias"] = torch.zeros(C)
    return out


def hf_config(cfg: GPTConfig, eot_id: int | None):
    """The ``transformers.GPT2Config`` equivalent to ``cfg`` (dropout 0, tanh GELU, eps 1e-5)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=4 * cfg.n_embd, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        bos_token_id=eot_id, eos_token_id=eot_id, tie_word_embeddings=True,
    )


def export_hf(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, tokenizer: str | None = None) -> dict:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files when possible) to ``out_dir``.

    Args:
        checkpoint: a ``step-*.pt`` file or a run directory (newest checkpoint).
        out_dir: output directory (created; local, since transformers writes it).
        tokenizer: tokenizer name/dir to convert with ``transformers``' tiktoken converter;
            default: the one recorded in the checkpoint.

    Returns:
        ``{"out_dir", "params", "tokenizer" (bool: tokenizer files written), "note"}``.

    Raises:
        UserError: unreadable checkpoint, non-GPT-2 architecture, transformers not installed,
            ``out_dir`` not local.
    """
    try:
        from transformers import GPT2LMHeadModel
    except ImportError as e:
        raise UserError("export-hf needs transformers: pip install transformers==5.23.0") from e
    state = load_checkpoint(checkpoint)
    cfg = GPTConfig.from_dict(state["model_config"])
    check_exportable(cfg)
    model = GPT(cfg)
    model.load_state_dict(state["model"])
    tok = state.get("tokenizer") or {}
    hf = GPT2LMHeadModel(hf_config(cfg, tok.get("eot_id")))
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias") and not k.endswith(".attn.masked_bias")]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    out = as_storage(out_dir).local_path()
    if out is None:  # transformers' save_pretrained writes to a local directory
        raise UserError(f"--out {out_dir}: export-hf writes a local directory; export locally, then copy it")
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    wrote_tok, note = _export_tokenizer(tokenizer or tokenizer_source(tok), tok, out)
    return {"out_dir": str(out), "params": model.num_params(), "tokenizer": wrote_tok, "note": note}


def _export_tokenizer(name: str | None, expected: dict, out: Path) -> tuple[bool, str | None]:
    """Convert the tiktoken tokenizer to a HF fast tokenizer (best effort)."""
    from webmill.train.sample import load_tokenizer

    t, warn = load_tokenizer(name, expected or None)
    if t.enc is None:
        return False, warn
    try:
        import base64

        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import TikTokenConverter

        enc = t.enc
        with tempfile.TemporaryDirectory() as tmp:
            ranks = Path(tmp) / "ranks.tiktoken"  # tiktoken's file format: "base64(token) rank"
            ranks.write_text("".join(f"{base64.b64encode(tb).decode()} {r}\n"
                                     for tb, r in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1])))
            fast_backend = TikTokenConverter(vocab_file=str(ranks), pattern=enc._pat_str,
                                             extra_special_tokens=enc._special_tokens).converted()
        eot = "<|endoftext|>"
        fast = PreTrainedTokenizerFast(tokenizer_object=fast_backend, eos_token=eot, bos_token=eot, unk_token=eot)
        fast.save_pretrained(out)
    except Exception as e:  # converter support varies across transformers versions
        return False, f"tokenizer not exported ({type(e).__name__}: {e}); pass the tokenizer to lm-eval yourself"
    return True, None
