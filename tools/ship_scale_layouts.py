"""Regenerate hpc_instruct/train/scale/known_layouts.json: the simulated layouts of the shipped recipes.

    python tools/ship_scale_layouts.py

With them `hpci plan recipes/*.yaml` needs no simulation (no torch) on a fresh machine. Recipes are loaded with
no environment (their ${VAR:-default} values), and the simulation sees every tensor rank.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpc_instruct.recipe.memory_checks import train_setup  # noqa: E402
from hpc_instruct.recipe.study import load_study  # noqa: E402
from hpc_instruct.train.scale.cache import SHIPPED, write_shipped  # noqa: E402


def main() -> None:
    keys = []
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        study = load_study(recipe, env={})
        for m in study.recipe.models:
            if m.device == "cuda" and m.backend == "megatron":
                keys.append(train_setup(m, study.shapes[m.name], study.recipe).key)
    write_shipped(keys)
    print(f"{len(set(keys))} layouts -> {SHIPPED}")


if __name__ == "__main__":
    main()
