"""Training with shards and run directory on a real S3 API server (moto, ``tests/fixtures_s3.py``).

Shards are tokenized from real text of the bundled examples/warc straight into the bucket;
`train pretrain --shards s3://… --out s3://…` stops half-way, is resumed in a fresh process
with an empty cache, and must equal an uninterrupted local run bit for bit; the local shard
cache refetches a corrupted or missing file; `train sample` and `train report` read runs on S3.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import warc_texts
from test_train_helpers import REPO, invoke, one_thread, run_cli  # noqa: F401 (autouse fixture)

from webmill.storage import Storage
from webmill.tokenize.shards import ShardError, check_shards

WARC_DIR = REPO / "examples" / "warc"
# 2 layers, width 32, context 16, 2 × 16 tokens per micro-batch, 2 accumulation streams, dropout:
# the data cursors and every RNG state matter for the resume (as in test_train_loop)
ARGS = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--micro-batch", "2",
        "--batch-tokens", "64", "--max-steps", "8", "--warmup-steps", "2", "--dropout", "0.1", "--eval-every", "3",
        "--val-tokens", "32", "--sample-every", "4", "--sample-tokens", "4", "--ckpt-every", "0",
        "--no-tensorboard", "--device", "cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A run-like directory with ``final/`` (real documents of examples/warc), a tokenizer of
    400 ids trained on them (``tok/``) and those documents tokenized locally (``shards/``)."""
    from webmill.tokenize.bpe import iter_texts, train_tokenizer
    from webmill.tokenize.dataset import tokenize_dataset

    root = tmp_path_factory.mktemp("train-s3")
    rows = warc_texts.shared_rows(WARC_DIR)[:80]
    (root / "final").mkdir()
    pq.write_table(pa.table({"id": [r[1] for r in rows], "text": [r[2] for r in rows]}),
                   root / "final" / "part-0.parquet")
    train_tokenizer(iter_texts(root / "final", max_chars=200_000), 400, root / "tok", name="t400")
    tokenize_dataset(root / "final", root / "shards", tokenizer=str(root / "tok"), shard_tokens=20_000,
                     val_fraction=0.1, num_threads=1, row_group_rows=4)
    return root


def tokenize_into(corpus: Path, url: str) -> dict:
    """Tokenize ``corpus/final`` into the shard directory ``url`` (as `curate tokenize -o s3://…`)."""
    from webmill.tokenize.dataset import tokenize_dataset

    return tokenize_dataset(corpus / "final", url, tokenizer=str(corpus / "tok"), shard_tokens=20_000,
                            val_fraction=0.1, num_threads=1, row_group_rows=4)


def records(text: str) -> list[dict]:
    """metrics.jsonl records without the timing fields (which differ between runs)."""
    return [{k: v for k, v in r.items() if k not in ("ms", "tokens_per_s", "mfu")}
            for r in map(json.loads, text.splitlines())]


def test_pretrain_s3_to_s3_resumes_bit_identically_to_a_local_run(corpus, s3_bucket, tmp_path, monkeypatch):
    shards, run = f"{s3_bucket}/out/shards", f"{s3_bucket}/runs/gpt"
    tokenize_into(corpus, shards)
    local_manifest = check_shards(corpus / "shards")
    remote_manifest = check_shards(shards)  # (its input_dir is absolute: final/ is on another filesystem)
    assert remote_manifest["files"] == local_manifest["files"]  # same files, same sha256 on S3 as on local disk
    assert len(local_manifest["files"]) >= 2 and local_manifest["tokenizer"]["path"] == "tokenizer"

    # the reference: uninterrupted, all local
    ref = tmp_path / "ref"
    r = invoke("pretrain", "--shards", str(corpus / "shards"), "--out", str(ref), *ARGS)
    assert r.exit_code == 0, r.output
    # on S3: stopped after step 4 (this process, cache A) ...
    monkeypatch.setenv("WEBMILL_CACHE", str(tmp_path / "cache-a"))
    r = invoke("pretrain", "--shards", shards, "--out", run, *ARGS, "--stop-at", "4")
    assert r.exit_code == 0, r.output
    key = hashlib.sha256(Storage(shards).read_bytes("manifest.json")).hexdigest()
    assert f"shard cache: {shards} → {tmp_path / 'cache-a' / 'shards' / key}" in r.stdout
    assert f"{len(local_manifest['files'])} files verified by sha256, {len(local_manifest['files'])} downloaded" \
        in r.stdout
    assert "metrics: logged to " + str(tmp_path / "cache-a" / "runs") in r.stdout
    st = Storage(run)
    assert st.list(recursive=True) == ["checkpoints/step-00000004.pt", "config.json", "metrics.jsonl"]
    assert json.loads(st.read_text("config.json"))["train"]["shards"] == shards
    assert not (REPO / "s3:").exists() and not Path("s3:").exists()  # nothing written to a local "s3:" folder
    # ... as if killed after publishing more records (an eval after the checkpoint): the resume drops them
    published = st.read_text("metrics.jsonl")
    assert [x["step"] for x in records(published) if x["type"] == "train"] == [1, 2, 3, 4]
    st.write_text("metrics.jsonl", published + json.dumps({"type": "train", "step": 5, "loss": 9.9}) + "\n"
                  + json.dumps({"type": "val", "step": 5, "val_loss": 9.9}) + "\n" + '{"type": "tr')

    # ... resumed in a new process with an empty cache and no staged log (another machine)
    r = run_cli("pretrain", "--shards", shards, "--out", run, *ARGS, "--resume",
                env_extra={"OMP_NUM_THREADS": "1", "WEBMILL_CACHE": str(tmp_path / "cache-b")})
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"resumed {run}/checkpoints/step-00000004.pt at step 4" in r.stdout
    assert f"saved {run}/checkpoints/step-00000008.pt" in r.stdout
    st.fs.invalidate_cache()  # s3fs caches listings; another process wrote since this one listed

    a = torch.load(ref / "checkpoints" / "step-00000008.pt", weights_only=True)
    b = torch.load(st.open("checkpoints/step-00000008.pt"), weights_only=True)
    assert a["step"] == b["step"] == 8 and a["loader"] == b["loader"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # every step's loss and grad norm, the val losses and the samples: exactly the local run's
    assert records(st.read_text("metrics.jsonl")) == records((ref / "metrics.jsonl").read_text())
    assert len([x for x in records((ref / "metrics.jsonl").read_text()) if x["type"] == "train"]) == 8

    # `train sample` reads the run on S3 (its newest checkpoint)
    out = [invoke("sample", "--checkpoint", run, "--prompt", "The web", "--max-tokens", "8", "--seed", "3")
           for _ in range(2)]
    assert out[0].exit_code == 0, out[0].output
    assert out[0].stdout.startswith("--- 'The web' (seed 3)\nThe web") and out[0].stdout == out[1].stdout


def test_report_of_a_run_on_s3(s3_bucket):
    """`train report s3://RUN` reads RUN/metrics.jsonl and config.json there and writes RUN/report/."""
    run = Storage(f"{s3_bucket}/runs/gpt")
    lines = [{"type": "val", "step": 0, "val_loss": 6.0, "val_tokens": 64}]
    lines += [{"type": "train", "step": s, "loss": 6.0 - 0.1 * s, "lr": 1e-3, "grad_norm": 1.0, "ms": 5.0,
               "tokens_per_s": 900.0 + s, "mfu": None, "tokens": 64 * s} for s in range(1, 11)]
    run.write_text("metrics.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    run.write_json("config.json", {"model": {"n_layer": 2}})
    r = invoke("report", run.uri())
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"report: {run.uri()}/report/report.html"
    assert run.list("report") == ["grad_norm.png", "loss.png", "lr.png", "report.html", "summary.json",
                                  "throughput.png"]
    summary = json.loads(run.read_text("report/summary.json"))
    assert summary["train_steps"] == 10 and summary["last_loss"] == pytest.approx(5.0)
    html = run.read_text("report/report.html")
    assert f"<p>{run.uri()}</p>" in html and "n_layer" in html
    r = invoke("report", f"{s3_bucket}/runs/none")
    assert r.exit_code == 2 and f"{s3_bucket}/runs/none/metrics.jsonl not found" in r.stderr


def test_a_corrupted_or_missing_cached_shard_is_fetched_again(corpus, s3_bucket, tmp_path, monkeypatch):
    from webmill.train.shard_cache import local_shards, sha256_of

    monkeypatch.setenv("WEBMILL_CACHE", str(tmp_path / "cache"))
    shards = f"{s3_bucket}/shards"
    manifest = tokenize_into(corpus, shards)
    lines: list[str] = []
    cache = Storage(local_shards(shards, say=lines.append))
    names = [e["path"] for e in manifest["files"]]
    assert cache.list(suffix=".parquet") == names and lines[-1].endswith(f"{len(names)} downloaded)")
    assert cache.list("tokenizer") == ["tokenizer.json", "tokenizer.tiktoken"]
    want = {e["path"]: e["sha256"] for e in manifest["files"]}
    assert {n: sha256_of(cache, n) for n in names} == want

    # a flipped byte (same size) in one cached file, another cached file gone
    bad, gone = names[0], names[-1]
    data = bytearray(cache.read_bytes(bad))
    data[len(data) // 2] ^= 0xFF
    cache.local_path(bad).write_bytes(bytes(data))
    cache.remove(gone)
    lines.clear()
    assert local_shards(shards, say=lines.append) == cache.uri()
    assert lines[0].startswith(f"shard cache: {cache.uri(bad)} does not match the sha256")
    assert lines[-1].endswith("2 downloaded)") and len(lines) == 2
    assert {n: sha256_of(cache, n) for n in names} == want
    check_shards(cache.uri())  # the whole copy is valid again, tokens included

    # nothing to do on a clean cache
    lines.clear()
    local_shards(shards, say=lines.append)
    assert lines == [f"shard cache: {shards} → {cache.uri()} ({len(names)} files verified by sha256, 0 downloaded)"]

    # an object corrupted in the bucket itself is refused, and nothing lands in the cache
    remote = Storage(shards)
    data = bytearray(remote.read_bytes(bad))
    data[len(data) // 2] ^= 0xFF
    remote.write_bytes(bad, bytes(data))
    cache.remove(bad)
    with pytest.raises(ShardError, match=rf"{remote.uri(bad)}: sha256 [0-9a-f]{{64}} differs from "
                                         rf"{remote.uri('manifest.json')}"):
        local_shards(shards, say=lines.append)
    assert not cache.exists(bad) and cache.list("", suffix=".parquet") == [n for n in names if n != bad]
    assert not [p for p in cache.local_path().iterdir() if p.name.startswith(".")]  # no temp left
