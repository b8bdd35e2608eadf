"""A checkpoint is data, never code: its pickles are checked before megatron / torch.distributed.checkpoint /
DeepSpeed unpickle them, so a crafted `.metadata`, `common.pt` or DeepSpeed `.pt` file in a trial folder cannot run
code in the next resume."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from hpc_instruct.train.checkpoint_guard import CheckpointRefused, check_distributed_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DS_WORKER = Path(__file__).with_name("deepspeed_guard_worker.py")


class Payload:
    """Unpickling this runs a shell command (what an attacker would write)."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return os.system, (f"touch {self.flag}",)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A real torch.distributed.checkpoint folder (what megatron's torch_dist format writes) plus common.pt."""
    directory = tmp_path / "ckpt"
    state = {"w": torch.arange(6.0), "b": torch.zeros(2, 3, dtype=torch.bfloat16)}
    dcp.save(state, checkpoint_id=str(directory), no_dist=True)
    torch.save({"iteration": 3, "optimizer": {"param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95)}]}},
               directory / "common.pt")
    return directory


def test_a_real_checkpoint_passes(checkpoint):
    check_distributed_checkpoint(checkpoint)


def test_a_crafted_metadata_file_is_refused_without_running(checkpoint, tmp_path):
    flag = tmp_path / "pwned"
    (checkpoint / ".metadata").write_bytes(pickle.dumps(Payload(flag)))
    with pytest.raises(CheckpointRefused, match=r"\.metadata asks to load posix\.system"):
        check_distributed_checkpoint(checkpoint)
    assert not flag.exists()


def test_a_crafted_common_file_is_refused_without_running(checkpoint, tmp_path):
    flag = tmp_path / "pwned"
    torch.save({"iteration": Payload(flag)}, checkpoint / "common.pt")
    with pytest.raises(CheckpointRefused, match="common.pt holds more than weights"):
        check_distributed_checkpoint(checkpoint)
    assert not flag.exists()


def test_a_torn_metadata_file_is_refused_clearly(checkpoint):
    data = (checkpoint / ".metadata").read_bytes()
    (checkpoint / ".metadata").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointRefused, match="not a readable checkpoint index"):
        check_distributed_checkpoint(checkpoint)


def test_megatron_loading_checks_first(checkpoint, tmp_path):
    """The megatron checkpoint loader refuses the crafted file before dist_checkpointing unpickles it (in a
    subprocess: importing megatron patches the process)."""
    flag = tmp_path / "pwned"
    (checkpoint / ".metadata").write_bytes(pickle.dumps(Payload(flag)))
    code = ("import sys\nfrom hpc_instruct.train.megatron.checkpoint import load_model\n"
            "from hpc_instruct.train.checkpoint_guard import CheckpointRefused\n"
            "try:\n    load_model([], sys.argv[1])\nexcept CheckpointRefused as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(checkpoint)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert "refused:" in done.stdout, done.stderr[-2000:]
    assert not flag.exists()


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
def test_deepspeed_resume_checks_every_file_first(tmp_path):
    """DeepSpeed reads its checkpoint files with torch.load(weights_only=False): the deepspeed backend's resume
    refuses a checkpoint any of whose .pt files (model states, optimizer partition) holds a crafted object, as
    torch.save or a bare pickle would write it, naming the file and running nothing; a real checkpoint resumes."""
    with socket.socket() as probe:  # a free port for the one-rank process group
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, str(DS_WORKER), str(tmp_path), str(port)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results.pop("clean") == "ok"
    names = {case.split(":")[0] for case in results}
    assert names == {"mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"}, results
    for case, outcome in results.items():
        name, _ = case.split(":")
        assert outcome.startswith(f"refused: {tmp_path / case.replace(':', '-') / 'zero' / name} "), outcome
        assert outcome.endswith("| ran=False"), outcome
    assert not list(tmp_path.glob("*.ran"))
