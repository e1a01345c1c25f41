"""bench/train_vs_nanogpt.py: both programs see the same tokens, and the benchmark runs end to end.

The timing itself is not asserted (a speed goal belongs in bench/README.md, not in a unit test);
the run uses a tiny shape (~15 s). Skips when nanoGPT's reference copy (../shared/ref/nanoGPT)
is absent.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from webmill.tokenize.shards import check_shards, load_shard

ROOT = Path(__file__).resolve().parents[1]
NANOGPT = ROOT.parent / "shared" / "ref" / "nanoGPT"

pytestmark = pytest.mark.skipif(not (NANOGPT / "train.py").is_file(), reason=f"{NANOGPT} not present")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_train_vs_nanogpt", ROOT / "bench" / "train_vs_nanogpt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_same_tokens_on_both_sides(tmp_path):
    bench = _bench()
    shards, nano = bench.make_data(tmp_path, 4096, 50_000, 5_000, seed=3)
    manifest = check_shards(shards)
    assert manifest["tokenizer"]["vocab_size"] == 4096
    for split in ("train", "val"):
        files = [e["path"] for e in manifest["files"] if e["split"] == split]  # written order
        webmill = np.concatenate([load_shard(shards / f)[0] for f in files]).astype(np.int64)
        nanogpt = np.fromfile(nano / "data" / "bench" / f"{split}.bin", dtype=np.uint16).astype(np.int64)
        assert len(webmill) >= (50_000 if split == "train" else 5_000)
        np.testing.assert_array_equal(webmill, nanogpt)  # same ids, same order, EOT included
        assert webmill.max() == 4095 and (webmill == 4095).sum() == manifest["splits"][split]["num_documents"]
    assert pickle.loads((nano / "data" / "bench" / "meta.pkl").read_bytes()) == {"vocab_size": 4096}
    assert (nano / "train.py").read_bytes() == (NANOGPT / "train.py").read_bytes()  # run unchanged


def test_steady_excludes_warmup():
    bench = _bench()
    r = {"t": [0.0, 10.0, 11.0, 12.0, 13.0], "loss": [8.0, 7.9, 7.8, 7.7, 7.6], "ms": [9000, 1000, 1000, 990, 1010]}
    s = bench.steady(r, warmup=1, tokens_per_step=100)
    assert s["tok_s"] == pytest.approx(400 / 13.0)  # steps 2..5 from the arrival of step 1's line
    s = bench.steady(r, warmup=2, tokens_per_step=100)
    assert s["tok_s"] == pytest.approx(300 / 3.0)  # the slow first step left out
    assert s["self_tok_s"] == pytest.approx(100 / 1.0) and s["final_loss"] == 7.6
    with pytest.raises(RuntimeError, match="only 5 step lines"):
        bench.steady(r, warmup=4, tokens_per_step=100)


def test_runs_end_to_end_tiny(tmp_path, capsys):
    bench = _bench()
    out = bench.main(["--pairs", "1", "--steps", "5", "--warmup", "2", "--n-layer", "1", "--n-head", "2",
                      "--n-embd", "32", "--block-size", "32", "--batch", "2", "--train-tokens", "30000",
                      "--threads", "1", "--work", str(tmp_path), "--json", str(tmp_path / "r.json")])
    (row,) = out["pairs"]
    for side in ("webmill", "nanogpt"):
        assert row[side]["steps"] == 5  # every step's line parsed
        assert row[side]["tok_s"] > 0 and row[side]["self_tok_s"] > 0
        assert abs(row[side]["final_loss"] - math.log(4096)) < 0.5  # ~uniform after 5 tiny steps
    assert row["ratio"] == pytest.approx(row["webmill"]["tok_s"] / row["nanogpt"]["tok_s"])
    assert out["machine"]["cores"] >= 1 and out["machine"]["torch"]
    text = capsys.readouterr().out
    assert "| 1 | webmill/nanogpt |" in text and "median webmill/nanoGPT tokens/s" in text
    assert (tmp_path / "r.json").is_file()


def test_lever_switches_run(tmp_path, capsys):
    """--no-heap-reuse and --no-cpu-kernels launch webmill through the patched entry point."""
    bench = _bench()
    out = bench.main(["--pairs", "1", "--steps", "4", "--warmup", "1", "--n-layer", "1", "--n-head", "2",
                      "--n-embd", "32", "--block-size", "32", "--batch", "2", "--train-tokens", "30000",
                      "--threads", "1", "--work", str(tmp_path), "--no-heap-reuse", "--no-cpu-kernels"])
    assert out["pairs"][0]["webmill"]["steps"] == 4
    assert "(heap reuse off) (CPU kernels off)" in capsys.readouterr().out
