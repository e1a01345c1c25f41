"""Settings of a pretraining run (:class:`TrainConfig`) and the peak FLOP/s table used for MFU.

Torch-free on purpose: ``train --help`` reads the defaults of the ``train pretrain`` options
from :class:`TrainConfig` (:func:`config_defaults`) without importing torch, so each default is
written once, here.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

DEFAULT_PROMPTS = ["Hello, I'm a language model,", "The most important thing about the web is"]

# Dense bf16 tensor-core peak FLOP/s per device from vendor datasheets (no sparsity), matched
# by substring of torch.cuda.get_device_name(); first match wins, so specific names come first
# (e.g. "H100 PCIe" before "H100", "L40S" before "L40" before "L4", "A100" before "A10").
PEAK_FLOPS_BF16 = [
    ("H200", 989e12),  # NVIDIA H200 datasheet (SXM), same compute as H100 SXM; also matches GH200
    ("H100 PCIe", 756e12),  # NVIDIA H100 datasheet, PCIe
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # NVIDIA H100 datasheet, SXM ("NVIDIA H100 80GB HBM3")
    ("GH200", 989e12),
    ("B200", 2250e12),  # NVIDIA DGX B200 datasheet (dense = half the sparse figure)
    ("A100", 312e12),  # NVIDIA A100 datasheet
    ("A800", 312e12),
    ("L40S", 362e12),  # NVIDIA L40S datasheet
    ("L40", 181e12),  # NVIDIA L40 datasheet
    ("L4", 121e12),  # NVIDIA L4 datasheet
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),  # fp32 accumulate
    ("RTX 3090", 71e12),
    ("V100", 125e12),  # fp16 (V100 has no bf16)
    ("T4", 65e12),  # fp16
]


def peak_flops_for_name(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of one GPU named ``device_name`` (``torch.cuda.get_device_name``).

    Returns the first :data:`PEAK_FLOPS_BF16` entry whose key is a substring of the name, or
    ``None`` for a GPU not in the table (MFU is then not reported unless ``--peak-flops`` is given).
    """
    return next((v for k, v in PEAK_FLOPS_BF16 if k in device_name), None)


@dataclass
class TrainConfig:
    """All settings of a run; every ``train pretrain`` option's default is read from here.

    Each field has a ``--flag`` of the same name (``_`` → ``-``; ``sample_prompts`` is the
    repeatable ``--sample-prompt``), except ``eps``, ``sample_temperature`` and
    ``sample_top_k``, which only Python callers set. ``peak_flops`` is one device's peak FLOP/s
    for MFU; ``None`` looks the GPU name up in :data:`PEAK_FLOPS_BF16` (no MFU on CPU).
    """

    shards: str
    out: str
    preset: str = "tiny"
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    mlp: str | None = None
    vocab_size: int | None = None
    dropout: float = 0.0
    micro_batch: int = 8
    batch_tokens: int | None = None
    max_steps: int = 200
    stop_at: int | None = None
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    schedule: str = "cosine"
    decay_frac: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    seed: int = 1337
    eval_every: int = 50
    val_tokens: int = 32768
    sample_every: int = 20
    sample_tokens: int = 32
    sample_prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    sample_temperature: float = 1.0
    sample_top_k: int | None = 50
    tokenizer: str | None = None
    ckpt_every: int = 100
    keep_checkpoints: int = 3
    resume: bool = False
    verify_tokens: bool = True
    tensorboard: bool = True
    peak_flops: float | None = None
    quiet: bool = False


def config_defaults() -> dict[str, Any]:
    """``{field name: default}`` of :class:`TrainConfig` (a fresh list for ``sample_prompts``);
    the required fields ``shards`` and ``out`` are left out."""
    out = {}
    for f in fields(TrainConfig):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out
