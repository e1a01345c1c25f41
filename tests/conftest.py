"""Shared test fixtures: paths of the real WARC data and of the bundled sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_llm", "fixtures_s3", "dedup_fixtures"]  # rephrasing LLMs, the S3 server, dedup inputs + Ray

ROOT = Path(__file__).resolve().parents[1]
SHARED_WARC = ROOT.parent / "shared" / "data" / "warc"
EXAMPLES_WARC = ROOT / "examples" / "warc"

# Tests must not depend on the user's cache; keep derived caches (blocklist hashes) per run.
os.environ.setdefault("WEBMILL_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "webmill-test-cache"))


@pytest.fixture(scope="session")
def shared_warc() -> Path:
    """``../shared/data/warc`` (skips the test when that folder is absent)."""
    if not SHARED_WARC.is_dir():
        pytest.skip(f"{SHARED_WARC} not present")
    return SHARED_WARC


@pytest.fixture(scope="session")
def examples_warc() -> Path:
    """The sample WARCs bundled in ``examples/warc`` (always present)."""
    return EXAMPLES_WARC


@pytest.fixture(scope="session")
def warc():
    """``warc(name)``: the path of archive ``name`` in ``examples/warc`` when bundled there (so the
    test runs on a fresh clone), else in ``../shared/data/warc`` (skips when that is absent)."""

    def find(name: str) -> Path:
        if (EXAMPLES_WARC / name).is_file():
            return EXAMPLES_WARC / name
        if not SHARED_WARC.is_dir():
            pytest.skip(f"{name} is not in examples/warc and {SHARED_WARC} is not present")
        return SHARED_WARC / name

    return find
