"""`curate ablate` on the bundled examples/warc.

Slow: two recipes end to end (CLI in a subprocess, real Ray curation with a shared per-document
step, training, evaluation, rerun). Fast (default): everything after curation in-process on real
text of the same archives (two "curated" recipe directories written here: all documents vs the
long ones), plus the pieces: recipes, sharing, hold-out, budget, state checks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from webmill.ablate.heldout import heldout_mask
from webmill.ablate.plan import make_budget, parse_recipes, shared_document_step
from webmill.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-c", "from webmill.curate.cli import main; main()"]
# Generous extraction timeout: the machine is shared, and kept sets must not depend on load.
TEST_TABLES = "[extract]\ntimeout_s = 30.0\n[ray]\nnum_workers = 2\n"
QUALITY = (ROOT / "examples/ablate/quality.toml").read_text()
TINY = ["--tokens", "10000", "--n-layer", "2", "--n-head", "2", "--n-embd", "64", "--block-size", "64",
        "--micro-batch", "4", "--eval-points", "2", "--heldout-fraction", "0.2", "--device", "cpu"]


def curate(*args, check=True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1")
    p = subprocess.run(CURATE + list(args), capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"curate {' '.join(args)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


slow = pytest.mark.slow


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, examples_warc):
    base = tmp_path_factory.mktemp("ablate")
    (base / "fineweb.toml").write_text(TEST_TABLES)
    (base / "quality.toml").write_text(TEST_TABLES + QUALITY)
    args = ["ablate", str(examples_warc), "-r", f"fineweb={base / 'fineweb.toml'}",
            "-r", f"quality={base / 'quality.toml'}", "-o", str(base / "abl"), *TINY,
            "--tasks", str(ROOT / "examples/tasks/simple_english.jsonl")]
    first = curate(*args)
    return base, base / "abl", args, first


def _ids(directory: Path) -> set[str]:
    return {i for f in sorted(directory.glob("*.parquet"))
            for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()}


@slow
def test_both_recipes_are_evaluated_on_the_same_eval_set_at_every_point(ablation):
    _, abl, _, first = ablation
    res = json.loads((abl / "results.json").read_text())
    assert [r["name"] for r in res["recipes"]] == ["fineweb", "quality"]
    assert res["budget"]["eval_steps"] == [20, 40] and res["budget"]["max_steps"] == 40
    bytes_seen = set()
    for r in res["recipes"]:
        assert [p["step"] for p in r["evals"]] == [20, 40]
        for p in r["evals"]:
            assert math.isfinite(p["bpb"]) and 0 < p["bpb"] < 20 and math.isfinite(p["loss"])
            assert set(p["tasks"]) == {"simple_english"} and 0 <= p["tasks"]["simple_english"]["acc"] <= 1
            bytes_seen.add(p["eval_bytes"])
        assert r["train_tokens"] > 0 and r["epochs"] == pytest.approx(res["budget"]["train_tokens"] / r["train_tokens"])
        # every checkpoint kept and evaluated once
        assert sorted(p.name for p in (abl / "runs" / r["name"] / "checkpoints").glob("step-*.pt")) == \
            ["step-00000020.pt", "step-00000040.pt"]
    assert len(bytes_seen) == 1  # the same eval bytes for both recipes (same text, same tokenizer)
    assert res["eval"]["documents"] >= 1 and res["eval"]["source"] == "heldout"
    # quality filtering keeps fewer documents than FineWeb alone
    assert res["recipes"][1]["documents"] < res["recipes"][0]["documents"]
    assert "bpb" in first.stdout and "report:" in first.stdout


@slow
def test_heldout_ids_are_in_the_eval_set_and_in_no_recipe_training_data(ablation):
    _, abl, _, _ = ablation
    eval_ids = set(pq.read_table(abl / "eval" / "heldout.parquet").column("id").to_pylist())
    assert eval_ids and heldout_mask(sorted(eval_ids), 0.2).all()
    for name in ("fineweb", "quality"):
        rdir = abl / "recipes" / name
        final = _ids(rdir / "final")
        train = _ids(rdir / "train_docs")
        shard_ids = _ids(rdir / "shards")
        assert eval_ids <= final  # kept by every recipe
        assert not eval_ids & train and not eval_ids & shard_ids
        held = {i for i in final if heldout_mask([i], 0.2)[0]}
        assert train == final - held and shard_ids == train


@slow
def test_the_per_document_step_ran_once_and_was_shared(ablation):
    _, abl, _, first = ablation
    assert first.stderr.count("per-document step over") == 1
    assert "[quality] per-document step shared with fineweb" in first.stderr
    res = json.loads((abl / "results.json").read_text())
    assert {r["name"]: r["shared_document_step_with"] for r in res["recipes"]} == {"fineweb": "fineweb",
                                                                                 "quality": "fineweb"}
    a, b = abl / "recipes" / "fineweb", abl / "recipes" / "quality"
    docs = sorted(p.name for p in (a / "documents").glob("*.parquet"))
    assert docs and docs == sorted(p.name for p in (b / "documents").glob("*.parquet"))
    assert all((a / "documents" / n).read_bytes() == (b / "documents" / n).read_bytes() for n in docs)
    for m in (b / "markers").glob("*.done"):
        assert json.loads(m.read_text())["shared_from"] == "fineweb"
    # the global steps ran per recipe: quality's final set is its own
    assert _ids(b / "final") < _ids(a / "final")


@slow
def test_report_names_both_recipes(ablation):
    _, abl, _, _ = ablation
    html = (abl / "report.html").read_text()
    assert "fineweb" in html and "quality" in html and html.count("data:image/png;base64,") == 2
    assert "bits per byte" in html


@slow
def test_rerun_does_no_new_work_and_writes_the_same_results(ablation):
    _, abl, args, _ = ablation
    watched = [p for p in abl.rglob("*") if p.is_file() and p.name != "ablation.json"
               and "logs" not in p.relative_to(abl).parts]
    before = {p: p.stat().st_mtime_ns for p in watched}
    results = (abl / "results.json").read_bytes()
    again = curate(*args)
    assert "training" not in again.stderr and "per-document step" not in again.stderr
    assert (abl / "results.json").read_bytes() == results
    changed = [str(p.relative_to(abl)) for p in watched if p.stat().st_mtime_ns != before[p]]
    assert sorted(changed) == ["report.html", "results.json"]  # rewritten with the same content


@slow
def test_changed_recipe_config_or_settings_are_refused(ablation):
    base, abl, args, _ = ablation
    changed = base / "quality2.toml"
    changed.write_text(TEST_TABLES + "[quality]\nmode = \"top_fraction\"\ntop_fraction = 0.3\n")
    bad = [a if not a.startswith("quality=") else f"quality={changed}" for a in args]
    p = curate(*bad, check=False)
    assert p.returncode == 2 and "recipe 'quality'" in p.stderr and "--force" in p.stderr
    bad = [a if a != "10000" else "20000" for a in args]
    p = curate(*bad, check=False)
    assert p.returncode == 2 and "tokens" in p.stderr and "--force" in p.stderr


# ---- the pieces (fast) ---------------------------------------------------------------------------


@pytest.mark.parametrize("specs, message", [
    (["fineweb=examples/fineweb.toml"], "at least twice"),
    (["fineweb=examples/fineweb.toml", "examples/ablate/quality.toml"], "NAME=CONFIG.toml"),
    (["fineweb=examples/fineweb.toml", "Quality=examples/ablate/quality.toml"], "a-z, 0-9"),
    (["a=examples/fineweb.toml", "a=examples/ablate/quality.toml"], "given twice"),
    (["a=examples/fineweb.toml", "b=examples/missing.toml"], "missing.toml"),
])
def test_bad_recipe_flags_are_user_errors(specs, message):
    with pytest.raises(UserError, match=message):
        parse_recipes(specs)


def test_bad_recipe_on_the_command_line_exits_2():
    p = curate("ablate", "examples/warc", "-r", "fineweb=examples/fineweb.toml", "-r", "bad name=x.toml",
               "-o", "/tmp/never-written", "--tokens", "100", check=False)
    assert p.returncode == 2 and "-r 'bad name=x.toml'" in p.stderr and not Path("/tmp/never-written").exists()


def test_sharing_follows_the_per_document_tables():
    recipes = parse_recipes(["fineweb=examples/fineweb.toml", "quality=examples/ablate/quality.toml",
                             "nogq=examples/ablate/no_gopher_quality.toml"])
    # fineweb.toml lists every default; quality.toml only its [quality] table: same per-document step
    assert shared_document_step(recipes) == {"fineweb": "fineweb", "quality": "fineweb", "nogq": "nogq"}
    assert len({r.config_hash for r in recipes}) == 3


def test_heldout_is_a_stable_hash_of_the_id():
    ids = [f"<urn:uuid:{i:08d}>" for i in range(20000)]
    m = heldout_mask(ids, 0.1)
    assert abs(m.mean() - 0.1) < 0.01
    assert (heldout_mask(list(reversed(ids)), 0.1)[::-1] == m).all()  # per id, not per position
    assert (heldout_mask(ids, 0.2) | ~m).all()  # a larger fraction holds out a superset
    with pytest.raises(UserError, match="--heldout-fraction"):
        heldout_mask(ids, 1.0)


def test_budget_rounds_up_to_evenly_spaced_checkpoints():
    b = make_budget(10000, 4, 64, 2)
    assert (b.tokens_per_step, b.max_steps, b.ckpt_every, b.eval_steps) == (256, 40, 20, [20, 40])
    b = make_budget(1000, 8, 256, 4)
    assert b.max_steps == 4 and b.eval_steps == [1, 2, 3, 4] and b.train_tokens == 8192
    with pytest.raises(UserError, match="--eval-points"):
        make_budget(1000, 8, 256, 0)


# ---- after curation, in-process on real text (fast) --------------------------------------------------


def _curated(abl: Path, rows: list) -> None:
    """Write two "curated" recipes into ``abl``: all = every row, long = rows of ≥ 2000 chars."""
    import pyarrow as pa

    from webmill.ablate.run import CURATED

    for name, keep in (("all", rows), ("long", [r for r in rows if len(r[2]) >= 2000])):
        d = abl / "recipes" / name
        (d / "final").mkdir(parents=True)
        t = pa.table({"id": [r[1] for r in keep], "url": [f"https://example.com/{i}" for i in range(len(keep))],
                      "text": [r[2] for r in keep]})
        pq.write_table(t, d / "final" / "part.parquet")
        (d / CURATED).write_text(json.dumps({"final_subdir": "final", "shared_from": name, "seconds": 0}))


@pytest.fixture(scope="module")
def rows(examples_warc):
    from warc_texts import shared_rows

    return [r for r in shared_rows(examples_warc, min_chars=500) if len(r[2]) <= 20000][:120]


@pytest.fixture(scope="module")
def posted(tmp_path_factory, rows):
    """An ablation whose two recipes are already "curated" (final/ + ablate-curated.json written
    here from real text of examples/warc), run in-process with a tiny model."""
    import torch

    from webmill.ablate.run import run_ablation

    abl = tmp_path_factory.mktemp("posted") / "abl"
    recipes = parse_recipes(["all=examples/fineweb.toml", "long=examples/ablate/quality.toml"])
    _curated(abl, rows)
    lines: list[str] = []
    kwargs = dict(tokens=3000, n_layer=1, n_head=2, n_embd=32, block_size=64, micro_batch=4, eval_points=2,
                  heldout_fraction=0.15, eval_bytes=12000, device="cpu",
                  tasks=[str(ROOT / "examples/tasks/simple_english.jsonl")],
                  echo=lines.append)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_ablation([str(ROOT / "examples/warc")], abl, recipes, **kwargs)
        yield abl, recipes, kwargs, res, lines, rows
    finally:
        torch.set_num_threads(threads)


def test_after_curation_both_recipes_are_scored_on_the_same_heldout_text(posted):
    abl, _, _, res, lines, rows = posted
    assert res["budget"] == {"tokens": 3000, "tokens_per_step": 256, "max_steps": 12, "ckpt_every": 6,
                             "eval_steps": [6, 12], "train_tokens": 3072}
    eval_ids = pq.read_table(abl / "eval" / "heldout.parquet").column("id").to_pylist()
    long_ids = {r[1] for r in rows if len(r[2]) >= 2000}
    held = {r[1] for r in rows if heldout_mask([r[1]], 0.15)[0]}
    common = sorted(held & long_ids)  # held out AND kept by every recipe, in id order
    text = {r[1]: r[2] for r in rows}
    sizes = np.cumsum([len(text[i].encode()) for i in common])
    assert len(common) >= 2 and eval_ids == common[:max(1, int((sizes <= 12000).sum()))]  # up to --eval-bytes
    assert res["eval"]["documents"] == len(eval_ids) and res["eval"]["documents_available"] == len(common)
    assert res["eval"]["bytes"] == sum(len(r[2].encode()) for r in rows if r[1] in set(eval_ids))
    for r in res["recipes"]:
        shard_ids = _ids(abl / "recipes" / r["name"] / "shards")
        final = _ids(abl / "recipes" / r["name"] / "final")
        assert not shard_ids & held and r["heldout_documents"] == len(held & final)
        assert [p["step"] for p in r["evals"]] == [6, 12]
        assert all(math.isfinite(p["bpb"]) for p in r["evals"])
        assert r["evals"][-1]["loss"] < r["evals"][0]["loss"]  # it learns
        assert {p["eval_bytes"] for p in r["evals"]} == {res["recipes"][0]["evals"][0]["eval_bytes"]}
    assert [row["name"] for row in res["table"]] == ["all", "long"]
    assert res["table"][1]["train_tokens"] < res["table"][0]["train_tokens"]
    html = (abl / "report.html").read_text()
    assert "all" in html and "long" in html and html.count("data:image/png") == 2
    assert json.loads((abl / "results.json").read_text()) == json.loads(json.dumps(res))


def test_after_curation_a_rerun_does_no_new_work(posted):
    from webmill.ablate.run import run_ablation

    abl, recipes, kwargs, res, _, _ = posted
    watched = {p: p.stat().st_mtime_ns for p in abl.rglob("*") if p.is_file()
               and p.name not in ("ablation.json", "results.json", "report.html")}
    before = (abl / "results.json").read_bytes()
    lines: list[str] = []
    again = run_ablation([str(ROOT / "examples/warc")], abl, recipes, **{**kwargs, "echo": lines.append})
    assert again == res and (abl / "results.json").read_bytes() == before
    assert not [ln for ln in lines if "training" in ln or "step " in ln]
    assert [str(p) for p, t in watched.items() if p.stat().st_mtime_ns != t] == []


def test_after_curation_changed_settings_are_refused_before_any_work(posted):
    from webmill.ablate.run import run_ablation

    abl, recipes, kwargs, _, _, _ = posted
    with pytest.raises(UserError, match=r"other settings \(seed\).*--force"):
        run_ablation([str(ROOT / "examples/warc")], abl, recipes, **{**kwargs, "seed": 7})
    other = parse_recipes(["all=examples/fineweb.toml", "long=examples/ablate/no_gopher_quality.toml"])
    with pytest.raises(UserError, match="recipe 'long'.*another config"):
        run_ablation([str(ROOT / "examples/warc")], abl, other, **kwargs)


def test_eval_text_replaces_the_holdout_and_bpb_spans_tokenizers(tmp_path, rows):
    import torch

    from webmill.ablate.run import run_ablation

    abl = tmp_path / "abl"
    _curated(abl, rows)
    text = tmp_path / "eval.jsonl"
    docs = [r[2] for r in rows[-3:]]
    text.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    bpe = tmp_path / "bpe.toml"  # a recipe with its own tokenizer, trained on its training text
    bpe.write_text('[tokenize]\ntokenizer = "bpe:512"\n')
    recipes = parse_recipes(["all=examples/fineweb.toml", f"long={bpe}"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_ablation([str(ROOT / "examples/warc")], abl, recipes, tokens=256, n_layer=1, n_head=2, n_embd=32,
                           block_size=64, micro_batch=4, eval_points=1, eval_text=[str(text)], device="cpu",
                           echo=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    assert res["eval"]["source"] == "text" and res["eval"]["documents"] == 3
    assert res["eval"]["bytes"] == sum(len(d.encode()) for d in docs)
    assert not (abl / "eval" / "heldout.parquet").exists()
    for r in res["recipes"]:
        assert r["heldout_documents"] == 0 and r["train_documents"] == r["documents"]
        assert [p["step"] for p in r["evals"]] == [1] and math.isfinite(r["evals"][0]["bpb"])
    a, b = (r["evals"][0] for r in res["recipes"])
    assert [r["tokenizer"] for r in res["recipes"]] == ["cl100k_base", "webmill-bpe-512"]
    assert b["eval_tokens"] > 2 * a["eval_tokens"]  # a 512-token vocabulary cuts the text finer
    # the same text: the bytes differ only by the first token's, which is not predicted
    assert 0 <= res["eval"]["bytes"] - a["eval_bytes"] <= 16 and 0 <= res["eval"]["bytes"] - b["eval_bytes"] <= 16


def test_an_empty_intersection_says_what_to_do(tmp_path):
    import pyarrow as pa

    from webmill.ablate.heldout import write_eval_set

    def table(ids):
        return pa.table({"id": ids, "url": ["u"] * len(ids), "text": ["some text"] * len(ids)})

    with pytest.raises(UserError, match="raise --heldout-fraction or pass --eval-text"):
        write_eval_set(tmp_path, {"a": table(["1", "2"]), "b": table(["3"])})
    assert not (tmp_path / "eval").exists()
