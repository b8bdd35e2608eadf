"""Fields of the typed, frozen configs that recipes serialise: validation bounds, identity and help per field.

Every library's own config (e.g. `hpc_instruct.train.config`) and the recipe schema declare fields with these,
so the recipe builder can validate and hash any of them the same way:
- `lo` / `hi`: inclusive numeric bounds (`gt` for a strict lower bound);
- `identity=False`: the field does not change a trial's *result* (how it runs, not what it computes), so it is
  left out of content hashes: parallel layout, micro batch, cadence of resume checkpoints, Slurm settings.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def spec(default: Any = None, *, lo: float | None = None, hi: float | None = None, gt: float | None = None,
         identity: bool = True, help: str = "", factory: Any = None) -> Any:
    """A dataclass field with validation bounds and a help line (shown by `hpci validate --explain`)."""
    meta = {"lo": lo, "hi": hi, "gt": gt, "identity": identity, "help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def required(*, lo: float | None = None, hi: float | None = None, gt: float | None = None, help: str = "") -> Any:
    return field(metadata={"lo": lo, "hi": hi, "gt": gt, "identity": True, "help": help})
