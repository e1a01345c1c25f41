"""Helpers shared by the peer benchmarks (make_corpus, pipeline_vs_datatrove, memory).

Standard library only, so that it can be imported by the project venv
and by the datatrove venv alike. Never import webmill here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
WARC_DIR = REPO.parent / "shared" / "data" / "warc"
OUT_ROOT = BENCH / "out"  # gitignored (bench/out/)
CORPUS_DIR = OUT_ROOT / "corpus"
PROJECT_PY = REPO / ".venv" / "bin" / "python"
CURATE = REPO / ".venv" / "bin" / "curate"
DATATROVE_PY = BENCH / ".venv-datatrove" / "bin" / "python"
LID_FTZ = REPO / "webmill" / "assets" / "lid.176.ftz"


def strip_bench_from_path() -> None:
    """``python bench/x.py`` puts bench/ first on sys.path, where a sibling script can shadow a
    standard-library module (bench/tokenize.py did): take it off."""
    here = str(BENCH)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (floats)."""
    return os.getloadavg()


def wait_for_quiet(max_load: float, max_wait_s: float, poll_s: float = 15.0) -> float:
    """Wait until the 1-minute load is below ``max_load`` or ``max_wait_s`` passed; return the
    load at the end."""
    t0 = time.time()
    while True:
        la = loadavg()[0]
        if la < max_load or time.time() - t0 >= max_wait_s:
            return la
        print(f"  load {la:.1f} ≥ {max_load}: waiting (max {max_wait_s - (time.time() - t0):.0f} s more)",
              file=sys.stderr)
        time.sleep(poll_s)


def read_manifest(corpus_dir: Path) -> dict:
    """The ``manifest.json`` written by make_corpus.py."""
    p = Path(corpus_dir) / "manifest.json"
    if not p.is_file():
        raise SystemExit(f"no corpus at {corpus_dir}: run `python bench/make_corpus.py` first")
    return json.loads(p.read_text())


def pip_versions(python: Path, names: list[str]) -> dict[str, str]:
    """Installed versions of ``names`` in the interpreter ``python`` (missing → "-")."""
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = '-'\n"
            "print(json.dumps(out))")
    try:
        r = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, timeout=60)
        return json.loads(r.stdout)
    except Exception:  # noqa: BLE001 - best effort
        return {n: "?" for n in names}


class LoadSampler:
    """Samples the 1-minute load average every ``every_s`` seconds in a thread (mean/max)."""

    def __init__(self, every_s: float = 2.0):
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(loadavg()[0])
            self._stop.wait(self.every_s)

    def __enter__(self) -> "LoadSampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else loadavg()[0]

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else loadavg()[0]


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / 1024**2:,.0f} MB"
