"""The dataset report (`curate stats`) and the training report (`train report`).

The module fixture runs the real `curate run` CLI (embedded Ray, dedup, PII, quality on by default,
shards, examples per drop reason) in a subprocess over a few files of examples/warc/ plus a renamed
copy of one of them, so the run has exact duplicates to remove. The slow tests do the same over all of examples/warc/ and train a
real (tiny) model.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from webmill.curate.examples import read_examples
from webmill.curate.report import collect_stats, render_html, s_curve, write_report
from webmill.htmlreport import esc
from webmill.errors import UserError
from webmill.train.report import read_metrics, write_train_report

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-c", "from webmill.curate.cli import main; main()"]
QUALITY_MODEL = ROOT / "webmill" / "assets" / "quality" / "webmill_quality_v1.ftz"
TEST_TOML = f"[extract]\ntimeout_s = 30.0\n[ray]\nnum_workers = 2\n[quality]\nmodel_path = {str(QUALITY_MODEL)!r}\n"
SUBSET = ["cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", "cc_CC-MAIN-2025-33_cdx-toolkit-3records.warc.gz"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def curate(*args: str, check: bool = True, timeout: int = 900, ray_tmp: str | None = None):
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    if ray_tmp:
        env["RAY_TMPDIR"] = ray_tmp
    p = subprocess.run(CURATE + list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"curate {' '.join(args)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def _run_pipeline(base: Path, inputs: Path) -> Path:
    cfg = base / "test.toml"
    cfg.write_text(TEST_TOML)
    out = base / "out"
    ray_tmp = tempfile.mkdtemp(prefix="ray-rep-", dir="/tmp")  # short path: Ray's sockets live there
    try:
        # quality scoring is on by default (buckets mode): no --quality flag
        curate("run", str(inputs), "-o", str(out), "-c", str(cfg), ray_tmp=ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return out


@pytest.fixture(scope="module")
def run_out(tmp_path_factory, examples_warc) -> Path:
    base = tmp_path_factory.mktemp("report")
    inputs = base / "warc"
    inputs.mkdir()
    for name in SUBSET:
        shutil.copy(examples_warc / name, inputs / name)
    shutil.copy(examples_warc / SUBSET[0], inputs / "copy_wet-25docs.warc.wet.gz")
    return _run_pipeline(base, inputs)


def _per_file(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "stats").glob("*.json"))
            if p.name not in ("dedup.json", "final.json", "rephrase.json")]


def _img_srcs(page: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]+)"', page)


def _decode_png(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,"), src[:60]
    im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
    im.load()
    return im


def chromium_check(page: Path, tmp: Path, height: int = 4000) -> tuple[str, np.ndarray]:
    """Load ``page`` in headless Chromium: (data-images-ok attribute after load, screenshot RGB)."""
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--window-size=1280,{height}"]
    shot = tmp / "shot.png"
    p = subprocess.run(common + [f"--user-data-dir={tempfile.mkdtemp(dir=tmp)}", f"--screenshot={shot}",
                                 page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"chromium wrote no screenshot: {p.stderr[-2000:]}"
    dom = subprocess.run(common + [f"--user-data-dir={tempfile.mkdtemp(dir=tmp)}", "--dump-dom",
                                   page.resolve().as_uri()], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'data-images-ok="(\d+)/(\d+)"', dom)
    assert m, f"the page's load script did not run; DOM starts {dom[:300]!r}"
    return m.group(0), np.asarray(Image.open(shot).convert("RGB"))


# ---- dataset report -------------------------------------------------------------------------------

def test_curate_run_writes_report(run_out):
    rep = run_out / "report"
    assert (rep / "report.html").is_file() and (rep / "stats.json").is_file()
    stats = json.loads((rep / "stats.json").read_text())
    assert stats["format"] == "webmill-report-stats" and stats["version"] == 1
    for name in stats["plots"]:
        assert Image.open(rep / name).size[0] > 100
    # a full run (dedup, PII, quality, shards) has every section but rephrasing
    for key in ("funnel", "files", "languages", "domains", "lengths", "dedup", "pii", "quality", "tokens",
                "throughput"):
        assert stats.get(key), key
    assert set(stats["skipped"]) <= {"rephrase"}


def test_stats_json_agrees_with_per_file_stats(run_out):
    stats = json.loads((run_out / "report" / "stats.json").read_text())
    per_file = _per_file(run_out)
    assert len(per_file) == len(SUBSET) + 1 == stats["totals"]["files"]
    t = stats["totals"]
    dropped = Counter()
    for s in per_file:
        assert s["records"] == s["kept"] + sum(s["dropped"].values()) + s["errors"]
        dropped.update(s["dropped"])
    assert t["records"] == sum(s["records"] for s in per_file)
    assert t["kept"] == sum(s["kept"] for s in per_file)
    assert t["errors"] == sum(s["errors"] for s in per_file)
    assert t["dropped"] == dict(dropped) and t["dropped_total"] == sum(dropped.values())
    assert t["records"] == t["kept"] + t["dropped_total"] + t["errors"]
    assert t["characters_kept"] == sum(s["chars"].get("kept", 0) for s in per_file)
    assert {f["stem"]: (f["records"], f["kept"]) for f in stats["files"]} == \
        {s["stem"]: (s["records"], s["kept"]) for s in per_file}

    fun = {r["stage"]: r for r in stats["funnel"]}
    assert fun["records"]["documents_out"] == t["records"]
    for r in stats["funnel"]:  # every document that leaves a stage has a reason
        assert (r["documents_in"] + r.get("added", 0) - r["documents_out"]
                == sum(r["dropped"].values()) + r.get("unexplained", 0))
    assert sum(sum(r["dropped"].values()) + r.get("unexplained", 0) for r in stats["funnel"]
               if r["stage"] not in ("dedup", "pii_quality", "shards")) == t["dropped_total"] + t["errors"]
    for stage in ("html_or_wet", "url_filter", "extract", "language", "fineweb"):
        assert fun[stage]["documents_out"] == sum(s["stages"].get(stage, 0) for s in per_file)

    # the document table holds exactly the kept documents and characters
    docs = [pq.read_table(p) for p in sorted((run_out / "documents").glob("*.parquet"))]
    assert fun["documents"]["documents_out"] == t["kept"] == sum(d.num_rows for d in docs)
    assert fun["documents"]["characters_out"] == t["characters_kept"] == \
        sum(pc.sum(pc.utf8_length(d.column("text"))).as_py() or 0 for d in docs)

    # the renamed copy's documents are all exact duplicates of the original's
    copy = next(s for s in per_file if s["stem"].startswith("copy_"))
    assert copy["kept"] > 0
    d = stats["dedup"]
    assert d["exact_removed"] == copy["kept"] == fun["dedup"]["dropped"]["dedup_exact"]
    assert d["documents_in"] == t["kept"] and d["documents_out"] == t["kept"] - copy["kept"]
    assert d["removed_fraction"] == pytest.approx(copy["kept"] / t["kept"], abs=1e-6)

    # shards: tokens per split and the token-length histogram add up to the manifest
    man = json.loads((run_out / "shards" / "manifest.json").read_text())
    total = sum(v["num_tokens"] for v in man["splits"].values())
    assert stats["tokens"]["total"] == total == fun["shards"]["tokens_out"]
    assert stats["lengths"]["tokens"]["sum"] == total
    assert sum(stats["lengths"]["tokens"]["histogram"]["counts"]) == stats["lengths"]["tokens"]["count"]
    # tokens of the final table = shard tokens minus one EOT per document (no mixing in this run)
    n_docs = sum(v["num_documents"] for v in man["splits"].values())
    assert fun["pii_quality"]["tokens_out"] == total - n_docs
    final_rows = sum(pq.read_metadata(p).num_rows for p in (run_out / "final").glob("*.parquet"))
    assert sum(stats["languages"].values()) == final_rows == stats["lengths"]["characters"]["count"]
    assert stats["domains"]["documents"] <= final_rows
    fin = json.loads((run_out / "stats" / "final.json").read_text())
    assert stats["pii"] == {k: v for k, v in fin["pii_counts"].items()}
    assert sum(stats["quality"]["bucket_sizes"]) == fin["quality"]["documents_in"]


def _final_rows(out: Path) -> list[dict]:
    return [r for p in sorted((out / "final").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_quality_section_by_default_with_buckets_table(run_out):
    from webmill.config import DEFAULTS

    stats = json.loads((run_out / "report" / "stats.json").read_text())
    fin = json.loads((run_out / "stats" / "final.json").read_text())["quality"]
    q = stats["quality"]
    assert q["mode"] == DEFAULTS["quality"]["mode"] == "buckets"  # on by default, nothing dropped
    assert q["documents_in"] == q["documents_out"] > 0 and q["documents_dropped"] == 0
    n_buckets = DEFAULTS["quality"]["n_buckets"]
    rows = q["buckets"]
    assert [r["bucket"] for r in rows] == list(range(n_buckets)) and len(fin["bucket_edges"]) == n_buckets - 1
    final = _final_rows(run_out)
    per_bucket = Counter(r["quality_bucket"] for r in final)
    assert [r["documents"] for r in rows] == [per_bucket.get(k, 0) for k in range(n_buckets)]
    assert sum(r["share_documents"] for r in rows) == pytest.approx(1.0, abs=1e-4)
    for doc in final:  # every score lies within its bucket's edges
        r = rows[doc["quality_bucket"]]
        assert r["lower_edge"] is None or doc["quality_score"] >= r["lower_edge"] - 1e-6
        assert r["upper_edge"] is None or doc["quality_score"] < r["upper_edge"] + 1e-6
    if "bucket_words" in fin:  # words per bucket: whitespace words of the final texts
        words = Counter()
        for doc in final:
            words[doc["quality_bucket"]] += len(doc["text"].split())
        assert [r["words"] for r in rows] == [words.get(k, 0) for k in range(n_buckets)]
    html = (run_out / "report" / "report.html").read_text()
    quality = html[html.index('<h2 id="quality">'):html.index("<h2", html.index('<h2 id="quality">') + 5)]
    assert "mode <b>buckets</b>" in quality and "0 dropped" in quality and "lower edge" in quality
    assert quality.count("<tr>") == n_buckets + 1 and "Skipped" not in quality


def test_examples_section_lists_reasons_with_examples(run_out):
    stats = json.loads((run_out / "report" / "stats.json").read_text())
    dropped = Counter()
    for s in _per_file(run_out):
        dropped.update({k: v for k, v in s["dropped"].items() if v})
    listing = {r["reason"]: r for r in stats["drop_reasons"]}
    assert all(listing[k]["dropped"] == n for k, n in dropped.items())
    ex = stats["examples"]
    assert len(ex) >= 3 and list(ex) == [r["reason"] for r in stats["drop_reasons"] if r["reason"] in ex]
    table = read_examples(run_out, n=3)
    full = {(r["reason"], r["id"]): r for r in table.to_pylist()}
    for reason, docs in ex.items():
        assert 1 <= len(docs) == listing[reason]["examples"] <= 3
        assert docs[0]["stage"] == listing[reason]["stage"]
        assert [d["id"] for d in docs] == [i for (r, i) in full if r == reason]
        for d in docs:
            assert d["text"] == full[(reason, d["id"])]["text"][:300] and d["n_chars"] >= len(d["text"])
        if reason in dropped:
            assert len(docs) <= dropped[reason]
    html = (run_out / "report" / "report.html").read_text()
    part = html[html.index('<h2 id="examples">'):html.index('<h2 id="files">')]
    assert part.count("<details") == len(ex) and part.count("<details open>") == 1
    for reason, docs in ex.items():
        assert f"<summary><b>{esc(reason)}</b>" in part
        assert all(esc(d["url"] or d["id"]) in part for d in docs)


def test_examples_and_quality_are_escaped(run_out):
    stats = json.loads((run_out / "report" / "stats.json").read_text())
    reason = next(iter(stats["examples"]))
    stats["examples"][reason][0].update(url='https://x.test/?a=1&b=<i>"', text="<script>alert(1)</script> & more",
                                        drop_detail='ratio < 0.12 & "x"')
    stats["quality"]["model_path"] = "/m/<model>.bin"
    html = render_html(stats, {})
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "https://x.test/?a=1&amp;b=&lt;i&gt;&quot;" in html and "ratio &lt; 0.12 &amp; &quot;x&quot;" in html
    assert "/m/&lt;model&gt;.bin" in html and not re.search(r'href="https://x\.test', html)


def test_old_run_without_examples_or_quality(run_out, tmp_path):
    from webmill.curate.report.examples_section import NO_EXAMPLES
    from webmill.curate.report.quality_section import NO_QUALITY

    out = tmp_path / "out"
    shutil.copytree(run_out, out, ignore=shutil.ignore_patterns("examples", "report"))
    fin = json.loads((out / "stats" / "final.json").read_text())
    del fin["quality"]
    (out / "stats" / "final.json").write_text(json.dumps(fin))
    html = write_report(out).read_text()
    stats = json.loads((out / "report" / "stats.json").read_text())
    assert "examples" not in stats and stats["skipped"]["examples"] == NO_EXAMPLES
    assert "quality" not in stats and stats["skipped"]["quality"] == NO_QUALITY
    assert all(r["examples"] == 0 for r in stats["drop_reasons"]) and stats["drop_reasons"]
    assert '<h2 id="quality">Quality</h2><p class="note">Skipped: quality scoring did not run' in html
    assert "Skipped: the run kept no examples" in html and "<details" not in html


def test_s_curve_matches_dedup_stats(run_out):
    d = json.loads((run_out / "stats" / "dedup.json").read_text())["minhash"]
    for j, p in d["s_curve"].items():
        assert s_curve(np.array([float(j)]), d["bands"], d["rows"])[0] == pytest.approx(p, abs=1e-6)
    assert s_curve(np.array([0.8]), 14, 8)[0] == pytest.approx(0.9235, abs=1e-3)  # FineWeb's setting


def test_html_is_self_contained_and_images_decode(run_out):
    page = (run_out / "report" / "report.html").read_text()
    stats = json.loads((run_out / "report" / "stats.json").read_text())
    srcs = _img_srcs(page)
    assert len(srcs) == len(stats["plots"]) >= 9
    for src in srcs:
        im = _decode_png(src)
        assert im.size[0] > 100 and im.size[1] > 50
        assert np.asarray(im.convert("L")).std() > 5  # a plot, not an empty canvas
    assert not re.search(r'(src|href)="(https?:|//)', page)  # opens offline
    for word in ("Funnel", "Examples per drop reason", "Input files", "Languages", "Registered domains",
                 "Document length", "Quality", "Deduplication", "PII", "Token shards", "Throughput"):
        assert word in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_out, tmp_path):
    page = run_out / "report" / "report.html"
    n = len(_img_srcs(page.read_text()))
    images_ok, rgb = chromium_check(page, tmp_path)
    assert images_ok == f'data-images-ok="{n}/{n}"'
    gray = rgb.mean(axis=2)
    assert gray.std() > 20  # not a blank page
    assert (gray < 200).mean() > 0.02  # text, tables and bars are drawn


def test_sections_skipped_when_global_steps_absent(run_out, tmp_path):
    # what a `curate run --no-dedup --no-pii --no-tokenize` leaves: per-file stats and documents only
    out = tmp_path / "out"
    shutil.copytree(run_out, out, ignore=shutil.ignore_patterns("deduped", "final", "shards", "report",
                                                                 "dedup.json", "final.json"))
    page = write_report(out)
    stats = json.loads((out / "report" / "stats.json").read_text())
    full = json.loads((run_out / "report" / "stats.json").read_text())
    assert stats["totals"] == full["totals"]
    for key in ("dedup", "pii", "quality", "tokens"):
        assert key not in stats and key in stats["skipped"]
    assert "tokens" not in stats["lengths"] and stats["documents_table"] == "documents"
    assert [r["stage"] for r in stats["funnel"]][-1] == "documents"
    html = page.read_text()
    assert "Skipped: no OUT/stats/dedup.json" in html
    assert len(_img_srcs(html)) == len(stats["plots"]) and not (out / "report" / "dedup.png").exists()


def test_failed_inputs_and_rephrase_sections(run_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run_out, out, ignore=shutil.ignore_patterns("report"))
    with open(out / "failed.jsonl", "w") as f:
        f.write(json.dumps({"input": "s3://bucket/broken.warc.gz", "reason": "OSError: <truncated gzip>"}) + "\n")
    n = json.loads((run_out / "stats" / "final.json").read_text())["documents_out"]
    # keys as webmill.curate.rephrase.Rephraser.summary writes them
    (out / "stats" / "rephrase.json").write_text(json.dumps({
        "backend": "llama_cpp", "model": "gemma-3-270m", "documents_in": n, "documents_sampled": 3,
        "documents_out": n + 2, "synthetic_documents": 2, "rephrase_failed": 1, "rephrase_rejected": 0,
        "by_style": {"qa": {"requested": 2, "rephrased": 1, "rejected": 0, "failed": 1},
                     "wikipedia": {"requested": 1, "rephrased": 1, "rejected": 0, "failed": 0}}}))
    page = write_report(out).read_text()
    stats = json.loads((out / "report" / "stats.json").read_text())
    assert stats["failed"] == [{"input": "s3://bucket/broken.warc.gz", "reason": "OSError: <truncated gzip>"}]
    assert "s3://bucket/broken.warc.gz" in page and "&lt;truncated gzip&gt;" in page
    assert stats["rephrase"]["by_style"]["qa"] == {"requested": 2, "rephrased": 1, "rejected": 0, "failed": 1}
    row = next(r for r in stats["funnel"] if r["stage"] == "rephrase")
    assert (row["documents_in"], row["documents_out"], row["added"]) == (n, n + 2, 2)
    assert "unexplained" not in row and "rephrase.png" in stats["plots"]
    assert "wikipedia" in page and "rephrase" not in stats["skipped"]


def test_bad_inputs_raise_user_errors(run_out, tmp_path):
    with pytest.raises(UserError, match="no stats/ directory"):
        write_report(tmp_path)
    (tmp_path / "stats").mkdir()
    with pytest.raises(UserError, match="holds no per-file stats"):
        write_report(tmp_path)
    out = tmp_path / "out"
    shutil.copytree(run_out, out, ignore=shutil.ignore_patterns("report", "deduped", "final", "shards"))
    bad = next(p for p in (out / "stats").glob("*.json") if p.name != "dedup.json")
    bad.write_text("{not json")
    with pytest.raises(UserError, match=re.escape(bad.name)):
        write_report(out)
    p = curate("stats", str(tmp_path / "missing"), check=False, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: ") and "missing" in p.stderr


# ---- the run's own tokenizer, the stage registry, OUT on an fsspec filesystem ----------------------

BPE_VOCAB = 400


@pytest.fixture(scope="module")
def bpe_run_out(run_out, tmp_path_factory) -> Path:
    """``run_out`` re-tokenized the way `curate run` does with ``tokenizer = "bpe:400"``: a BPE
    trained on OUT/final into OUT/tokenizer, then shards written with that directory (which the
    shards step copies to OUT/shards/tokenizer, manifest ``tokenizer.path = "tokenizer"``)."""
    from webmill.tokenize.bpe import iter_texts, train_tokenizer
    from webmill.tokenize.dataset import tokenize_dataset

    out = tmp_path_factory.mktemp("report-bpe") / "out"
    shutil.copytree(run_out, out, ignore=shutil.ignore_patterns("shards", "report"))
    train_tokenizer(iter_texts(out / "final"), BPE_VOCAB, out / "tokenizer", name=f"webmill-bpe-{BPE_VOCAB}")
    tokenize_dataset(out / "final", out / "shards", tokenizer=str(out / "tokenizer"), shard_tokens=100_000,
                     val_fraction=0.1, seed=0)
    return out


def _tokens_of(table_dir: Path, tokenizer_dir: Path) -> int:
    from webmill.tokenize.encoding import get_encoding

    enc = get_encoding(str(tokenizer_dir))
    texts = [t for p in sorted(table_dir.glob("*.parquet")) for t in pq.read_table(p).column("text").to_pylist()]
    return sum(len(x) for x in enc.encode_ordinary_batch(texts))


def test_report_counts_tokens_with_the_runs_trained_tokenizer(bpe_run_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(bpe_run_out, out)
    man = json.loads((out / "shards" / "manifest.json").read_text())
    assert man["tokenizer"]["name"] == f"webmill-bpe-{BPE_VOCAB}" and man["tokenizer"]["path"] == "tokenizer"
    write_report(out)
    stats = json.loads((out / "report" / "stats.json").read_text())
    assert "tokens_per_stage" not in stats["skipped"]
    fun = {r["stage"]: r for r in stats["funnel"]}
    total = sum(v["num_tokens"] for v in man["splits"].values())
    n_docs = sum(v["num_documents"] for v in man["splits"].values())
    assert stats["tokens"]["tokenizer"] == f"webmill-bpe-{BPE_VOCAB}" and stats["tokens"]["total"] == total
    # counted with the BPE of the run: the final table's tokens plus one EOT per document are the shards'
    assert fun["pii_quality"]["tokens_out"] == total - n_docs == _tokens_of(out / "final", out / "tokenizer")
    assert fun["documents"]["tokens_out"] == _tokens_of(out / "documents", out / "shards" / "tokenizer")
    # without the copy in the shards, OUT/tokenizer (where `curate run` trains it) is used
    shutil.rmtree(out / "shards" / "tokenizer")
    assert collect_stats(out)["funnel"] == stats["funnel"]
    # a tokenizer whose ranks differ from the manifest's ranks_sha256 is not used
    from webmill.tokenize.bpe import iter_texts, train_tokenizer

    shutil.rmtree(out / "tokenizer")
    train_tokenizer(iter_texts(out / "final"), 300, out / "tokenizer", name=f"webmill-bpe-{BPE_VOCAB}")
    other = collect_stats(out)
    assert f"tokenizer 'webmill-bpe-{BPE_VOCAB}' of the shards cannot be loaded" in other["skipped"]["tokens_per_stage"]
    assert {r["stage"]: r.get("tokens_out") for r in other["funnel"]}["pii_quality"] is None


def test_drop_reasons_map_to_registry_stages(run_out):
    from webmill.curate.funnel import collect_funnel
    from webmill.curate.stages import DOCUMENT_STAGES, GLOBAL_STEPS, STAGES, reason_stage

    stats = json.loads((run_out / "report" / "stats.json").read_text())
    names = [r["stage"] for r in stats["funnel"]]
    registry = ["records"] + [s.name for s in DOCUMENT_STAGES] + ["documents"] + [s.name for s in GLOBAL_STEPS]
    assert names == [n for n in registry if n in names]  # registry order
    assert names == [n for n, _ in collect_funnel(run_out)["stages"]]
    assert {"records", "html_or_wet", "documents", "dedup", "pii_quality", "shards"} <= set(names)
    per_doc = [r for r in stats["funnel"] if r["stage"] in STAGES]
    assert sum(len(r["dropped"]) for r in per_doc) > 3
    for r in per_doc:  # every reason sits under the stage the registry names for it
        assert all(reason_stage(k) == r["stage"] for k in r["dropped"]), r
    assert reason_stage("gopher_rep_top_2_gram") == "gopher_repetition" != reason_stage("gopher_short_doc")


def test_rephrase_stats_give_a_funnel_row(run_out, tmp_path):
    from webmill.curate.funnel import collect_funnel

    out = tmp_path / "out"
    shutil.copytree(run_out, out, ignore=shutil.ignore_patterns("report"))
    before = collect_funnel(out)["stages"]
    n = json.loads((out / "stats" / "final.json").read_text())["documents_out"]
    (out / "stats" / "rephrase.json").write_text(json.dumps({"documents_in": n, "documents_out": n + 3,
                                                             "synthetic_documents": 3}))
    after = collect_funnel(out)["stages"]
    at = [s for s, _ in before].index("shards")
    assert after == before[:at] + [("rephrase", n + 3)] + before[at:]


def test_report_with_out_on_memory_filesystem(bpe_run_out):
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/webmill-report-test-{os.getpid()}"
    url = f"memory://{root}"
    fs.put(str(bpe_run_out), root, recursive=True)
    try:
        fs.pipe_file(f"{root}/report/old_plot.png", b"stale")  # a plot an earlier run drew
        fs.pipe_file(f"{root}/report/.stats.json.webmill-tmp-1-0abc", b"{")  # a killed writer's temp
        page = write_report(url)
        assert page == f"{url}/report/report.html"
        names = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/report", detail=False)}
        stats = json.loads(fs.cat_file(f"{root}/report/stats.json"))
        assert names == {"report.html", "stats.json", *stats["plots"]} and len(stats["plots"]) >= 9
        assert stats["out"] == url and "tokens_per_stage" not in stats["skipped"]  # tokenizer read from memory
        local = collect_stats(bpe_run_out)
        for key in ("totals", "files", "funnel", "languages", "domains", "lengths", "dedup", "pii", "quality",
                    "tokens", "throughput", "skipped"):
            assert stats[key] == json.loads(json.dumps(local[key])), key
        html = fs.cat_file(f"{root}/report/report.html").decode()
        assert len(_img_srcs(html)) == len(stats["plots"]) and all(_decode_png(s).size[0] > 100
                                                                   for s in _img_srcs(html))
        assert not (Path(url).exists() or Path("memory:").exists())  # nothing written to a local folder
    finally:
        fs.rm(root, recursive=True)


# ---- training report ------------------------------------------------------------------------------

def _write_metrics(run: Path, steps: int = 40) -> None:
    """metrics.jsonl records with the keys webmill.train.loop writes (train / val / sample)."""
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(steps + 1):
            if step % 10 == 0:
                f.write(json.dumps({"type": "val", "step": step, "val_loss": 8.0 - 0.1 * step, "val_tokens": 512}) + "\n")
                f.write(json.dumps({"type": "sample", "step": step, "prompt": "Hello", "text": f"<b>{step}</b>"}) + "\n")
            if step < steps:
                f.write(json.dumps({"type": "train", "step": step + 1, "loss": 9.0 - 0.1 * step,
                                    "lr": 1e-3 * min(1, (step + 1) / 5), "grad_norm": 1.0, "ms": 50.0,
                                    "tokens_per_s": 1000.0 + step, "mfu": 0.0, "tokens": (step + 1) * 64}) + "\n")


def test_train_report_curves_and_summary(tmp_path):
    run = tmp_path / "run"
    _write_metrics(run)
    page = write_train_report(run)
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["train_steps"] == 40 and summary["last_step"] == 40
    assert summary["last_loss"] == pytest.approx(9.0 - 3.9)
    assert summary["best_val_loss"] == pytest.approx(4.0) and summary["best_val_step"] == 40
    assert summary["median_tokens_per_s"] == pytest.approx(np.median(1000.0 + np.arange(1, 40)))
    assert summary["tokens_seen"] == 40 * 64
    html = page.read_text()
    srcs = _img_srcs(html)
    assert len(srcs) == 4 and all(_decode_png(s).size[0] > 100 for s in srcs)
    assert {p.name for p in (run / "report").glob("*.png")} == {"loss.png", "lr.png", "throughput.png",
                                                                  "grad_norm.png"}
    assert "&lt;b&gt;40&lt;/b&gt;" in html  # samples are escaped


def test_train_metrics_resume_and_bad_lines(tmp_path):
    run = tmp_path / "run"
    _write_metrics(run, steps=5)
    with open(run / "metrics.jsonl", "a") as f:  # a resumed run re-logs step 5, then dies mid-line
        f.write(json.dumps({"type": "train", "step": 5, "loss": 1.5, "lr": 1e-3, "tokens_per_s": 7.0}) + "\n")
        f.write('{"type": "train", "st')
    m = read_metrics(run)
    assert [r["step"] for r in m["train"]] == [1, 2, 3, 4, 5] and m["train"][-1]["loss"] == 1.5
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(2, "garbage")
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"metrics.jsonl line 3"):
        write_train_report(run)
    with pytest.raises(UserError, match="metrics.jsonl not found"):
        write_train_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="no train or val records"):
        write_train_report(tmp_path / "empty")


# ---- slow: all of examples/warc, and a real training run -----------------------------------------

@pytest.fixture(scope="module")
def full_run_out(tmp_path_factory, examples_warc) -> Path:
    return _run_pipeline(tmp_path_factory.mktemp("report-full"), examples_warc)


@pytest.mark.slow
def test_full_examples_report(full_run_out, examples_warc, tmp_path):
    stats = json.loads((full_run_out / "report" / "stats.json").read_text())
    per_file = _per_file(full_run_out)
    n_inputs = len([p for p in examples_warc.iterdir() if p.name.endswith((".gz", ".warc", ".arc"))])
    assert stats["totals"]["files"] == len(per_file) == n_inputs
    assert stats["totals"]["records"] == sum(s["records"] for s in per_file)
    assert stats["totals"]["kept"] == sum(s["kept"] for s in per_file)
    assert stats["totals"]["records"] == (stats["totals"]["kept"] + stats["totals"]["dropped_total"]
                                          + stats["totals"]["errors"])
    page = full_run_out / "report" / "report.html"
    if CHROMIUM is not None:
        n = len(_img_srcs(page.read_text()))
        images_ok, rgb = chromium_check(page, tmp_path)
        assert images_ok == f'data-images-ok="{n}/{n}"' and rgb.mean(axis=2).std() > 20


@pytest.mark.slow
def test_train_report_of_a_real_run(run_out, tmp_path):
    from webmill.train.loop import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(shards=str(run_out / "shards"), out=str(run), n_layer=1, n_head=2, n_embd=32,
                      block_size=32, micro_batch=2, max_steps=6, warmup_steps=2, eval_every=3, val_tokens=128,
                      sample_every=3, sample_tokens=4, ckpt_every=0, quiet=True, device="cpu"))
    page = write_train_report(run)
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["train_steps"] == 6 and summary["last_val_loss"] is not None
    assert len(_img_srcs(page.read_text())) == 4
    if CHROMIUM is not None:
        images_ok, _ = chromium_check(page, tmp_path, height=2000)
        assert images_ok == 'data-images-ok="4/4"'
