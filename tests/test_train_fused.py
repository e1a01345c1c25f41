"""CPU kernels of training: fused head + cross-entropy, sigmoid-form tanh GELU.

Each must compute the same function as the unfused PyTorch code up to fp32 rounding; the
training run with all of them on must give the losses of the run with all of them off.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_train_helpers import make_shards, one_thread, pattern_docs  # noqa: F401

import webmill.train.model as model_mod
from webmill.train.fused_ce import linear_cross_entropy
from webmill.train.fused_gelu import GeluTanh, gelu_tanh
from webmill.train.loop import TrainConfig, train
from webmill.train.model import GPT, MLP, make_config


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error ‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm())


def reference_ce(x, w, t, V):
    """The unfused head: logits over the padded vocab, -inf on the padding, F.cross_entropy."""
    logits = x @ w.T
    logits[:, V:] = float("-inf")
    return F.cross_entropy(logits, t, ignore_index=-1)


@pytest.mark.parametrize("V,Vp,rows", [(500, 500, None), (500, 512, 7), (1000, 1024, 64), (97, 128, 1)])
def test_fused_ce_equals_cross_entropy(V, Vp, rows):
    g = torch.Generator().manual_seed(V)
    N, C = 150, 24
    x0 = torch.randn(N, C, generator=g)
    w0 = torch.randn(Vp, C, generator=g) * 0.5
    t = torch.randint(0, V, (N,), generator=g)
    t[::9] = -1  # ignored targets
    grads = []
    for fused in (False, True):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        loss = linear_cross_entropy(x, w, t, V, rows=rows) if fused else reference_ce(x, w, t, V)
        (loss * 0.25).backward()  # a scaled loss (gradient accumulation divides by accum)
        grads.append((loss.detach(), x.grad, w.grad))
    (l0, gx0, gw0), (l1, gx1, gw1) = grads
    assert abs(float(l1 - l0)) <= 1e-5 * abs(float(l0))
    assert rel(gx1, gx0) < 1e-5 and rel(gw1, gw0) < 1e-5
    assert torch.all(gw1[V:] == 0)  # padding rows are never predicted
    with torch.no_grad():  # forward-only path (evaluation)
        assert abs(float(linear_cross_entropy(x0, w0, t, V, rows=rows) - l0)) <= 1e-5 * abs(float(l0))


def test_fused_ce_underflowing_target_probability_is_exact():
    """A target far below the others: its softmax probability underflows to 0, the loss must not be inf."""
    x = torch.eye(4, dtype=torch.float32)
    w = torch.zeros(6, 4)
    w[0, 0] = -200.0  # row 0's target logit: -200 (p = e^-200 underflows in fp32)
    t = torch.tensor([0, 1, 2, -1])
    ref = F.cross_entropy((x @ w.T).double(), t, ignore_index=-1)
    got = linear_cross_entropy(x, w, t, 6)
    assert math.isfinite(float(got)) and abs(float(got) - float(ref)) < 1e-4 * float(ref)


def test_fused_ce_all_ignored_is_nan_and_bad_shapes_raise():
    x, w = torch.randn(3, 4, requires_grad=True), torch.randn(5, 4)
    t = torch.full((3,), -1)
    assert math.isnan(float(F.cross_entropy(x.detach() @ w.T, t, ignore_index=-1)))
    assert math.isnan(float(linear_cross_entropy(x, w, t, 5).detach()))
    with pytest.raises(ValueError):
        linear_cross_entropy(x, w, t[:2], 5)
    with pytest.raises(ValueError):
        linear_cross_entropy(x, w, t, 5, rows=0)
    with pytest.raises(ValueError):
        linear_cross_entropy(x, w, t, 6)  # more real ids than weight rows


def test_gelu_tanh_equals_torch_and_gradchecks():
    h = torch.linspace(-12, 12, 4001).reshape(1, -1).repeat(3, 1)
    h[1] *= 0.1
    h.requires_grad_()
    a = F.gelu(h, approximate="tanh")
    b = gelu_tanh(h)
    assert (a - b).abs().max() < 2e-6
    ga, = torch.autograd.grad(a.sum(), h)
    gb, = torch.autograd.grad(b.sum(), h)
    assert (ga - gb).abs().max() < 1e-5
    with torch.no_grad():
        assert (gelu_tanh(h) - a).abs().max() < 2e-6
    hd = torch.randn(40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GeluTanh.apply, (hd,))


def _gpt(seed=0, vocab=1000, preset="gpt2-124m", **kw):
    torch.manual_seed(seed)
    return GPT(make_config(preset, vocab, n_layer=2, n_head=4, n_embd=64, block_size=32, **kw))


def test_untied_modern_model_fused_loss_matches():
    """The ``modern`` preset (untied head, RMSNorm, RoPE, ReLU²): same loss and gradients."""
    x = torch.randint(0, 1000, (2, 32), generator=torch.Generator().manual_seed(3))
    runs = []
    for fused in (False, True):
        m = _gpt(preset="modern")
        assert m.lm_head.weight is not m.transformer.wte.weight
        m.fused_loss = fused
        _, loss = m(x[:, :-1], x[:, 1:], return_logits=False)
        loss.backward()
        runs.append((loss.item(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}))
    (l0, g0), (l1, g1) = runs
    assert abs(l1 - l0) <= 1e-5 * l0 and g0.keys() == g1.keys()
    for name in g0:
        assert rel(g1[name], g0[name]) < 1e-4, name


def test_gpt_fused_path_matches_unfused_with_tied_padded_vocab(monkeypatch):
    """vocab 1000 → 1024 embedding rows, tied head: loss and every parameter's gradient agree."""
    calls = {"head": 0, "gelu": 0}
    real_gelu = model_mod.gelu_tanh

    def counting_gelu(h):
        calls["gelu"] += 1
        return real_gelu(h)

    monkeypatch.setattr(model_mod, "gelu_tanh", counting_gelu)
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 1000, (3, 32), generator=g)
    y = torch.randint(0, 1000, (3, 32), generator=g)
    y[0, :5] = -1
    runs = []
    for fused in (False, True):
        m = _gpt()
        assert m.config.padded_vocab_size == 1024 and m.lm_head.weight is m.transformer.wte.weight
        m.fused_loss = fused
        for mod in m.modules():
            if isinstance(mod, MLP):
                mod.fused_gelu = fused
        m.lm_head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1))
        before = dict(calls)
        logits, loss = m(x, y, return_logits=False)
        assert logits is None
        (loss / 2).backward()
        ran_head, ran_gelu = calls["head"] - before["head"], calls["gelu"] - before["gelu"]
        assert (ran_head, ran_gelu) == ((0, 2) if fused else (1, 0))  # the fused kernels really ran
        runs.append((loss.detach(), {n: p.grad for n, p in m.named_parameters()}))
    (l0, g0), (l1, g1) = runs
    assert abs(float(l1 - l0)) <= 1e-5 * float(l0)
    for name in g0:
        assert rel(g1[name], g0[name]) < 1e-4, name
    assert rel(g1["transformer.wte.weight"], g0["transformer.wte.weight"]) < 1e-5
    assert torch.all(g1["transformer.wte.weight"][1000:] == 0)  # padding rows: embedding never looks them up


def test_logits_are_returned_unless_asked_not_to():
    m = _gpt()
    x = torch.randint(0, 1000, (2, 8))
    logits, loss = m(x, x)
    assert logits.shape == (2, 8, 1000) and loss is not None
    with torch.no_grad():
        none, loss2 = m(x, x, return_logits=False)
    assert none is None and abs(float(loss2 - loss.detach())) < 1e-5


def test_training_run_losses_match_the_unfused_path(tmp_path, monkeypatch):
    """A short real `train` run (tied GPT-2 model, padded vocab 100 → 128, accumulation 2, val
    loss) with the CPU kernels on and off: the same train and val losses within fp32 noise."""
    vocab = 100
    shards = tmp_path / "shards"
    make_shards(shards, {"train": pattern_docs(60, vocab, seed=1), "val": pattern_docs(8, vocab, seed=2)}, vocab)
    runs, calls = {}, {}
    real_ce = model_mod.linear_cross_entropy

    def counting_ce(*a, **k):
        calls[on] += 1
        return real_ce(*a, **k)

    monkeypatch.setattr(model_mod, "linear_cross_entropy", counting_ce)
    for on in (True, False):
        calls[on] = 0
        monkeypatch.setattr(GPT, "fused_loss", on)
        monkeypatch.setattr(MLP, "fused_gelu", on)
        out = tmp_path / f"run-{on}"
        train(TrainConfig(shards=str(shards), out=str(out), n_layer=2, n_head=2, n_embd=32, block_size=16,
                          micro_batch=4, batch_tokens=128, max_steps=30, warmup_steps=3, lr=3e-3, eval_every=10,
                          val_tokens=64, sample_every=0, ckpt_every=0, quiet=True, tensorboard=False))
        recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        runs[on] = ([r["loss"] for r in recs if r["type"] == "train"],
                    [r["val_loss"] for r in recs if r["type"] == "val"])
    (train_on, val_on), (train_off, val_off) = runs[True], runs[False]
    assert len(train_on) == 30 and len(val_on) == 4
    assert calls == {True: 30 * 2 + 4 * 1, False: 0}  # 2 micro-steps per step, 1 val batch per eval
    for a, b in zip(train_on + val_on, train_off + val_off):
        assert abs(a - b) < 1e-4, (train_on, train_off, val_on, val_off)
