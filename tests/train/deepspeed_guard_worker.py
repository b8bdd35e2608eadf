"""A real DeepSpeed ZeRO-2 engine (the deepspeed backend, one CPU rank) saves a resume checkpoint, resumes from it,
then resumes from copies of it with one `.pt` file replaced by a crafted pickle; for test_checkpoint_guard.py.

    python tests/train/deepspeed_guard_worker.py WORK_DIR PORT

Prints one JSON line: {"clean": "ok" or the error, "<case>": "refused: <message>" or what happened instead}.
A case's pickle, when unpickled, creates WORK_DIR/<case>.ran (what an attacker's code would do).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


class Payload:
    """Unpickling this runs a shell command."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return os.system, (f"touch {self.flag}",)


def main(work: Path, port: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    import pickle

    import torch

    from hpc_instruct.train.backend import AdamWSettings, BackendSettings
    from hpc_instruct.train.checkpoint_guard import CheckpointRefused
    from hpc_instruct.train.deepspeed_backend import TAG, DeepSpeedBackend
    from hpc_instruct.train.megatron.convert import hf_config
    from hpc_instruct.train.presets import ModelShape

    shape = ModelShape("llama", 1, 32, 2, 2, 64, 64, 64)
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    weights = LlamaForCausalLM(hf_config(shape)).state_dict()
    settings = BackendSettings("deepspeed", "cpu", "fp32", 1, 1, 1, 1, False, False, "none", 1, 1,
                               AdamWSettings(1e-3, 0.0, (0.9, 0.95), 1e-8, 1.0), 0, 16)
    backend = DeepSpeedBackend(settings, shape, weights)
    saved = work / "saved"
    backend.save_state(saved)
    results = {}
    try:
        backend.load_state(saved)
        results["clean"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results["clean"] = f"{type(exc).__name__}: {exc}"
    files = sorted(p.name for p in (saved / TAG).glob("*.pt"))
    cases = {}
    for name in files:  # each file as torch.save would write a hostile object, and as a bare pickle
        cases[f"{name}:torch"] = (name, "torch")
        cases[f"{name}:pickle"] = (name, "pickle")
    for case, (name, how) in cases.items():
        folder = work / case.replace(":", "-")
        shutil.copytree(saved, folder)
        flag = work / f"{case.replace(':', '-')}.ran"
        target = folder / TAG / name
        if how == "torch":
            state = torch.load(target, weights_only=False)
            state["hostile"] = Payload(flag)
            torch.save(state, target)
        else:
            target.write_bytes(pickle.dumps({"optimizer_state_dict": Payload(flag), "module": Payload(flag)}))
        try:
            backend.load_state(folder)
            results[case] = "loaded"
        except CheckpointRefused as exc:
            results[case] = f"refused: {exc}"
        except Exception as exc:  # noqa: BLE001 - DeepSpeed's own failure after unpickling
            results[case] = f"{type(exc).__name__}: {exc}"
        results[case] += f" | ran={flag.exists()}"
    backend.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
