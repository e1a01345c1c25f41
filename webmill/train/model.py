"""A GPT language model, readable top to bottom (after nanoGPT's ``model.py``).

Two families share one code path, chosen by :class:`GPTConfig` fields:

* ``gpt2-124m`` — GPT-2 (Radford et al. 2019): LayerNorm with biases, learned absolute
  positions, GELU (tanh approximation, as GPT-2's ``gelu_new``), embedding tied to the output
  head, vocabulary padded to a multiple of 64 (nanoGPT pads 50,257 → 50,304 for speed).
  12 layers, 12 heads, 768 wide, context 1024. Exportable to Hugging Face ``GPT2LMHeadModel``.
* ``modern`` — the changes used by recent small models (nanochat, Llama): rotary position
  embedding (RoPE, Su et al. 2021), RMSNorm (Zhang & Sennrich 2019) without biases, QK-norm
  (Dehghani et al. 2023, "Scaling Vision Transformers to 22B", §3.1), ReLU² MLP (So et al.
  2021, "Primer", §4) or SwiGLU (Shazeer 2020), untied output head.

Shapes: ``B`` batch, ``T`` sequence length (≤ ``block_size``), ``C`` = ``n_embd``,
``H`` = ``n_head``, ``D`` = ``C // H``, ``V`` = ``vocab_size``, ``Vp`` = padded vocab.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from webmill.train.fused_ce import linear_cross_entropy
from webmill.train.fused_gelu import gelu_tanh


@dataclass
class GPTConfig:
    """Architecture of a :class:`GPT`.

    Attributes:
        vocab_size: number of real token ids ``V`` (e.g. 100,277 for cl100k_base). Logits and
            the loss cover exactly these ids; the embedding has ``padded_vocab_size`` rows.
        block_size: maximum context length ``T`` in tokens.
        n_layer, n_head, n_embd: depth, attention heads, width (``n_embd % n_head == 0``).
        norm: ``"layernorm"`` (GPT-2) or ``"rmsnorm"``.
        pos: ``"learned"`` (GPT-2 absolute position table) or ``"rope"``.
        mlp: ``"gelu"`` (4C hidden, tanh GELU), ``"relu2"`` (4C hidden, ReLU²) or ``"swiglu"``
            (hidden ``8C/3`` rounded up to a multiple of 64, so parameters ≈ the 4C MLPs;
            Shazeer 2020, §2).
        qk_norm: RMS-normalise queries and keys per head before attention.
        tie_embeddings: share the token embedding with the output head (GPT-2, Press & Wolf 2017).
        bias: biases in Linear and LayerNorm layers (GPT-2: True).
        dropout: dropout probability (0.0 for pretraining, as nanoGPT/llm.c).
        rope_theta: RoPE base frequency (10,000 as in Su et al. 2021).
        vocab_multiple: pad the embedding rows to a multiple of this (64, nanoGPT/llm.c).
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    norm: str = "layernorm"
    pos: str = "learned"
    mlp: str = "gelu"
    qk_norm: bool = False
    tie_embeddings: bool = True
    bias: bool = True
    dropout: float = 0.0
    rope_theta: float = 10000.0
    vocab_multiple: int = 64

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"RoPE needs an even head size, got n_embd/n_head = {self.n_embd // self.n_head}")
        for name, allowed in (("norm", NORMS), ("pos", POSITIONS), ("mlp", MLPS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_head, self.vocab_multiple) <= 0:
            raise ValueError(f"sizes must be positive: {self}")

    @property
    def padded_vocab_size(self) -> int:
        """``Vp``: ``vocab_size`` rounded up to a multiple of ``vocab_multiple`` (64)."""
        m = self.vocab_multiple
        return (self.vocab_size + m - 1) // m * m

    def to_dict(self) -> dict:
        """Plain dict of all fields (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TypeError(f"unknown GPTConfig keys {sorted(unknown)}")
        return cls(**d)


NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")
MLPS = ("gelu", "relu2", "swiglu")

# Architecture presets; sizes (n_layer/n_head/n_embd/block_size) can be overridden by flags.
PRESETS: dict[str, dict] = {
    # CPU default: GPT-2 architecture at a size that trains in minutes on a laptop CPU.
    "tiny": dict(
        n_layer=4, n_head=4, n_embd=256, block_size=256,
        norm="layernorm", pos="learned", mlp="gelu", qk_norm=False, tie_embeddings=True, bias=True,
    ),
    "gpt2-124m": dict(
        n_layer=12, n_head=12, n_embd=768, block_size=1024,
        norm="layernorm", pos="learned", mlp="gelu", qk_norm=False, tie_embeddings=True, bias=True,
    ),
    "modern": dict(
        n_layer=12, n_head=12, n_embd=768, block_size=1024,
        norm="rmsnorm", pos="rope", mlp="relu2", qk_norm=True, tie_embeddings=False, bias=False,
    ),
}


def make_config(preset: str, vocab_size: int, **overrides) -> GPTConfig:
    """Build a :class:`GPTConfig` from a preset name plus overrides.

    Args:
        preset: a key of :data:`PRESETS` (``"tiny"``, ``"gpt2-124m"`` or ``"modern"``).
        vocab_size: real vocabulary size ``V`` (from the shard manifest).
        **overrides: any GPTConfig field; ``None`` values are ignored.

    Raises:
        ValueError: unknown preset or inconsistent sizes.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    kw = dict(PRESETS[preset], vocab_size=vocab_size)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return GPTConfig(**kw)


def norm_layer(config: GPTConfig, dim: int) -> nn.Module:
    """LayerNorm (optional bias) or RMSNorm over the last dimension, eps 1e-5 (GPT-2's)."""
    if config.norm == "layernorm":
        return nn.LayerNorm(dim, eps=1e-5, bias=config.bias)
    return nn.RMSNorm(dim, eps=1e-5)


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for RoPE (Su et al. 2021, eq. 34), each float32 of shape (length, head_dim/2)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the head dimension of x (B, H, T, D) by position."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused QKV projection."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.residual_projection = True  # init scaled by 1/sqrt(2 n_layer), see GPT._init_weights
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rope = config.pos == "rope"
        self.qk_norm = config.qk_norm

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, D)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if self.rope:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.qk_norm:
            q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


def cpu_fp32(x: torch.Tensor) -> bool:
    """Whether ``x`` is a CPU float32 tensor outside autocast and ``torch.compile`` tracing: where
    the CPU kernels (:mod:`~webmill.train.fused_gelu`, :mod:`~webmill.train.fused_ce`) apply."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling())


class MLP(nn.Module):
    """Position-wise feed-forward: GELU(tanh) / ReLU² with 4C hidden, or SwiGLU.

    On the CPU in fp32 the tanh GELU runs as :func:`~webmill.train.fused_gelu.gelu_tanh` (the
    same function through a sigmoid, faster) unless :attr:`fused_gelu` is off.
    """

    fused_gelu: bool = True

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.kind = config.mlp
        if self.kind == "swiglu":
            hidden = (8 * config.n_embd // 3 + 63) // 64 * 64
            self.c_fc = nn.Linear(config.n_embd, 2 * hidden, bias=config.bias)  # gate and value fused
        else:
            hidden = 4 * config.n_embd
            self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.c_proj.residual_projection = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.kind == "gelu":
            h = gelu_tanh(h) if self.fused_gelu and cpu_fp32(h) else F.gelu(h, approximate="tanh")
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = norm_layer(config, config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = norm_layer(config, config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.ln_1(x), cos, sin)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """Decoder-only transformer language model.

    ``forward(idx, targets=None, return_logits=True)`` takes int64 token ids ``idx`` of shape
    (B, T), T ≤ block_size, and returns ``(logits, loss)``: float logits of shape (B, T, V) over
    the real vocabulary (a view; padding rows of the embedding are never predicted) and, when
    ``targets`` (B, T) int64 is given, the mean cross-entropy in nats (a 0-dim float32 tensor),
    else ``None``. Targets equal to -1 are ignored.

    With ``targets`` and ``return_logits=False`` (the training loop) logits is ``None``, and on
    the CPU in fp32 (no autocast, not under ``torch.compile``) with :attr:`fused_loss` on, the
    head and loss run as one chunked pass (:func:`~webmill.train.fused_ce.linear_cross_entropy`):
    the same loss and gradients up to fp32 rounding, without the (B·T, V) logits tensors.
    """

    fused_loss: bool = True  # use the fused head + loss where it applies (see above)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        Vp = config.padded_vocab_size
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(Vp, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=norm_layer(config, config.n_embd),
            )
        )
        if config.pos == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        else:
            cos, sin = rope_tables(config.n_embd // config.n_head, config.block_size, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.lm_head = nn.Linear(config.n_embd, Vp, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2 paper §2.3 / nanoGPT: N(0, 0.02) for weights, zero biases; residual projections
        # scaled by 1/sqrt(2 * n_layer) (two residual additions per block).
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "residual_projection", False):
                std *= (2 * self.config.n_layer) ** -0.5
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (shared tied weights counted once).

        With ``non_embedding``, the position table and — when untied — the token embedding are
        excluded (lookups, not matmuls); a tied embedding is counted since it is the output head.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.transformer.wte.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_logits: bool = True):
        T = idx.size(1)  # idx: (B, T)
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        x = self.transformer.wte(idx)  # (B, T, C)
        cos = sin = None
        if self.config.pos == "learned":
            x = x + self.transformer.wpe(torch.arange(T, device=idx.device))
        else:
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, cos, sin)
        x = self.transformer.ln_f(x)
        V = self.config.vocab_size
        if targets is not None and not return_logits and self.fused_loss and cpu_fp32(x):
            loss = linear_cross_entropy(x.reshape(-1, x.size(-1)), self.lm_head.weight, targets.reshape(-1), V)
            return None, loss
        logits = self.lm_head(x)  # (B, T, Vp)
        if logits.size(-1) > V:
            # Padding ids are never predicted: -inf logits take no probability mass, so the loss
            # is the loss over the real vocabulary (as llm.c), and the tensor stays contiguous.
            logits[..., V:] = float("-inf")
        loss = None
        if targets is not None:  # autocast runs cross_entropy in fp32
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return (logits[..., :V] if return_logits else None), loss

    def estimate_flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), for MFU.

        ``6 N + 12 L H D T`` (Chowdhery et al. 2022, "PaLM", Appendix B; as nanoGPT's
        ``estimate_mfu``): 6 FLOPs per matmul parameter per token (2 forward, 4 backward) plus
        the attention score/value matmuls. ``N`` = :meth:`num_params` (non_embedding=True),
        which includes the output head. ``T`` defaults to ``block_size``. Returns a float (FLOPs).
        """
        cfg = self.config
        T = seq_len or cfg.block_size
        N = self.num_params(non_embedding=True)
        return 6.0 * N + 12.0 * cfg.n_layer * cfg.n_head * (cfg.n_embd // cfg.n_head) * T

    def configure_optimizer(
        self, lr: float, weight_decay: float, betas: tuple[float, float], eps: float, device_type: str
    ) -> torch.optim.AdamW:
        """AdamW (Loshchilov & Hutter 2019) with decay only on 2-D weights (matmuls, embeddings).

        Biases and norm gains are not decayed (nanoGPT / GPT-3 practice). Uses the fused CUDA
        kernel when ``device_type == "cuda"``.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=device_type == "cuda")
