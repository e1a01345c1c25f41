"""Train on token shards made from the real web-crawl files bundled in examples/warc: the loss must fall."""

import json
import math
import shutil

import numpy as np
import pytest
from test_train_helpers import EXAMPLES_WARC, invoke, one_thread  # noqa: F401 (autouse fixture)


def warc_texts(min_chars=200):
    """Main-content text of every HTML response and WET conversion record in examples/warc."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    texts = []
    for f in sorted(p for p in EXAMPLES_WARC.iterdir() if p.is_file() and ".warc" in p.name):
        try:
            with open(f, "rb") as fh:
                for rec in ArchiveIterator(fh, record_types=WarcRecordType.response | WarcRecordType.conversion):
                    body = rec.reader.read()
                    if rec.record_type == WarcRecordType.conversion:
                        text = body.decode("utf-8", "replace")
                    elif "html" in (rec.http_headers.get("Content-Type", "") if rec.http_headers else ""):
                        text = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=True)
                    else:
                        continue
                    if len(text) >= min_chars:
                        texts.append(text)
        except OSError:  # a few files are deliberately odd (malformed records, edited headers)
            continue
    return texts


@pytest.fixture(scope="module")
def texts():
    t = warc_texts()
    assert len(t) > 200
    return t


def write_real_shards(out, enc, texts, tokenizer_dir=None):
    from webmill.tokenize.encoding import tokenizer_info
    from webmill.tokenize.shards import ShardWriter

    info = tokenizer_info(enc)
    if tokenizer_dir is not None:  # as `curate tokenize` does: the trained tokenizer travels along
        shutil.copytree(tokenizer_dir, out / "tokenizer")
        info["path"] = "tokenizer"
    docs = [np.array(ids + [info["eot_id"]]) for ids in enc.encode_ordinary_batch(texts, num_threads=1)]
    with ShardWriter(out, info, shard_tokens=150_000, row_group_rows=50) as w:
        for i, d in enumerate(docs):
            w.add("val" if i % 10 == 0 else "train", f"doc-{i}", d)
    return w.manifest


def metrics(run):
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {k: [x for x in recs if x["type"] == k] for k in ("train", "val", "sample")}


def test_loss_falls_on_real_shards_with_a_trained_vocab(texts, tmp_path):
    """A 2,048-token BPE trained on the bundled text; 60 steps of 512 tokens."""
    from webmill.tokenize.bpe import train_tokenizer

    tok_dir = tmp_path / "tok"
    enc = train_tokenizer(texts[1::10] + texts[2::10], 2048, tok_dir)  # disjoint from val (i % 10 == 0)
    manifest = write_real_shards(tmp_path / "shards", enc, texts, tokenizer_dir=tok_dir)
    assert manifest["dtype"] == "uint16" and manifest["splits"]["train"]["num_tokens"] > 300_000
    assert len([f for f in manifest["files"] if f["split"] == "train"]) >= 2
    run = tmp_path / "run"
    r = invoke("pretrain", "--shards", str(tmp_path / "shards"), "--out", str(run), "--n-layer", "2",
               "--n-head", "4", "--n-embd", "64", "--block-size", "64", "--micro-batch", "8",
               "--max-steps", "60", "--lr", "1e-2", "--warmup-steps", "5", "--eval-every", "30",
               "--val-tokens", "8192", "--sample-every", "60", "--sample-tokens", "8",
               "--sample-prompt", "The web", "--no-tensorboard")
    assert r.exit_code == 0, r.output
    assert "step    60/60 | loss" in r.stdout  # printed every step
    m = metrics(run)
    train, val = m["train"], m["val"]
    assert [x["step"] for x in train] == list(range(1, 61))
    assert all(k in train[0] for k in ("loss", "lr", "grad_norm", "ms", "tokens_per_s", "mfu"))
    assert all(x["mfu"] is None for x in train)  # no peak FLOP/s is known for a CPU: no MFU
    assert "MFU" not in r.stdout
    assert abs(train[0]["loss"] - math.log(enc.n_vocab)) < 0.2  # init loss ≈ ln(vocab)
    # 60 steps learn roughly the unigram statistics: ≈ 1 nat below ln(2048) = 7.62
    assert np.mean([x["loss"] for x in train[-10:]]) < train[0]["loss"] - 0.7
    assert [x["step"] for x in val] == [0, 30, 60]
    assert val[0]["val_loss"] > val[1]["val_loss"] > val[2]["val_loss"]
    assert val[-1]["val_loss"] < val[0]["val_loss"] - 0.8
    # the tokenizer shipped with the shards (manifest tokenizer.path) decodes samples to text
    assert m["sample"] and all(not s["text"].startswith("<ids:") for s in m["sample"])
    shutil.rmtree(tok_dir)  # the checkpoint records the shards' copy; `train sample` finds it
    r = invoke("sample", "--checkpoint", str(run), "--prompt", "The web", "--max-tokens", "5", "--seed", "1")
    assert r.exit_code == 0 and "note:" not in r.output and r.stdout.count("The web") == 2, r.output


def test_cl100k_vocab_trains_on_real_shards(texts, tmp_path):
    """The 100,277-token cl100k_base vocabulary (uint32 shards): init loss ≈ ln(V), loss falls."""
    from webmill.tokenize.encoding import get_encoding

    manifest = write_real_shards(tmp_path / "shards", get_encoding("cl100k_base"), texts[:120])
    assert manifest["tokenizer"]["vocab_size"] == 100_277 and manifest["dtype"] == "uint32"
    run = tmp_path / "run"
    r = invoke("pretrain", "--shards", str(tmp_path / "shards"), "--out", str(run), "--n-layer", "1",
               "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--micro-batch", "4",
               "--max-steps", "20", "--lr", "1e-2", "--warmup-steps", "2", "--eval-every", "0",
               "--sample-every", "20", "--sample-tokens", "4", "--sample-prompt", "The web", "--no-tensorboard")
    assert r.exit_code == 0, r.output
    m = metrics(run)
    losses = [x["loss"] for x in m["train"]]
    assert abs(losses[0] - math.log(100_277)) < 0.2
    assert np.mean(losses[-3:]) < losses[0] - 1.0
    assert m["sample"] and all(not s["text"].startswith("<ids:") for s in m["sample"])  # manifest name loads
