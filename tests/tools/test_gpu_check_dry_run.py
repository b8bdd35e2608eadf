"""`tools/gpu-check.sh --dry-run`: the GPU check's parts (training and eval) on a tiny model on CPU, so the
script does not rot.

Each part runs under torchrun as on a GPU (same code path, fp32, gloo); resume-save really kills itself and
resume-load picks up its checkpoint. ~2 minutes on 2 shared cores: `slow`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("megatron.core")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_passes_every_part_and_prints_the_result_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(REPO / "tools" / "gpu-check.sh"), "--dry-run", "--out", str(tmp_path)],
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    last = proc.stdout.strip().splitlines()[-1]
    # No GPU: no MFU; a CPU tokens/s figure is printed but is not a GPU figure.
    assert re.fullmatch(r"RESULT gpu_check mfu=n/a tok_s=\d+ parity=ok resume=ok export=ok", last), (
        proc.stdout[-4000:] + proc.stderr[-2000:]
    )
    evaluation = re.search(r"^RESULT gpu_eval native_items_s=([\d.]+) vllm_items_s=0\.00 doit_items_s=[\d.]+ "
                           r"agree=([\d.]+)$", proc.stdout, re.M)  # the eval part (no vLLM in a dry run)
    assert evaluation and float(evaluation.group(1)) > 0 and float(evaluation.group(2)) == 1.0, proc.stdout[-4000:]
    parity = json.loads((tmp_path / "parity-tp1.json").read_text())
    assert parity["compared"] == "local-dense-mask vs samples alone" and parity["diff"] < 1e-4
    saved = json.loads((tmp_path / "resume-save-tp1.json").read_text())
    loaded = json.loads((tmp_path / "resume-load-tp1.json").read_text())
    assert loaded["reference"] == saved["losses_after_save"] and loaded["diff"] < 1e-4
    train = json.loads((tmp_path / "train-tp1.json").read_text())
    assert set(train) >= {"local"} and "te" not in train  # TE never imports without CUDA
    assert train["local"]["last_loss"] < train["local"]["first_loss"]  # it trains
