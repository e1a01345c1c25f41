"""Sampling (reproducible by seed, decoding options) and export to Hugging Face GPT2LMHeadModel."""

import pytest
import torch
from test_train_helpers import invoke, one_thread  # noqa: F401 (autouse fixture)

from webmill.errors import UserError
from webmill.train.checkpoint import save_checkpoint
from webmill.train.model import GPT, make_config
from webmill.train.sample import generate

VOCAB = 1000  # padded to 1024 inside the model



def tiny(preset="gpt2-124m", seed=0, **kw):
    torch.manual_seed(seed)
    model = GPT(make_config(preset, VOCAB, **{**dict(n_layer=2, n_head=4, n_embd=64, block_size=32), **kw}))
    with torch.no_grad():  # make the logits less flat than at init, so sampling choices matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def fake_checkpoint(run, model, tokenizer=None):
    tok = tokenizer or {"name": "synthetic-test", "ranks_sha256": "0" * 64, "vocab_size": VOCAB,
                        "eot_id": VOCAB - 1, "bos_id": None, "boundary": "eot"}
    return save_checkpoint(run, 1, {"model": model.state_dict(), "model_config": model.config.to_dict(),
                                    "step": 1, "tokenizer": tok})


def test_sampling_is_reproducible_by_seed():
    model = tiny()
    prompt = [1, 2, 3]
    a = generate(model, prompt, 20, temperature=1.0, seed=7)
    assert a == generate(model, prompt, 20, temperature=1.0, seed=7)
    assert a != generate(model, prompt, 20, temperature=1.0, seed=8)
    assert len(a) == 20 and all(0 <= t < VOCAB for t in a)
    # the global RNG is not consumed (training runs stay reproducible while sampling)
    state = torch.get_rng_state()
    generate(model, prompt, 5, seed=1)
    assert torch.equal(state, torch.get_rng_state())


def test_greedy_top_k_top_p_and_repetition_penalty():
    model = tiny()
    prompt = [5, 6, 7]
    greedy = generate(model, prompt, 12, temperature=0.0)
    # greedy is the argmax continuation
    ids = list(prompt)
    for t in greedy:
        logits, _ = model(torch.tensor([ids]))
        assert t == int(logits[0, -1].argmax())
        ids.append(t)
    assert generate(model, prompt, 12, top_k=1, seed=3) == greedy
    assert generate(model, prompt, 12, top_p=1e-6, seed=4) == greedy
    sampled = generate(model, prompt, 12, top_k=50, top_p=0.9, seed=3)
    assert sampled != greedy
    penalised = generate(model, prompt, 12, temperature=0.0, repetition_penalty=50.0)
    assert len(set(penalised)) > len(set(greedy))  # repeats are discouraged
    with pytest.raises(ValueError):
        generate(model, [], 5)


def test_generation_stops_at_eot():
    model = tiny()
    first = generate(model, [1, 2], 1, temperature=0.0)[0]
    assert generate(model, [1, 2], 10, temperature=0.0, eot_id=first) == [first]


def test_sample_cli_reproducible(tmp_path):
    fake_checkpoint(tmp_path / "run", tiny())
    args = ["sample", "--checkpoint", str(tmp_path / "run"), "--prompt-ids", "1 2 3", "--max-tokens", "8",
            "--top-k", "20"]
    a = invoke(*args, "--seed", "5")
    b = invoke(*args, "--seed", "5")
    c = invoke(*args, "--seed", "6")
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout and a.stdout != c.stdout
    assert "<ids: 1 2 3 " in a.stdout  # synthetic tokenizer: shown as ids
    bad = invoke("sample", "--checkpoint", str(tmp_path / "nothing"))
    assert bad.exit_code == 2 and "checkpoint not found" in bad.stderr


@pytest.mark.parametrize("bias", [True, False])
def test_export_hf_gives_the_same_logits(tmp_path, bias):
    transformers = pytest.importorskip("transformers")
    from webmill.train.export_hf import export_hf

    model = tiny(bias=bias)
    ckpt = fake_checkpoint(tmp_path / "run", model)
    res = export_hf(ckpt, tmp_path / "hf")
    assert res["tokenizer"] is False  # synthetic tokenizer cannot be converted
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    x = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = model(x)
        theirs = hf(x).logits
    assert theirs.shape == ours.shape == (2, 32, VOCAB)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=0), (ours - theirs).abs().max()


def test_export_hf_cli_with_tokenizer_and_refuses_modern(tmp_path):
    transformers = pytest.importorskip("transformers")
    from webmill.tokenize.encoding import get_encoding, tokenizer_info

    info = tokenizer_info(get_encoding("cl100k_base"))
    torch.manual_seed(0)
    model = GPT(make_config("gpt2-124m", info["vocab_size"], n_layer=1, n_head=2, n_embd=32, block_size=16))
    fake_checkpoint(tmp_path / "run", model, info)
    r = invoke("export-hf", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf"))
    assert r.exit_code == 0, r.output
    assert "tokenizer written" in r.stdout
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok("hello world")["input_ids"] == [15339, 1917]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert hf.config.vocab_size == 100277 and hf.config.eos_token_id == info["eot_id"]

    fake_checkpoint(tmp_path / "modern", tiny("modern"))
    r = invoke("export-hf", "--checkpoint", str(tmp_path / "modern"), "--out", str(tmp_path / "hf2"))
    assert r.exit_code == 2 and "GPT-2 architecture only" in r.stderr
    from webmill.train.export_hf import export_hf

    with pytest.raises(UserError, match="norm='rmsnorm'"):
        export_hf(tmp_path / "modern", tmp_path / "hf3")
