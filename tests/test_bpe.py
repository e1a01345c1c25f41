"""Tests of webmill.tokenize.bpe: rustbpe training on real web text (examples/warc), saving, loading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import warc_texts
import tiktoken
import tiktoken.load
import typer
from typer.testing import CliRunner

from webmill.errors import UserError
from webmill.curate.cli.tokenize import train_tokenizer_cmd
from webmill.tokenize.bpe import GPT4_SPLIT_PATTERN, SPECIAL_TOKENS, iter_texts, train_tokenizer
from webmill.tokenize.encoding import get_encoding, tokenizer_info

WARC_DIR = Path(__file__).resolve().parents[1] / "examples" / "warc"  # bundled: no skip on a fresh clone
VOCAB = 1024
CJK = re.compile(r"[\u4e00-\u9fff]")
CYRILLIC = re.compile(r"[\u0400-\u04ff]")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Main-content text of HTML responses and WET conversions in the bundled WARCs (251
    documents, English, Russian and Chinese among them)."""
    return warc_texts.shared_texts(WARC_DIR)


@pytest.fixture(scope="module")
def trained(texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    enc = train_tokenizer(texts, VOCAB, out)
    return enc, out


def test_round_trip_every_document(texts, trained):
    enc, _ = trained
    assert enc.n_vocab == VOCAB
    assert any(CJK.search(t) for t in texts) and any(CYRILLIC.search(t) for t in texts)
    extra = ["Москва — столица России.", "北京是中国的首都。", "emoji 🙂 and\ttabs\r\n", " leading  spaces  "]
    for t in texts + extra:
        assert enc.decode(enc.encode_ordinary(t)) == t
    # merges were learned: far fewer tokens than UTF-8 bytes
    nbytes = sum(len(t.encode()) for t in texts)
    ntok = sum(len(x) for x in enc.encode_ordinary_batch(texts, num_threads=2))
    assert ntok < 0.6 * nbytes


def test_special_tokens_get_their_ids(trained):
    enc, out = trained
    n_merge = VOCAB - len(SPECIAL_TOKENS)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert enc.encode(s, allowed_special="all") == [n_merge + i]
    info = tokenizer_info(enc)
    assert info["eot_id"] == n_merge and info["bos_id"] == n_merge + 1
    # as ordinary text, a special token string is never its special id
    assert n_merge not in enc.encode_ordinary("<|endoftext|>")
    cfg = json.loads((out / "tokenizer.json").read_text())
    assert cfg["pattern"] == GPT4_SPLIT_PATTERN
    assert cfg["special_tokens"] == {s: n_merge + i for i, s in enumerate(SPECIAL_TOKENS)}


def test_save_and_load_give_the_same_encoding(texts, trained, monkeypatch):
    enc, out = trained
    loaded = get_encoding(str(out))
    assert tokenizer_info(loaded) == tokenizer_info(enc)
    assert loaded._pat_str == enc._pat_str
    assert loaded.encode_ordinary_batch(texts) == enc.encode_ordinary_batch(texts)
    # the ranks file is tiktoken's own format: tiktoken's loader reads the same ranks
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # no copy into a cache dir
    assert tiktoken.load.load_tiktoken_bpe(str(out / "tokenizer.tiktoken")) == enc._mergeable_ranks


def test_tiktoken_conversion_matches_rustbpe_encoder(texts, trained):
    """Same merges + same pattern: rustbpe's own encoder and the tiktoken Encoding agree."""
    import rustbpe

    enc, _ = trained
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(texts), VOCAB - len(SPECIAL_TOKENS), pattern=GPT4_SPLIT_PATTERN)
    assert {bytes(k): v for k, v in tok.get_mergeable_ranks()} == enc._mergeable_ranks
    for t in texts[::5]:
        assert tok.encode(t) == enc.encode_ordinary(t)


def test_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="vocab_size must be"):
        train_tokenizer(["some text"], 100, tmp_path / "a")
    with pytest.raises(UserError, match="no text"):
        train_tokenizer([], 512, tmp_path / "b")
    with pytest.raises(UserError, match="not found"):
        list(iter_texts(tmp_path / "missing"))
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "d.parquet")
    with pytest.raises(UserError, match="no column 'text'"):
        list(iter_texts(tmp_path))


def test_iter_texts_limits(tmp_path, texts):
    pq.write_table(pa.table({"text": texts[:20]}), tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts[20:25]) + "\n")
    (tmp_path / "c.txt").write_text(texts[25])
    got = list(iter_texts(tmp_path, doc_cap=None))
    assert got == texts[:26]
    capped = list(iter_texts(tmp_path, doc_cap=50, max_chars=120))
    assert capped == [texts[0][:50], texts[1][:50], texts[2][:20]]


def test_train_tokenizer_cmd(tmp_path, texts):
    inp = tmp_path / "docs"
    inp.mkdir()
    pq.write_table(pa.table({"text": texts[:120]}), inp / "part-0.parquet")
    app = typer.Typer()
    app.command()(train_tokenizer_cmd)
    res = CliRunner().invoke(app, [str(inp), "--vocab-size", "600", "-o", str(tmp_path / "tok")])
    assert res.exit_code == 0, res.output
    assert "vocab_size=600" in res.output and "bytes/token" in res.output
    enc = get_encoding(str(tmp_path / "tok"))
    assert enc.name == "bpe-600" and enc.n_vocab == 600
    assert enc.decode(enc.encode_ordinary(texts[0])) == texts[0]
