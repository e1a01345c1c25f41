"""GPT model: init loss, causality, overfitting, gradient accumulation, FLOPs, presets."""

import math

import pytest
import torch
from test_train_helpers import one_thread  # noqa: F401 (autouse fixture)

from webmill.train.model import GPT, PRESETS, GPTConfig, make_config

SMALL = dict(n_layer=2, n_head=4, n_embd=64, block_size=32)
ARCHS = [
    ("gpt2-124m", "gelu"),
    ("modern", "relu2"),
    ("modern", "swiglu"),
]


def small_model(preset="gpt2-124m", mlp=None, vocab=1000, seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(make_config(preset, vocab, **{**SMALL, **kw}, mlp=mlp))


@pytest.mark.parametrize("preset,mlp", ARCHS)
@pytest.mark.parametrize("vocab", [1000, 100277])
def test_init_loss_is_ln_vocab(preset, mlp, vocab):
    model = small_model(preset, mlp, vocab)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, vocab, (4, 32), generator=g)
    y = torch.randint(0, vocab, (4, 32), generator=g)
    logits, loss = model(x, y)
    assert logits.shape == (4, 32, vocab)  # padded ids are never predicted
    assert abs(loss.item() - math.log(vocab)) < 0.1, (loss.item(), math.log(vocab))


@pytest.mark.parametrize("preset,mlp", ARCHS)
def test_future_tokens_do_not_change_past_logits(preset, mlp):
    model = small_model(preset, mlp).eval()
    x = torch.randint(0, 1000, (2, 32))
    x2 = x.clone()
    x2[:, 20:] = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(x2)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-6)
    assert not torch.allclose(a[:, 20:], b[:, 20:], atol=1e-3)


@pytest.mark.parametrize("preset,mlp", [("gpt2-124m", "gelu"), ("modern", "relu2")])
def test_overfits_one_batch(preset, mlp):
    model = small_model(preset, mlp, vocab=256)
    x = torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(0))
    opt = model.configure_optimizer(3e-3, 0.0, (0.9, 0.95), 1e-8, "cpu")
    for _ in range(200):
        _, loss = model(x[:, :-1], x[:, 1:])
        if loss.item() < 0.1:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_grad_accumulation_matches_full_batch():
    vocab = 500
    xy = torch.randint(0, vocab, (8, 33), generator=torch.Generator().manual_seed(3))
    x, y = xy[:, :-1], xy[:, 1:]

    full = small_model(vocab=vocab, seed=5)
    _, loss = full(x, y)  # micro-batch 8 × 1 step
    loss.backward()

    acc = small_model(vocab=vocab, seed=5)
    for i in range(4):  # micro-batch 2 × 4 accumulation steps
        _, loss = acc(x[2 * i : 2 * i + 2], y[2 * i : 2 * i + 2])
        (loss / 4).backward()
    for (name, p), q in zip(full.named_parameters(), acc.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=0), name


def test_gpt2_124m_shape_and_flops():
    with torch.device("meta"):  # shapes only, no memory or init time
        model = GPT(make_config("gpt2-124m", 50257))
    cfg = model.config
    assert cfg.padded_vocab_size == 50304
    # nanoGPT prints 123.69M non-embedding parameters for this configuration
    assert model.num_params(non_embedding=True) == 123_689_472
    assert model.num_params() == 123_689_472 + 1024 * 768
    expected = 6 * 123_689_472 + 12 * 12 * 12 * 64 * 1024
    assert model.estimate_flops_per_token() == expected


def test_weight_decay_only_on_matrices_and_tied_head():
    model = small_model()
    assert model.lm_head.weight is model.transformer.wte.weight
    opt = model.configure_optimizer(1e-3, 0.1, (0.9, 0.95), 1e-8, "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == model.num_params()
    untied = small_model("modern")
    assert untied.lm_head.weight is not untied.transformer.wte.weight


def test_residual_projection_init_is_scaled():
    model = GPT(make_config("gpt2-124m", 1000, n_layer=8, n_head=4, n_embd=256, block_size=32))
    std_proj = model.transformer.h[0].attn.c_proj.weight.std().item()
    std_fc = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert abs(std_fc - 0.02) < 0.002
    assert abs(std_proj - 0.02 / math.sqrt(16)) < 0.001


def test_config_errors_and_roundtrip():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("gpt5", 1000)
    with pytest.raises(ValueError, match="mlp"):
        make_config("modern", 1000, mlp="tanh")
    cfg = make_config("modern", 1234, n_layer=3)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    assert set(PRESETS) == {"tiny", "gpt2-124m", "modern"}
    model = small_model()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))
