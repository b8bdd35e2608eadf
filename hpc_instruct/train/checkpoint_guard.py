"""Checking a distributed checkpoint's pickles before a library unpickles them.

Checkpoints live in the study folder, which colleagues can write. `torch.distributed.checkpoint` (under
megatron's `dist_checkpointing`) reads its `.metadata` file with a plain `pickle.load`, and megatron reads
`common.pt` with `torch.load` (weights-only by default only from torch 2.6): a crafted file would run code in the
next resume. So before either library opens a checkpoint, both files are read here with unpicklers that can only
build the plain data those formats hold (checkpoint metadata classes, torch sizes, dtypes and tensors,
containers); anything else (`os.system`, `builtins.eval`, any other class) refuses the checkpoint with a
`CheckpointRefused` that names the file and what it asked for. Nothing is constructed beyond the allow-list.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

# Modules whose every class is plain data in a checkpoint's metadata (dataclasses and enums).
_DATA_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.planner")
_NAMED = {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.serialization", "_get_layout"),
    ("torch", "Size"),
    ("pathlib", "PosixPath"),  # StorageMeta.checkpoint_id
    ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
}


class CheckpointRefused(RuntimeError):
    """A checkpoint file asks to construct something that is not checkpoint data."""


def _allowed(module: str, name: str) -> bool:
    if module in _DATA_MODULES:
        return not name.startswith("__")
    if (module, name) in _NAMED:
        return True
    if module == "torch":  # dtypes and memory formats (torch.float32, torch.contiguous_format)
        import torch

        return isinstance(getattr(torch, name, None), (torch.dtype, torch.memory_format, torch.layout))
    return False


class _MetadataUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, source: Path):
        super().__init__(io.BytesIO(data))
        self.source = source

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's interface
        if not _allowed(module, name):
            raise CheckpointRefused(f"{self.source} asks to load {module}.{name}, which is not checkpoint data: "
                                    "the file was not written by a checkpoint save (changed by someone?); "
                                    "refusing to read it. Remove the checkpoint folder to train from the previous one")
        return super().find_class(module, name)


def check_distributed_checkpoint(directory: str | Path) -> None:
    """Raise CheckpointRefused unless `.metadata` and `common.pt` under `directory` hold only checkpoint data."""
    directory = Path(directory)
    metadata = directory / ".metadata"
    if metadata.is_file():
        try:
            _MetadataUnpickler(metadata.read_bytes(), metadata).load()
        except CheckpointRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - torn or foreign: the library would fail less clearly
            raise CheckpointRefused(f"{metadata} is not a readable checkpoint index: {exc}") from None
    common = directory / "common.pt"
    if common.is_file():
        import torch

        try:
            torch.load(common, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointRefused(f"{common} holds more than weights and plain values ({first}): refusing to "
                                    "read it. Remove the checkpoint folder to train from the previous one") from None
