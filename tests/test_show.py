"""`curate show OUT [--reason R] [--n N]`: example documents per drop reason in the terminal.

The module fixture runs the real `curate run` CLI (embedded Ray) over two files of the bundled
examples/warc/ with ``write_removed = true`` and ``examples_per_reason = 2``, so the run has both
the bounded example sample and every dropped document in OUT/removed/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from webmill.curate.cli import app
from webmill.curate.examples import example_key, read_examples
from webmill.curate.report.show import list_reasons, removed_rows, show_examples
from webmill.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-c", "from webmill.curate.cli import main; main()"]
SUBSET = ["cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz", "cc_CC-MAIN-2025-33_cdx-toolkit-3records.warc.gz"]
PER_REASON = 2
TOML = f"[extract]\ntimeout_s = 30.0\n[ray]\nnum_workers = 2\n[output]\nwrite_removed = true\n" \
       f"examples_per_reason = {PER_REASON}\n"


def curate(*args: str, timeout: int = 900, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(env_extra or {})
    return subprocess.run(CURATE + list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def out(tmp_path_factory, examples_warc) -> Path:
    base = tmp_path_factory.mktemp("show")
    inputs = base / "warc"
    inputs.mkdir()
    for name in SUBSET:
        shutil.copy(examples_warc / name, inputs / name)
    (base / "show.toml").write_text(TOML)
    ray_tmp = tempfile.mkdtemp(prefix="ray-show-", dir="/tmp")  # short path: Ray's sockets live there
    try:
        p = curate("run", str(inputs), "-o", str(base / "out"), "-c", str(base / "show.toml"), "--no-tokenize",
                   env_extra={"RAY_TMPDIR": ray_tmp})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert p.returncode == 0, f"curate run exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return base / "out"


def show(*args: str):
    """``curate show ARGS`` in-process; wide columns so rich does not fold table cells."""
    r = CliRunner().invoke(app, ["show", *args], env={"COLUMNS": "200"})
    return r


def _dropped(out: Path) -> Counter:
    c: Counter = Counter()
    for p in (out / "stats").glob("*.json"):
        s = json.loads(p.read_text())
        if "records" in s and "stem" in s:
            c.update({k: v for k, v in s["dropped"].items() if v})
    return c


def _removed_ids(out: Path, reason: str) -> list[str]:
    return [r["id"] for p in sorted((out / "removed").rglob("*.parquet"))
            for r in pq.read_table(p).to_pylist() if r.get("reason") == reason]


def test_show_lists_reasons_with_counts_and_stored_examples(out):
    r = show(str(out))
    assert r.exit_code == 0, r.output
    dropped = _dropped(out)
    stored = Counter(read_examples(out).column("reason").to_pylist())
    assert len(dropped) >= 4 and sum(stored.values()) > 0
    listed = {x.reason: x for x in list_reasons(out)}
    for reason, n in dropped.items():
        assert listed[reason].dropped == n and listed[reason].stored == stored.get(reason, 0)
        line = next(ln for ln in r.output.splitlines() if f" {reason} " in ln)
        assert f" {n:,} " in line and line.rstrip(" │").endswith(str(stored.get(reason, 0)))
    # funnel order: the stages of the listed reasons follow the registry
    from webmill.curate.stages import DOCUMENT_STAGES

    rank = {s.name: i for i, s in enumerate(DOCUMENT_STAGES)}
    ranks = [rank[x.stage] for x in listed.values() if x.stage in rank]
    assert ranks == sorted(ranks)


def test_show_reason_prints_n_examples_with_their_urls(out):
    stored = Counter(read_examples(out).column("reason").to_pylist())
    reason = next(r for r, n in stored.most_common() if n >= 2)
    r = show(str(out), "--reason", reason, "--n", "2")
    assert r.exit_code == 0, r.output
    want = read_examples(out, [reason], n=2).to_pylist()
    assert len(want) == 2
    assert r.output.count(f" {reason} · ") == 2 and "from OUT/examples" in r.output
    for k, ex in enumerate(want, 1):
        assert f"{k}/2 {reason}" in r.output and f"url: {ex['url']}" in r.output
        assert ex["text"][:60].splitlines()[0] in r.output


def test_more_than_stored_reads_removed_consistently(out, tmp_path):
    dropped = _dropped(out)
    stored = Counter(read_examples(out).column("reason").to_pylist())
    reason = max(dropped, key=lambda k: (dropped[k] - stored.get(k, 0), k))
    assert dropped[reason] > stored.get(reason, 0)  # the sample is bounded
    n = dropped[reason] + 5
    shown = show_examples(out, reason, n)
    ids = sorted(_removed_ids(out, reason), key=lambda i: (example_key(i), i))
    assert len(ids) == dropped[reason] and [x["id"] for x in shown] == ids  # bottom-N of the same key
    sample = read_examples(out, [reason]).column("id").to_pylist()
    assert ids[:len(sample)] == sample  # the stored examples are the first of them
    assert [x["id"] for x in removed_rows(out, reason, 2)] == ids[:2]
    r = show(str(out), "--reason", reason, "--n", str(n))
    assert "from OUT/removed" in r.output and r.output.count(f" {reason} · ") == len(ids)
    assert "are stored" not in r.output  # every dropped document was shown

    # without removed/: what is stored, and how to get more
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("removed", "report", "logs"))
    r = show(str(copy), "--reason", reason, "--n", str(n))
    assert r.exit_code == 0, r.output
    assert r.output.count(f" {reason} · ") == len(sample) and "from OUT/examples" in r.output
    assert "examples_per_reason" in r.output and "write_removed = true" in r.output


def test_unknown_reason_exits_2_listing_the_reasons(out):
    p = curate("show", str(out), "--reason", "no_such_reason", timeout=120)
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()[-1]
    assert err.startswith("error: ") and "'no_such_reason' is not a drop reason" in err
    for reason, n in _dropped(out).items():
        assert f"{reason} ({n})" in err


def test_a_pipeline_reason_that_dropped_nothing_here_says_so(out):
    """A real reason of the FineWeb chain that this run never used is not an error: 0 dropped."""
    from webmill.curate.report.show import _registry_reasons

    unused = sorted(_registry_reasons() - set(_dropped(out)))
    assert "c4_lorem_ipsum" in unused
    p = curate("show", str(out), "--reason", "c4_lorem_ipsum", timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "c4_lorem_ipsum (c4): 0 documents dropped" in p.stdout


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="no stats/ directory"):
        list_reasons(tmp_path)
    with pytest.raises(UserError, match="--n must be at least 1"):
        show_examples(tmp_path, "x", 0)
    r = show(str(tmp_path / "missing"))
    assert r.exit_code != 0 and isinstance(r.exception, UserError)
