"""Output layer + cross-entropy in one pass, gradients included, for training on the CPU.

The unfused head (``logits = x @ W.T``, ``F.cross_entropy``) writes the ``(N, V)`` logits and
their log-softmax, and its backward pass zero-fills an ``(N, V)`` gradient that ``nll_loss``
scatters -1/n into and ``log_softmax``'s backward reads back with another ``exp``: at N = 2,048
rows and V = 4,096 (the ``tiny`` bench shape) several passes over 32 MiB tensors a step.
:func:`linear_cross_entropy` takes the rows a chunk at a time (``CHUNK_FLOATS // V`` rows: the
whole batch at V = 4,096, bounded memory at V = 50,304) and, already in the forward pass,
computes ``p = softmax(x_c @ W.T)`` (one kernel), the loss ``−log p[target]``, the gradient of
the mean loss with respect to the logits, ``(p − one_hot) / n_valid`` (in place in ``p``; the
per-row scale applied on the small ``(rows, C)`` side), and from it ``grad_x = g @ W`` and
``grad_W += g.T @ x_c``. The backward pass only multiplies the two saved gradients by the
incoming scalar (``1/accum`` under gradient accumulation). The idea of Liger-Kernel's fused
linear cross-entropy (Hsu et al. 2024, "Liger Kernel: Efficient Triton Kernels for LLM
Training", §3.2), written anew here for the CPU without Triton.

Same function as ``F.cross_entropy(x @ W[:V].T, targets, ignore_index=-1)`` (mean over the
targets that are not -1; NaN when all are) up to fp32 rounding: loss and gradients agree to
~1e-7 relative (tests/test_train_fused.py). Rows ``W[V:]`` of a padded vocabulary get a zero
gradient, as under the unfused head's ``-inf`` logits. A target whose probability underflows
(``< TINY``) gets its loss from recomputed logits, ``logsumexp(z) − z[target]``, so it stays
finite. Measured on the ``tiny`` preset (AMD EPYC, 2 AVX2 cores, in-process A/B of alternating
steps): +2.5 % training tokens/s (bench/README.md, "webmill vs nanoGPT"). Callers use it for
fp32 CPU tensors only (:func:`webmill.train.model.cpu_fp32`); CUDA and autocast keep the
unfused head.
"""

from __future__ import annotations

import torch

CHUNK_FLOATS = 1 << 23  # logits per chunk (32 MiB fp32): rows = CHUNK_FLOATS // V (2,048 at V = 4,096)
TINY = 1e-30  # a target probability below this is recomputed from its logits (exp underflows near 1e-38)


def _chunk_grads(x: torch.Tensor, weight: torch.Tensor, vocab_size: int, targets: torch.Tensor,
                 valid: torch.Tensor, inv_n: float, rows: int, want_grads: bool):
    """Loss sum over the valid rows and (``want_grads``) the gradients of ``loss_sum * inv_n``
    with respect to ``x`` (N, C) and ``weight`` (Vp, C); see :func:`linear_cross_entropy`.

    Per chunk: ``p = softmax(x_c @ w.T)`` (one kernel), loss ``−log p[target]`` (rows whose target
    probability underflowed get ``logsumexp(z) − z[target]`` from recomputed logits), gradient
    ``(p − one_hot)·scale`` with the per-row scale (``inv_n``, 0 for ignored rows) applied on the
    (rows, C) side of the two matmuls instead of the (rows, V) one.
    """
    N, C = x.shape
    w = weight[:vocab_size]  # (V, C) view: padding rows are never predicted
    loss = x.new_zeros((), dtype=torch.float64)
    grad_x = torch.empty_like(x) if want_grads else None
    grad_weight = torch.zeros_like(weight) if want_grads else None
    grad_w = grad_weight[:vocab_size] if want_grads else None
    for i in range(0, N, rows):
        xc, tc, vc = x[i:i + rows], targets[i:i + rows], valid[i:i + rows]
        n = xc.shape[0]
        t = tc.clamp(min=0).unsqueeze(1)  # ignored rows point at id 0; their loss and gradient are masked
        p = torch.softmax(xc @ w.T, dim=1)  # (n, V)
        pt = p.gather(1, t).squeeze(1)
        nll = -pt.log()
        tiny = vc & (pt < TINY)
        if tiny.any():  # rare: recompute those rows' logits for an exact loss
            z = xc[tiny] @ w.T
            nll[tiny] = torch.logsumexp(z, dim=1) - z.gather(1, t[tiny]).squeeze(1)
        loss += torch.where(vc, nll, 0.0).sum(dtype=torch.float64)
        if want_grads:
            g = p.scatter_add_(1, t, torch.full(t.shape, -1.0, dtype=p.dtype))  # softmax − one_hot, in place
            scale = torch.where(vc, inv_n, 0.0).unsqueeze(1).to(x.dtype)  # (n, 1)
            torch.mul(g @ w, scale, out=grad_x[i:i + n])
            grad_w.addmm_(g.T, xc * scale)
    return loss.to(x.dtype), grad_x, grad_weight


class LinearCrossEntropy(torch.autograd.Function):
    """Autograd wrapper: the forward pass computes the loss and both gradients, the backward
    pass scales them by the incoming gradient (a scalar)."""

    @staticmethod
    def forward(ctx, x, weight, targets, vocab_size, rows):
        valid = targets != -1
        n_valid = int(valid.sum())
        inv_n = 1.0 / n_valid if n_valid else 0.0
        loss_sum, grad_x, grad_w = _chunk_grads(x, weight, vocab_size, targets, valid, inv_n, rows, want_grads=True)
        ctx.save_for_backward(grad_x, grad_w)
        return loss_sum * inv_n if n_valid else loss_sum.new_full((), float("nan"))

    @staticmethod
    def backward(ctx, grad_out):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_out, grad_w * grad_out, None, None, None


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         vocab_size: int, rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy (nats) of the linear head ``x @ weight[:vocab_size].T`` against ``targets``.

    Args:
        x: float32 ``(N, C)`` final hidden states (any leading shape is flattened by the caller).
        weight: float ``(Vp, C)`` output weight, ``Vp ≥ vocab_size`` (a padded vocabulary; the
            padding rows are never predicted and get a zero gradient). May be the tied embedding.
        targets: int64 ``(N,)`` ids in ``[0, vocab_size)`` or -1 (ignored).
        vocab_size: ``V``, the real vocabulary.
        rows: rows per chunk (memory ~ ``rows × V`` floats); ``None``: ``CHUNK_FLOATS // V``.

    Returns:
        0-dim tensor of ``x``'s dtype: the mean over non-ignored targets (NaN when all are
        ignored, as ``F.cross_entropy``). Differentiable in ``x`` and ``weight`` when grad mode
        is on (both gradients are computed here, in the forward pass).

    Raises:
        ValueError: mismatched shapes, ``vocab_size`` larger than ``weight``'s rows, ``rows ≤ 0``.
    """
    if (x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1] or targets.shape != x.shape[:1]
            or not 0 < vocab_size <= weight.shape[0]):
        raise ValueError(f"shapes: x {tuple(x.shape)}, weight {tuple(weight.shape)}, targets {tuple(targets.shape)}, "
                         f"vocab_size {vocab_size}")
    rows = max(1, CHUNK_FLOATS // vocab_size) if rows is None else rows
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    x = x.contiguous()
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return LinearCrossEntropy.apply(x, weight, targets, vocab_size, rows)
    valid = targets != -1
    n_valid = int(valid.sum())
    loss_sum, _, _ = _chunk_grads(x, weight, vocab_size, targets, valid, 0.0, rows, want_grads=False)
    return loss_sum / n_valid if n_valid else loss_sum.new_full((), float("nan"))
