"""Exported checkpoints: the HF model folders evaluation loads, one per epoch in `trial.checkpoints`.

    trials/<id>/export/epoch-003/        config.json, model*.safetensors, tokenizer files
    trials/<id>/export/epoch-003.done    marker: {"id": <trial id>, "epoch": 3, "step": ...}

The backend writes the weights and config into a hidden temporary folder (collectively: TP groups gather,
pipeline stages write one shard each), rank 0 adds the tokenizer (with the DoIT tokens the template added)
and the special-token ids, then renames the folder into place and writes the marker. A folder loads with
`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from hpc_instruct.atomic import is_done, marker_path, write_marker
from hpc_instruct.data.template import EOT_TOKEN
from hpc_instruct.train.backend import Backend
from hpc_instruct.train.export_check import export_problem


def export_epoch(
    backend: Backend, tokenizer: Any, target: Path, trial_id: str, epoch: int, step: int, template: str
) -> Path:
    """Write the HF folder of the current weights to `target` atomically, with its marker (collective)."""
    rank = torch.distributed.get_rank()
    # A temporary folder of this writer's own (rank 0 names it, every rank writes into it): a second writer of
    # the same export can neither delete nor rename ours half-written.
    name = [f".{target.name}.{uuid.uuid4().hex[:12]}.partial" if rank == 0 else None]
    torch.distributed.broadcast_object_list(name, src=0)
    tmp = target.with_name(name[0])
    if rank == 0:
        tmp.mkdir(parents=True)
    torch.distributed.barrier()
    backend.export_hf(tmp)
    if rank == 0:
        tokenizer.save_pretrained(str(tmp))
        _set_token_ids(tmp / "config.json", tokenizer, template)
        problem = export_problem(tmp)
        if problem:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"export of epoch {epoch} is incomplete: {problem}")
        marker_path(target).unlink(missing_ok=True)
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
        if target.exists():
            target.rename(old)  # never delete in place what another writer may be renaming
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        write_marker(target, trial_id, epoch=epoch, step=step)
    torch.distributed.barrier()
    return target


def _set_token_ids(config_path: Path, tokenizer: Any, template: str) -> None:
    """bos/eos/pad ids of the tokenizer in config.json; with the DoIT template eos is `<eot>` (turn end)."""
    config = json.loads(config_path.read_text())
    eos = tokenizer.convert_tokens_to_ids(EOT_TOKEN) if template == "doit" else tokenizer.eos_token_id
    config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def missing_exports(folders: dict[int, Path], trial_id: str) -> list[int]:
    """Epochs whose export is not complete for this trial (no marker for it, or weights missing)."""
    return [e for e, folder in sorted(folders.items()) if not is_done(folder, trial_id) or export_problem(folder)]
