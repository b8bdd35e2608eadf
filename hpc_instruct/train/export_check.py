"""Is an exported HF folder whole? A marker says a writer finished; this says the weights are actually there.

A folder can carry a valid marker and still lack its weights (two writers once raced on one export: the
survivor's folder held config and tokenizer only), and evaluation would then fail forever on a task that every
marker calls done. So an export counts only when `config.json` and every weights file it needs are present and
non-empty: `model.safetensors`, or the index `model.safetensors.index.json` and every shard it names. No torch
import here: the launcher checks this on the login node.
"""

from __future__ import annotations

import json
from pathlib import Path

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def export_problem(folder: str | Path) -> str | None:
    """Why `folder` is not a whole HF export, or None when it is."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} does not exist"
    if not _nonempty(folder / "config.json"):
        return f"{folder} has no config.json"
    if (folder / INDEX).is_file():
        try:
            shards = set(json.loads((folder / INDEX).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"{folder}/{INDEX} is unreadable ({exc})"
        absent = sorted(s for s in shards if not _nonempty(folder / s))
        return f"{folder} lacks weight shards {', '.join(absent)}" if absent or not shards else None
    if not _nonempty(folder / SINGLE):
        return f"{folder} has no weights ({SINGLE} or {INDEX})"
    return None


def trial_exports_problem(study_root: str | Path, trial_json: str | Path) -> str | None:
    """The first export listed in a finished trial's trial.json that is not whole, or None."""
    try:
        exports = json.loads(Path(trial_json).read_text()).get("exports", {})
    except (OSError, ValueError, AttributeError) as exc:
        return f"{trial_json} is unreadable ({exc})"
    for rel in (exports.values() if isinstance(exports, dict) else ()):
        problem = export_problem(Path(study_root) / rel)
        if problem:
            return problem
    return None


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0
