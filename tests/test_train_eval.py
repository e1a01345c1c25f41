"""`train eval`: loss and bits per byte of checkpoints on shards and raw text (webmill.train.evaluate)."""

import json
import math

import numpy as np
import pytest
from test_train_helpers import REPO, invoke, make_shards, one_thread, pattern_docs, synthetic_tokenizer  # noqa: F401
from test_train_real import warc_texts, write_real_shards

from webmill.errors import UserError
from webmill.train.config import TrainConfig
from webmill.train.evaluate import EVAL_LOG, evaluate_checkpoint, evaluate_run
from webmill.train.loop import train

V = 64


def val_losses(run):
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["val_loss"] for r in recs if r["type"] == "val"}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A 1-layer model trained 20 steps on learnable synthetic shards; val and checkpoint every 10 steps."""
    tmp = tmp_path_factory.mktemp("synth")
    make_shards(tmp / "shards", {"train": pattern_docs(80, V, seed=1), "val": pattern_docs(30, V, seed=2)}, V)
    train(TrainConfig(shards=str(tmp / "shards"), out=str(tmp / "run"), n_layer=1, n_head=2, n_embd=32,
                      block_size=16, micro_batch=4, max_steps=20, lr=1e-2, warmup_steps=2, eval_every=10,
                      ckpt_every=10, val_tokens=4 * 16 * 6, sample_every=0, tensorboard=False, quiet=True))
    return tmp


def test_loss_equals_the_training_loops_val_loss_at_every_checkpoint(synthetic_run):
    run, shards = synthetic_run / "run", synthetic_run / "shards"
    want = val_losses(run)
    recs = evaluate_run(run, shards, every=True, max_tokens=4 * 16 * 6, batch_size=3)  # other batching: same sums
    assert [r["step"] for r in recs] == [10, 20]
    for r in recs:
        assert abs(r["loss"] - want[r["step"]]) < 1e-5, (r, want)
        assert r["tokens"] == 4 * 16 * 6 and r["split"] == "val"
        assert r["bytes"] is None and r["bpb"] is None and "note" in r  # the synthetic tokenizer cannot load
    assert recs[1]["loss"] < recs[0]["loss"]  # the curve falls
    assert recs[0]["data_sha"] == recs[1]["data_sha"]  # one eval set for every checkpoint
    logged = [json.loads(x) for x in (run / EVAL_LOG).read_text().splitlines()]
    assert [(x["step"], x["loss"]) for x in logged] == [(r["step"], r["loss"]) for r in recs]
    # the train split and a window count that is not a multiple of the batch: still every token once
    r = evaluate_checkpoint(run, shards, split="train", max_tokens=1000)
    assert r["tokens"] == 1000 and r["split"] == "train" and math.isfinite(r["loss"])


def test_eval_cli_all_checkpoints_on_shards(synthetic_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(synthetic_run / "run", run)
    (run / EVAL_LOG).unlink(missing_ok=True)
    res = invoke("eval", "--checkpoint", str(run), "--shards", str(synthetic_run / "shards"), "--all",
                 "--max-tokens", str(4 * 16 * 6))
    assert res.exit_code == 0, res.output
    want = val_losses(run)
    rows = [line.split() for line in res.stdout.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [(int(r[0]), float(r[3])) for r in rows] == [(s, pytest.approx(want[s], abs=1e-4)) for s in (10, 20)]
    assert "no bits per byte" in res.output  # the synthetic tokenizer has no bytes
    assert [json.loads(x)["step"] for x in (run / EVAL_LOG).read_text().splitlines()] == [10, 20]


def test_shards_of_another_tokenizer_are_refused_naming_both(synthetic_run, tmp_path):
    from webmill.tokenize.shards import ShardWriter

    other = dict(synthetic_tokenizer(V), name="other-tok", ranks_sha256="1" * 64)
    with ShardWriter(tmp_path / "other", other, row_group_rows=4) as w:
        for i, d in enumerate(pattern_docs(10, V)):
            w.add("val", f"d{i}", np.append(d, other["eot_id"]))
    with pytest.raises(UserError, match="'other-tok'.*'synthetic-test'"):
        evaluate_checkpoint(synthetic_run / "run", tmp_path / "other")


def test_run_and_shards_on_an_object_store(synthetic_run):
    """A run directory and shards behind an fsspec URL (the in-memory filesystem): same numbers,
    eval.jsonl written through Storage."""
    from webmill.storage import Storage

    url = "memory://t1-eval"
    for sub in ("run", "shards"):
        for p in sorted((synthetic_run / sub).rglob("*")):
            if p.is_file() and p.suffix in (".pt", ".json", ".parquet"):
                Storage(f"{url}/{sub}").write_bytes(str(p.relative_to(synthetic_run / sub)), p.read_bytes())
    local = evaluate_checkpoint(synthetic_run / "run", synthetic_run / "shards", max_tokens=300)
    [remote] = evaluate_run(f"{url}/run", f"{url}/shards", max_tokens=300)
    assert remote["checkpoint"].startswith(url) and remote["step"] == 20
    assert (remote["loss"], remote["data_sha"]) == (local["loss"], local["data_sha"])
    assert json.loads(Storage(f"{url}/run").read_text(EVAL_LOG))["loss"] == remote["loss"]


# ---- real text, two tokenizers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The bundled examples/warc text; the same small model trained 15 steps through cl100k_base and
    through a 512-token BPE trained on it; short held-out documents (of the val split) as eval text.
    Sizes are kept small because cl100k's 100k-way output layer dominates the time."""
    from webmill.tokenize.bpe import train_tokenizer
    from webmill.tokenize.encoding import get_encoding

    tmp = tmp_path_factory.mktemp("real")
    texts = warc_texts()
    bpe = train_tokenizer(texts[1::10] + texts[2::10], 512, tmp / "bpe")
    runs = {}
    for name, enc, tok_dir in (("cl100k", get_encoding("cl100k_base"), None), ("bpe", bpe, tmp / "bpe")):
        write_real_shards(tmp / f"shards-{name}", enc, texts[:120], tokenizer_dir=tok_dir)
        train(TrainConfig(shards=str(tmp / f"shards-{name}"), out=str(tmp / name), n_layer=1, n_head=2,
                          n_embd=32, block_size=32, micro_batch=4, max_steps=15, lr=1e-2, warmup_steps=2,
                          eval_every=0, sample_every=0, tensorboard=False, quiet=True, verify_tokens=False))
        runs[name] = tmp / name
    (tmp / "val.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:120][::10]))
    held = [t for t in texts[:120][::10] if 300 < len(t) < 2000][:4]  # val documents (i % 10 == 0): not trained on
    assert len(held) == 4
    (tmp / "held.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in held))
    for i, t in enumerate(held):
        (tmp / f"held-{i}.txt").write_text(t)
    results = {name: evaluate_checkpoint(run, tmp / "held.jsonl", max_tokens=None) for name, run in runs.items()}
    return {"tmp": tmp, "runs": runs, "held": held, "bpe": bpe, "results": results}


def test_bpb_is_loss_times_tokens_over_the_texts_bytes(real):
    from webmill.tokenize.encoding import get_encoding

    tmp, held = real["tmp"], real["held"]
    for name, enc in (("cl100k", get_encoding("cl100k_base")), ("bpe", real["bpe"])):
        r = real["results"][name]
        ids = [enc.encode_ordinary(t) for t in held]
        # independently from the text: every token but the first is predicted, every EOT too
        assert r["tokens"] == sum(len(i) + 1 for i in ids) - 1 and r["documents"] == len(held)
        assert r["bytes"] == sum(len(t.encode("utf-8")) for t in held) - len(enc.decode_bytes(ids[0][:1]))
        assert r["bpb"] == pytest.approx(r["loss"] * r["tokens"] / (math.log(2) * r["bytes"]), rel=1e-12)
        # the shards' val split and the same documents as text: the same tokens, the same numbers
        shards = evaluate_checkpoint(real["runs"][name], tmp / f"shards-{name}", max_tokens=3000)
        text = evaluate_checkpoint(real["runs"][name], tmp / "val.jsonl", max_tokens=3000)
        assert (text["data_sha"], text["bytes"], text["documents"]) == (shards["data_sha"], shards["bytes"],
                                                                        shards["documents"])
        assert text["loss"] == shards["loss"] and text["tokens"] == 3000
        # the same documents as .txt files give the same eval set and numbers
        t = evaluate_checkpoint(real["runs"][name], [tmp / f"held-{i}.txt" for i in range(len(held))], max_tokens=None)
        assert (t["data_sha"], t["tokens"], t["bytes"]) == (r["data_sha"], r["tokens"], r["bytes"])
        assert t["loss"] == pytest.approx(r["loss"], abs=1e-6)


def test_bpb_compares_across_tokenizers_where_the_loss_does_not(real):
    c, b = real["results"]["cl100k"], real["results"]["bpe"]
    assert c["data_sha"] != b["data_sha"] and c["tokens"] < b["tokens"]  # other token ids, fewer of them
    assert c["bytes"] == pytest.approx(b["bytes"], abs=8)  # the same text (less each first token)
    assert c["loss"] > b["loss"] + 1.0  # per-token losses differ: a 100k-way vs a 512-way prediction
    assert all(math.isfinite(x["bpb"]) and 0.5 < x["bpb"] < 8 for x in (c, b))
    assert 0.5 < c["bpb"] / b["bpb"] < 2  # bits per byte: the same scale
    assert b["loss"] < math.log(512) and c["loss"] < math.log(100_277)  # both learnt: below uniform


def test_eval_cli_text_writes_eval_jsonl_and_runs_tasks(real):
    tmp, run = real["tmp"], real["runs"]["bpe"]
    before = (run / EVAL_LOG).read_text().splitlines() if (run / EVAL_LOG).exists() else []
    res = invoke("eval", "--checkpoint", str(run), "--text", str(tmp / "held-0.txt"), "--text",
                 str(tmp / "held.jsonl"), "--max-tokens", "1000", "--tasks",
                 str(REPO / "examples" / "tasks" / "simple_english.jsonl"))
    assert res.exit_code == 0, res.output
    assert "bpb" in res.stdout and "simple_english" in res.stdout
    lines = (run / EVAL_LOG).read_text().splitlines()
    assert len(lines) == len(before) + 1
    rec = json.loads(lines[-1])
    assert rec["tokens"] == 1000 and rec["step"] == 15 and rec["split"] is None
    assert rec["data"].endswith("held.jsonl") and "held-0.txt" in rec["data"] and len(rec["data_sha"]) == 12
    assert {"loss", "bpb", "bytes", "checkpoint"} <= set(rec)
    task = rec["tasks"][0]
    assert task["task"] == "simple_english" and task["n"] == 22 and 0 <= task["acc"] <= 1
    bad = invoke("eval", "--checkpoint", str(run), "--text", str(tmp / "missing.txt"))
    assert bad.exit_code == 2 and "missing.txt" in bad.output
    wrong = invoke("eval", "--checkpoint", str(run), "--text", str(tmp / "held-0.txt"), "--tokenizer", "cl100k_base")
    assert wrong.exit_code == 2 and "'cl100k_base' has ranks_sha256=" in wrong.output  # not the model's tokenizer
    both = invoke("eval", "--checkpoint", str(run))
    assert both.exit_code == 2 and "--shards" in both.output
