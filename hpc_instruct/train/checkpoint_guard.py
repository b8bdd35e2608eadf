"""Checking a distributed checkpoint's pickles before a library unpickles them.

Checkpoints live in the study folder, which colleagues can write. `torch.distributed.checkpoint` (under
megatron's `dist_checkpointing`) reads its `.metadata` file with a plain `pickle.load`, and megatron reads
`common.pt` with `torch.load` (weights-only by default only from torch 2.6): a crafted file would run code in the
next resume. So before either library opens a checkpoint, both files are read here with unpicklers that can only
build the plain data those formats hold (checkpoint metadata classes, torch sizes, dtypes and tensors,
containers); anything else (`os.system`, `builtins.eval`, any other class) refuses the checkpoint with a
`CheckpointRefused` that names the file and what it asked for. Nothing is constructed beyond the allow-list.

The same rule holds for any other `torch.load` a library does on a resume checkpoint without `weights_only`
(DeepSpeed reads its `*.pt` files with `weights_only=False`): `check_torch_files` loads each one first with
`weights_only=True` (memory-mapped: the tensors are not read) and refuses the checkpoint, naming the file, unless it
holds only tensors, plain values and the few data classes its caller names.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Iterable, Sequence
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
        check_torch_files([common])


def check_torch_files(paths: Iterable[Path], data_classes: Sequence[type] = ()) -> None:
    """Raise CheckpointRefused unless every file in `paths` loads with `torch.load(weights_only=True)`, with
    `data_classes` (plain data classes a library pickles, e.g. a dataclass of two ints) also allowed.

    Nothing outside torch's weights-only allow-list and `data_classes` is constructed or called, so a file
    whose unpickling would run code is refused before it can. A file torch cannot read at all is refused too:
    the library reading it after us would unpickle it with fewer checks."""
    import torch

    for path in paths:
        if not zipfile.is_zipfile(path):  # torch.save writes zip archives; a bare pickle would be unpickled as is
            raise CheckpointRefused(f"{path} is not in torch.save's format (a bare pickle, or torn): refusing to "
                                    "read it. Remove the checkpoint folder to train from the previous one")
        try:
            with torch.serialization.safe_globals(list(data_classes)):
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointRefused(f"{path} holds more than weights and plain values ({_reason(exc)}): refusing to "
                                    "read it. Remove the checkpoint folder to train from the previous one") from None
        except Exception as exc:  # noqa: BLE001 - torn, legacy-format or foreign: refused, never unpickled later
            raise CheckpointRefused(f"{path} is not a readable torch checkpoint file ({_reason(exc)}): refusing to read "
                                    "it. Remove the checkpoint folder to train from the previous one") from None


def _reason(exc: Exception) -> str:
    """The line of torch's error that says what the file asked for ("Trying to load unsupported GLOBAL
    posix.system ..."), not its boilerplate about weights_only defaults and documentation links."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    useful = [line for line in lines if not line.startswith(boilerplate)]
    return (useful or lines or [type(exc).__name__])[0]
