"""End-to-end `curate run` on a real embedded Ray over real archives (CLI in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from webmill.curate.funnel import load_file_stats

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-c", "from webmill.curate.cli import main; main()"]
# Generous extraction timeout: the test machine is shared, and kept sets must not depend on load.
TEST_TOML = "[extract]\ntimeout_s = 30.0\n[ray]\nnum_workers = 2\n"


def curate(*args, check=True, timeout=900) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ADDRESS="")
    env.pop("RAY_ADDRESS")
    p = subprocess.run(CURATE + list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"curate {' '.join(args)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, examples_warc):
    base = tmp_path_factory.mktemp("pipeline")
    cfg = base / "test.toml"
    cfg.write_text(TEST_TOML)
    out = base / "out"
    curate("run", str(examples_warc), "-o", str(out), "-c", str(cfg), "--no-report")
    return out, cfg


def test_outputs_exist(run_dir, examples_warc):
    out, _ = run_dir
    inputs = [p for p in examples_warc.iterdir() if p.name.endswith((".gz", ".warc", ".arc"))]
    assert len(list((out / "documents").glob("*.parquet"))) == len(inputs)
    assert len(list((out / "markers").glob("*.done"))) == len(inputs)
    assert (out / "stats" / "dedup.json").exists()
    assert (out / "stats" / "final.json").exists()
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert manifest["format"] == "webmill-token-shards" and manifest["version"] == 1
    assert manifest["splits"]["train"]["num_documents"] > 10
    assert manifest["splits"]["val"]["num_documents"] >= 1


def test_per_file_accounting(run_dir):
    out, _ = run_dir
    stats = load_file_stats(out)
    assert stats
    for s in stats:
        assert s["records"] == s["kept"] + sum(s["dropped"].values()) + s["errors"], s["stem"]
        t = pq.read_table(out / "documents" / f"{s['stem']}.parquet")
        assert t.num_rows == s["kept"]
    by_stem = {s["stem"]: s for s in stats}
    # single gzip stream files are read in full (SOURCES.md: 25 WET docs, 50 responses)
    assert by_stem["cc_CC-MAIN-2016-50_wet-25docs"]["records"] == 26
    assert by_stem["livefetch_2025_pipestream-sample-malformed"]["records"] == 101
    assert by_stem["cc_CC-MAIN-2016-50_wet-25docs"]["warnings"][0]["kind"] == "single_gzip_stream"
    assert by_stem["wget_2024_researcher-homepages_dolma-sample-0000"]["kept"] >= 10


def test_document_schema_and_languages(run_dir):
    out, _ = run_dir
    t = pq.read_table(sorted((out / "documents").glob("*.parquet")))
    assert t.schema.names[:9] == ["id", "url", "domain", "crawl_date", "source_file", "record_offset",
                                  "text", "language", "language_score"]
    assert set(t.column("language").to_pylist()) == {"en"}
    assert min(t.column("language_score").to_pylist()) >= 0.65
    ids = t.column("id").to_pylist()
    assert len(ids) == len(set(ids))


def test_quality_on_by_default_keeps_the_fineweb_set(run_dir):
    """Issue 19 item 3: the default config scores and buckets every document (buckets mode) and
    drops none: final/ holds exactly the deduplicated documents minus the PII drops."""
    out, _ = run_dir
    fin = json.loads((out / "stats" / "final.json").read_text())
    final = pq.read_table(sorted((out / "final").glob("*.parquet")))
    deduped = pq.read_table(sorted((out / "deduped").glob("*.parquet")), columns=["id"])
    assert {"quality_score", "quality_bucket"} <= set(final.column_names)
    assert fin["quality"]["mode"] == "buckets" and fin["dropped"]["quality"] == 0
    pii_drops = sum(v for k, v in fin["dropped"].items() if k.startswith("pii_"))
    assert final.num_rows == deduped.num_rows - pii_drops == fin["quality"]["documents_out"] > 10
    assert set(final.column("id").to_pylist()) <= set(deduped.column("id").to_pylist())
    assert sum(fin["quality"]["bucket_sizes"]) == final.num_rows
    assert sum(fin["quality"]["bucket_words"]) == sum(len(t.split()) for t in final.column("text").to_pylist())
    # examples of the global steps: one table per file, bounded by [output] examples_per_reason
    for sub in ("dedup", "final"):
        names = sorted(p.name for p in (out / "examples" / sub).glob("*.parquet"))
        assert names == sorted(p.name for p in (out / "deduped").glob("*.parquet"))
    ex = pq.read_table(sorted((out / "examples" / "dedup").glob("*.parquet")))
    removed = json.loads((out / "stats" / "dedup.json").read_text())["documents_removed"]
    assert (ex.num_rows >= 1) == (removed >= 1)  # the bundled sample has no duplicates after filtering
    assert set(ex.column("reason").to_pylist()) <= {"dedup_exact", "dedup_near"}


def test_rerun_reprocesses_only_unmarked_input_with_same_ids(run_dir):
    out, cfg = run_dir
    stem = "wget_2024_researcher-homepages_dolma-sample-0000"
    before = pq.read_table(out / "documents" / f"{stem}.parquet").column("id").to_pylist()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "stats").glob("*.json")}
    (out / "markers" / f"{stem}.done").unlink()
    # --no-quality: quality scoring is on by default (issue 19) and would rewrite final.json
    p = curate("run", "examples/warc", "-o", str(out), "-c", str(cfg), "--no-dedup", "--no-pii",
               "--no-quality", "--no-tokenize", "--no-report")
    assert "skipped 10 inputs" in p.stderr
    changed = {n for n, m in mtimes.items() if (out / "stats" / n).stat().st_mtime_ns != m}
    assert changed == {f"{stem}.json"}
    after = pq.read_table(out / "documents" / f"{stem}.parquet").column("id").to_pylist()
    assert after == before and len(after) >= 10


def test_empty_input_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = curate("run", str(empty), "-o", str(tmp_path / "o"), check=False, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: no WARC/WET/ARC files found")
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("toml,needle", [
    ("[extract]\ntimeout = 3\n", "unknown config key 'extract.timeout'"),
    ("[filters.c4]\nno_such_threshold = 1\n", "unknown config key [filters.c4] 'no_such_threshold'"),
    ("[language]\nthreshold = \"high\"\n", "[language] threshold must be float"),
    ("[extract\n", "cannot parse config"),
])
def test_bad_config_is_a_clear_error(tmp_path, toml, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    p = curate("run", "examples/warc", "-o", str(tmp_path / "o"), "-c", str(cfg), check=False, timeout=120)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr
    assert "Traceback" not in p.stderr


def test_missing_path_and_unwritable_output(tmp_path):
    p = curate("run", str(tmp_path / "nope"), check=False, timeout=120)
    assert p.returncode == 2 and "input not found" in p.stderr
    if os.geteuid() == 0:  # root ignores permissions: an output path below a regular file
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "out"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "out"
    p = curate("run", "examples/warc", "-o", str(target), check=False, timeout=120)
    assert p.returncode == 2 and "not writable" in p.stderr


def test_finished_run_with_a_failed_input_exits_3(tmp_path, warc):
    """One unusable input among good ones: the good one is processed to the end (report, funnel),
    the bad one is listed in OUT/failed.jsonl, and the exit status (3) tells a batch job."""
    notes = tmp_path / "notes.warc"
    notes.write_text("minutes of the meeting, not a web archive\n" * 40)
    cfg = tmp_path / "t.toml"
    cfg.write_text(TEST_TOML)
    out = tmp_path / "o"
    p = curate("run", str(warc("cc_CC-MAIN-2015-35_crate-example.warc.wet.gz")), str(notes),
               "-o", str(out), "-c", str(cfg), "--no-dedup", "--no-report", "--no-tokenize",
               check=False, timeout=300)
    assert p.returncode == 3, p.stderr[-3000:]
    assert "exit status 3: 1 inputs failed" in p.stderr
    assert [json.loads(x)["input"] for x in (out / "failed.jsonl").read_text().splitlines()] == [str(notes)]
    assert (out / "final").is_dir() and len(list((out / "stats").glob("*.json"))) >= 1


@pytest.mark.parametrize("codes,needle", [("eng", "did you mean 'en'?"), ("en,deu", "'deu' in --languages"),
                                          ("xx", "unknown language code 'xx'")])
def test_unknown_language_code_fails_before_any_work(tmp_path, codes, needle):
    """`--languages eng` (a typo for en) would keep nothing and fail only at tokenization: it is
    refused against lid.176's labels before Ray starts or any output is written."""
    out = tmp_path / "o"
    p = curate("run", "examples/warc", "-o", str(out), "--languages", codes, check=False, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert not (out / "documents").exists() and not (out / "logs").exists()


def test_language_codes_against_lid176():
    from webmill.curate.languages import check_languages, model_labels, suggest
    from webmill.errors import UserError

    labels = model_labels()
    assert len(labels) == 176 and {"en", "de", "fr", "zh", "ceb"} <= labels
    check_languages(["en", "fr", "ceb"])
    check_languages("all")
    assert [suggest(c, labels) for c in ("eng", "deu", "spa", "zho", "EN")] == ["en", "de", "es", "zh", "en"]
    with pytest.raises(UserError, match="did you mean 'de'"):
        check_languages(["en", "ger"])
