"""The fast path (issue 21): the default (trafilatura) path's outputs stay the same while the
per-document step is made faster, and the ``fast`` profile (resiliparse, DCLM's choice) runs.

``test_default_path_outputs_unchanged`` is the tripwire: it runs the per-document step
(:class:`webmill.curate.documents.FileProcessor`, no Ray) with the default config and
``[output] write_removed = true`` over every archive in ``examples/warc`` and compares a
content digest of every output with ``tests/data/default_path_digest.json``, which was written
from the code before the fast-path changes. Regenerate it only for an intended change of the
default path's outputs: ``WEBMILL_UPDATE_DIGEST=1 .venv/bin/python -m pytest
tests/test_fast_path.py -k unchanged`` (and say why in the commit).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from webmill.config import config_hash, load_config
from webmill.curate.documents import FileProcessor
from webmill.curate.readers import input_stem

DIGEST_FILE = Path(__file__).parent / "data" / "default_path_digest.json"
DEFAULT_HASH = "e7faf720b6557c2e7f63b2a3aaec24a36069399cc205f9942894d18726135a4d"
#: stats fields that are timings (they differ on every run)
TIMING_KEYS = ("seconds", "seconds_total")
_ARCHIVE = (".warc.gz", ".warc", ".arc.gz", ".arc", ".wet.gz", ".warc.wet.gz")


def archives(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.endswith(_ARCHIVE))


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=repr).encode()


def digest_outputs(out: Path, strip: str) -> dict[str, str]:
    """sha256 per output file of ``out``: parquet → its schema string + the canonical JSON of
    ``to_pylist()`` (content, not bytes: a pyarrow upgrade does not change it); JSON → the
    canonical JSON without :data:`TIMING_KEYS`, with the input directory ``strip`` removed
    from every string."""
    digests = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        if p.name.endswith(".parquet"):
            table = pq.read_table(p)
            blob = str(table.schema).encode() + b"\n" + _canonical(table.to_pylist())
        elif p.name.endswith((".json", ".done")):  # stats, markers (JSON with the input path)
            obj = json.loads(p.read_text().replace(strip, ""))
            for k in TIMING_KEYS:
                obj.pop(k, None)
            blob = _canonical(obj)
        else:
            blob = p.read_bytes()
        digests[rel] = hashlib.sha256(blob).hexdigest()
    return digests


def run_documents_step(inputs: list[Path], out: Path, cfg: dict) -> list[dict]:
    """The per-document step over ``inputs`` in one process (what each Ray actor does)."""
    fp = FileProcessor(cfg, out)
    try:
        return [fp.process(str(p), input_stem(str(p))) for p in inputs]
    finally:
        fp.close()


def test_default_config_hash_is_unchanged():
    assert config_hash(load_config(None)) == DEFAULT_HASH


def test_default_path_outputs_unchanged(tmp_path, examples_warc):
    """Every output of the default per-document step on examples/warc (documents/, stats/,
    removed/, examples/, markers) has the digest recorded before the fast-path work
    (``WEBMILL_UPDATE_DIGEST=1`` rewrites tests/data/default_path_digest.json). The same
    with ``--extractor resiliparse`` (keys ``resiliparse/...``): the speed work on reading,
    language ID and the rules changes no decision of that path either."""
    got = {}
    for extractor in ("trafilatura", "resiliparse"):
        out = tmp_path / extractor
        # a long timeout: under load a page must not time out in one run and not the other
        cfg = load_config(None, {"output": {"write_removed": True},
                                 "extract": {"extractor": extractor, "timeout_s": 120.0}})
        stats = run_documents_step(archives(examples_warc), out, cfg)
        assert sum(s["kept"] for s in stats) > 0
        prefix = "" if extractor == "trafilatura" else "resiliparse/"
        got.update({prefix + k: v for k, v in digest_outputs(out, str(examples_warc) + "/").items()})
    assert any(k.startswith("removed/") for k in got) and any(k.startswith("documents/") for k in got)
    if os.environ.get("WEBMILL_UPDATE_DIGEST") == "1":
        DIGEST_FILE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(DIGEST_FILE.read_text())
    changed = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    assert not changed, f"default-path outputs changed: {changed}"


# --- the fast profile ------------------------------------------------------------------------

def test_fast_profile_settings_and_precedence(tmp_path):
    """Profile first, then the -c file, then command-line overrides; only the profile's keys
    differ from the defaults; examples/fast.toml is the bundled profile (one file)."""
    from webmill.curate.profiles import load_profile_config, profile_names, profile_path

    assert "fast" in profile_names()
    fast = load_profile_config("fast")
    assert fast["extract"]["extractor"] == "resiliparse"
    assert fast["language"]["max_chars"] == 10000
    default = load_config(None)
    assert fast["filters"] == default["filters"] and fast["url_filter"] == default["url_filter"]
    assert config_hash(fast) != DEFAULT_HASH
    examples = Path(__file__).resolve().parents[1] / "examples" / "fast.toml"
    assert examples.resolve() == profile_path("fast").resolve()
    assert load_config(examples) == fast
    user = tmp_path / "user.toml"
    user.write_text('[extract]\nextractor = "trafilatura"\ntimeout_s = 5.0\n[language]\nthreshold = 0.5\n')
    cfg = load_profile_config("fast", user, {"language": {"threshold": 0.7}})
    assert cfg["extract"]["extractor"] == "trafilatura" and cfg["extract"]["timeout_s"] == 5.0
    assert cfg["language"]["threshold"] == 0.7 and cfg["language"]["max_chars"] == 10000
    assert load_profile_config(None, user) == load_config(user)


def test_unknown_profile_is_a_clear_error():
    from webmill.curate.profiles import load_profile_config
    from webmill.errors import UserError

    with pytest.raises(UserError, match="unknown --profile 'quick'.*known profiles: fast"):
        load_profile_config("quick")
    with pytest.raises(UserError, match="unknown --profile"):
        load_profile_config("../profiles/fast")


def test_fast_profile_cli_on_examples(tmp_path, examples_warc):
    """`curate run --profile fast` on examples/warc (real Ray, CLI in a subprocess): documents
    are kept, and every file's stats carry the hash of the profile's config (resiliparse)."""
    from test_pipeline import curate
    from webmill.curate.profiles import load_profile_config

    user = tmp_path / "test.toml"
    user.write_text("[extract]\ntimeout_s = 30.0\n[ray]\nnum_workers = 2\n")
    out = tmp_path / "out"
    curate("run", str(examples_warc), "-o", str(out), "--profile", "fast", "-c", str(user),
           "--no-dedup", "--no-pii", "--no-tokenize", "--no-report", "--no-quality")
    want = load_profile_config("fast", user, {"dedup": {"enabled": False}, "pii": {"enabled": False},
                                              "quality": {"enabled": False}})
    assert want["extract"]["extractor"] == "resiliparse" and want["extract"]["timeout_s"] == 30.0
    stats = [s for s in (json.loads(p.read_text()) for p in sorted((out / "stats").glob("*.json")))
             if "stem" in s]  # per-file stats (not the global steps')
    assert len(stats) == len(archives(examples_warc))
    assert {s["config_hash"] for s in stats} == {config_hash(want)}
    kept = sum(pq.read_table(p).num_rows for p in (out / "documents").glob("*.parquet"))
    assert kept > 0 and kept == sum(s["kept"] for s in stats)


def test_decode_once_equals_detect_then_decode(examples_warc):
    """decode_html decodes an undeclared UTF-8 page once; the text is what decoding with
    detect_charset gives, on every HTML payload of examples/warc."""
    from webmill.curate.extract import decode_html, detect_charset
    from webmill.curate.readers import iter_records

    n = 0
    for f in archives(examples_warc):
        for rec in iter_records(str(f), []):
            if rec.rec_type != "response" or "html" not in rec.content_type:
                continue
            p = rec.read_payload()
            assert decode_html(p, rec.charset) == p.decode(detect_charset(p, rec.charset), errors="replace")
            n += 1
    assert n > 50


def test_ray_data_is_quieted_when_first_imported(tmp_path):
    """init_ray no longer imports Ray Data (1-3 s of start-up of runs without dedup); its
    logger is sent to OUT/logs/ray.log and its progress bars turned off when a step first
    imports it (webmill.curate.workers.after_import), as before at start-up."""
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from webmill.curate.workers import _quiet_ray_loggers, after_import\n"
        f"log = Path({str(tmp_path / 'ray.log')!r})\n"
        "after_import('ray.data', lambda d: (_quiet_ray_loggers(log), "
        "setattr(d.DataContext.get_current(), 'enable_progress_bars', False)))\n"
        "assert 'ray.data' not in sys.modules\n"
        "import ray.data\n"
        "lg = logging.getLogger('ray.data')\n"
        "print(ray.data.DataContext.get_current().enable_progress_bars, "
        "[h.name for h in lg.handlers], lg.propagate)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split("\n")[0] == "False ['webmill-ray-log'] False"
