"""tools/gpu_check_eval.py's dry run (CPU, no vLLM): it answers items natively and with the DoIT-style loop,
builds vLLM's requests, and ends with the RESULT line gpu-check.sh parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_ends_with_the_result_line():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check_eval.py"), "--dry-run", "--items", "6",
                           "--max-new-tokens", "4"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "dry run: 6 vLLM generation requests" in proc.stdout
    match = re.fullmatch(r"RESULT gpu_eval native_items_s=([\d.]+) vllm_items_s=0\.00 doit_items_s=([\d.]+) "
                         r"agree=([\d.]+)", lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) > 0 and float(match.group(2)) > 0
    assert float(match.group(3)) == 1.0  # the native loop's greedy replies are the DoIT loop's, item for item
