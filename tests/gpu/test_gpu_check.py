"""The one-shot GPU check on a real GPU: every verdict of its RESULT line must be ok (figures are printed).

Run on a GPU node: `pytest tests/gpu` (or `tools/gpu-check.sh`, which also installs what it needs).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_passes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(REPO / "tools" / "gpu-check.sh"), "--no-install", "--out", str(tmp_path)],
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    last = proc.stdout.strip().splitlines()[-1]
    print(proc.stdout[-6000:])
    match = re.fullmatch(r"RESULT gpu_check mfu=(\S+) tok_s=(\S+) parity=(\w+) resume=(\w+) export=(\w+)", last)
    assert match, proc.stdout[-4000:] + proc.stderr[-2000:]
    mfu, tok_s, *verdicts = match.groups()
    assert verdicts == ["ok", "ok", "ok"], last
    assert float(mfu) > 0 and float(tok_s) > 0, last
