"""bench/gpu_check.sh (issue 20 item 5) runs to completion on a machine without a GPU: the
benchmark section (50 steps, compiled) with the tiny CPU shape, then every check."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # two torch.compile runs on the CPU: ~2-4 minutes
def test_gpu_check_script_runs_on_cpu():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2")
    p = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1200)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "no CUDA device: running on the CPU" in out
    m = re.search(r"RESULT 1 process on cpu: median ([\d,]+) tok/s over steps 11-50, MFU not known", out)
    assert m and int(m.group(1).replace(",", "")) > 0, out[-4000:]
    assert "ok: eager, compiled and resumed losses agree" in out
    assert "all GPU checks passed (device: cpu)" in out
