"""README.md's commands are true: every command of its bash blocks parses against the real CLI,
and the blocks that need no network, GPU, S3 or cluster run on two bundled WARCs (the
`curate` commands and the Python block in `make test`; the training pair, minutes on a CPU, in
the slow suite). `make demo` itself is the one block not run here (it is the demo)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer.main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
# two small bundled archives: one WARC (matched by the README's '*.warc.gz' glob), one WET
FILES = ["wget_2024_researcher-homepages_dolma-sample-0000.warc.gz", "cc_CC-MAIN-2016-50_wet-25docs.warc.wet.gz"]
# commands not run, and why (each must still parse)
NOT_RUN = {"make demo": "the demo itself (installs, curates and trains for minutes)",
           "make test": "the test suite itself",
           "s3://": "needs an S3 bucket", "ray job submit": "needs a Ray cluster",
           "--ray-address HEAD": "needs a Ray cluster",
           "--base-url http://127.0.0.1:8000": "needs a served instruct model (tests/test_annotate.py runs "
                                                "annotate against a llama.cpp server)",
           "--annotations OUT/annotations": "needs the annotations of the line above "
                                            "(tests/test_quality_recipe.py runs annotate -> train)"}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def commands() -> list[str]:
    """Command lines of the bash blocks: comments stripped, ``\\`` continuations joined."""
    out = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#") and not line.startswith(". "):
                out.append(line)
    return out


def cli_group(prog: str) -> click.Group:
    if prog == "curate":
        from webmill.curate.cli import app
    else:
        from webmill.train.cli import app
    return typer.main.get_command(app)


def test_every_readme_command_parses_against_the_cli():
    cmds = commands()
    assert len(cmds) >= 12
    for line in cmds:
        argv = shlex.split(line)
        if argv[0] == "ray":
            argv = argv[argv.index("--") + 1:]
        if argv[0] == "make":
            make = (ROOT / "Makefile").read_text()
            assert all(re.search(rf"^{t}:", make, re.M) for t in argv[1:]), line
            continue
        assert argv[0] in ("curate", "train"), line
        group = cli_group(argv[0])
        assert argv[1] in group.commands, f"{line}: no command {argv[1]!r}"
        # parses options and arguments exactly as the shell would pass them (unknown options and
        # bad values raise); does not run the command
        group.commands[argv[1]].make_context(argv[1], argv[2:])


def test_readme_names_the_checkpoints_training_writes():
    import dataclasses

    from webmill.train.checkpoint import checkpoint_name
    from webmill.train.config import TrainConfig

    steps = {f.name: f.default for f in dataclasses.fields(TrainConfig)}["max_steps"]
    assert f"runs/gpt/{checkpoint_name(steps)}" in README
    assert checkpoint_name(300) in README  # make demo's 300 steps
    assert "ckpt-" not in README


def run(line: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    argv = shlex.split(line)
    argv[0] = str(BIN / argv[0])
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, f"{line}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def runnable(line: str) -> bool:
    return not any(k in line for k in NOT_RUN)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, examples_warc) -> Path:
    """A directory where WARC_DIR and crawl/ hold the two small archives; OUT is ./OUT."""
    d = tmp_path_factory.mktemp("readme")
    for sub in ("WARC_DIR", "crawl"):
        (d / sub).mkdir()
        for n in FILES:
            shutil.copy(examples_warc / n, d / sub / n)
    (d / "examples").symlink_to(ROOT / "examples")
    return d


def curate_lines() -> list[str]:
    """The curate commands the default test runs (``curate ablate``, minutes: the slow one)."""
    return [c for c in commands() if c.startswith("curate ") and runnable(c) and not c.startswith("curate ablate")]


def test_curate_commands_run_on_two_bundled_warcs(workdir):
    lines = curate_lines()
    assert [shlex.split(c)[1] for c in lines] == ["run", "run", "stats", "show", "dedup", "dedup", "tokenize",
                                                  "train-tokenizer", "check-shards", "run"]
    for line in lines:
        run(line, workdir)
    assert (workdir / "webmill-out" / "WARC_DIR" / "shards" / "manifest.json").is_file()  # the default OUT
    assert (workdir / "OUT" / "report" / "report.html").is_file()
    assert (workdir / "OUT" / "shards" / "manifest.json").is_file()
    assert (workdir / "tok").is_dir() and any((workdir / "tok").iterdir())
    fast = json.loads((workdir / "webmill-out" / "fast" / "report" / "stats.json").read_text())
    assert fast["totals"]["kept"] > 0  # --profile fast
    # the same two archives: the documents OUT kept are duplicates here and are removed
    against = json.loads((workdir / "webmill-out" / "WARC_DIR" / "stats" / "dedup.json").read_text())["against"]
    assert against["documents"] > 0 and against["documents_removed"] >= against["documents"]


def test_python_block_runs(tmp_path, examples_warc):
    (code,) = blocks("python")
    assert '["examples/warc"]' in code
    # the same code on the two small archives, from the repository root
    code = code.replace('["examples/warc"]', repr([str(examples_warc / n) for n in FILES]))
    code = code.replace('"webmill-out/py"', repr(str(tmp_path / "py")))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip() == f"{tmp_path / 'py' / 'report' / 'report.html'} []"


@pytest.mark.slow
def test_training_commands_run(workdir):
    """`train pretrain` on the README's OUT/shards, as printed plus ``--max-steps 3`` (its default
    200 steps take ~18 minutes on two CPU cores: cl100k's 100k-token output layer costs ~5 s a
    step), then `train sample` and `train eval` exactly as printed, which load the run's newest
    checkpoint."""
    if not (workdir / "OUT" / "shards" / "manifest.json").is_file():
        test_curate_commands_run_on_two_bundled_warcs(workdir)
    lines = [c for c in commands() if c.startswith("train ")]
    assert [shlex.split(c)[1] for c in lines] == ["pretrain", "sample", "eval"]
    run(lines[0] + " --max-steps 3", workdir, timeout=900)
    assert (workdir / "runs" / "gpt" / "checkpoints" / "step-00000003.pt").is_file()
    p = run(lines[1], workdir)
    assert "The history of" in p.stdout
    run(lines[2], workdir)  # bits per byte on OUT/shards' val split and the bundled task file
    (rec,) = [json.loads(x) for x in (workdir / "runs" / "gpt" / "eval.jsonl").read_text().splitlines()]
    assert rec["step"] == 3 and rec["bpb"] > 0 and rec["tokens"] > 0


@pytest.mark.slow
def test_ablate_command_runs(workdir):
    """`curate ablate` exactly as printed (the bundled examples/warc, two recipes, a tiny model):
    results for both recipes on the common eval set, and the report page."""
    (line,) = [c for c in commands() if c.startswith("curate ablate")]
    run(line, workdir, timeout=1500)
    out = workdir / "webmill-out" / "ablation"
    res = json.loads((out / "results.json").read_text())
    assert sorted(r["name"] for r in res["table"]) == ["fineweb", "quality"]
    assert all(r["bpb"] > 0 for r in res["table"]) and (out / "report.html").is_file()
