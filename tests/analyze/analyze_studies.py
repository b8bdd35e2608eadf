"""Simulated studies with planted truth for the analysis tests: recipes, a fake data root, and a builder.

Three studies, each as small as its question allows (writing shard files is the cost):
- `main_study`: 10 abilities + 1 out-of-domain set, 3 model sizes x curated 1..1000 x 2 seeds, synthetic on one
  size, 8 held-out mixes on the largest, test split only (last checkpoint), 400 items per set: curves, sensitivity, efficiency, allocation, report.
- `selection_study`: 3 abilities, 4 epochs, every checkpoint on valid, test on the selected one, 2 shards per
  set: checkpoint selection and every completeness defect.
- `transfer_study`: 4 abilities + 1 out-of-domain set, single-ability trials, 2,000 items per set: transfer.
"""

from __future__ import annotations

from pathlib import Path

from simulated_study import SimulatedStudy, create_study

from hpc_instruct.data.abilities import ABILITY_KEYS
from hpc_instruct.expansion import Trial

MODELS = """\
models:
  - {name: tiny, size: tiny, device: cpu, micro_batch: 4, global_batch: 8}
  - {name: mini, size: mini, device: cpu, micro_batch: 4, global_batch: 8}
  - {name: small, size: small, device: cpu, micro_batch: 4, global_batch: 8}
"""

MAIN = """\
study: {name: main, output_root: OUT}
MODELS
data: {root: DATA}
sweep:
  seeds: [0, 1]
  curated: {samples_per_ability: [1, 4, 16, 64, 256, 1000]}
  synthetic: {total_samples: [10, 40, 160, 640, 2560, 10240], models: [mini]}
  held_out: {count: 8, min_per_ability: 1, max_per_ability: 1000, seed: 3, models: [small]}
training: {epochs: 1, precision: fp32, lr: 1.0e-3, max_length: 256}
evaluation: {splits: [test], checkpoints: last, test_on: all, include_base: true, items_per_shard: 400,
             out_of_domain: [ceval_physician]}
"""

SELECTION = """\
study: {name: selection, output_root: OUT}
MODELS
data: {root: DATA, abilities: [biology, history, math]}
sweep:
  seeds: [0]
  curated: {samples_per_ability: [4, 64], models: [tiny, mini]}
training: {epochs: 4, precision: fp32, lr: 1.0e-3, max_length: 256}
evaluation: {splits: [valid, test], checkpoints: all, test_on: selected, include_base: true, items_per_shard: 100}
"""

TRANSFER = """\
study: {name: transfer, output_root: OUT}
MODELS
data: {root: DATA, abilities: [biology, code, math, ethics]}
sweep:
  seeds: [0, 1]
  single_ability: {samples_per_ability: [256], models: [mini]}
training: {epochs: 1, precision: fp32, lr: 1.0e-3, max_length: 256}
evaluation: {splits: [test], checkpoints: last, test_on: all, include_base: true, items_per_shard: 2000,
             out_of_domain: [ceval_physician]}
"""

# Planted transfer for the transfer study: large enough to resolve with 2,000 items (trained -> evaluated).
PLANTED_TRANSFER = {
    "biology": {"code": 0.0, "math": 8.0, "ethics": -8.0, "ceval_physician": 10.0},
    "code": {"biology": -6.0, "math": 6.0, "ethics": 0.0, "ceval_physician": 0.0},
    "math": {"biology": 8.0, "code": 4.0, "ethics": 0.0, "ceval_physician": -6.0},
    "ethics": {"biology": 0.0, "code": -8.0, "math": 0.0, "ceval_physician": 6.0},
}


def write_data_root(
    root: Path, items: int, pool: int = 3000, ood: tuple[str, ...] = ("ceval_physician",)
) -> Path:
    """A DoIT-layout folder whose files only have the right number of lines (all that planning reads)."""
    for ability in ABILITY_KEYS:
        for folder, n in (("full", pool), ("valid", items), ("test", items)):
            path = root / "curated" / folder / f"{ability}_{folder}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n" * n)
    for o in ood:
        (root / "curated" / "test" / f"{o}_test.json").write_text("{}\n" * items)
    synthetic = root / "synthetic" / "40960" / "general_instruction_gpt4_41k.json"
    synthetic.parent.mkdir(parents=True, exist_ok=True)
    synthetic.write_text("{}\n" * 20000)
    return root


def make_study(
    tmp: Path, template: str, items: int, truth=None, overrides: tuple[str, ...] = (), skip=None
) -> SimulatedStudy:
    data = write_data_root(tmp / "data", items)
    recipe = tmp / "recipe.yaml"
    recipe.write_text(
        template.replace("MODELS\n", MODELS).replace("OUT", str(tmp / "studies")).replace("DATA", str(data))
    )
    return create_study(recipe, tmp / "studies", overrides, truth=truth, skip=skip)


def planned_trial(label: str, model: str, source: str, counts: dict[str, int], seed: int = 0,
                  checkpoints: tuple[int, ...] = (), trial_id: str = "x") -> Trial:
    """A `Trial` with only what analysis reads set (the planted truth and selection tests)."""
    return Trial(trial_id, label, model, "", source, {"per_ability": counts, "synthetic": 0, "cap": False},
                 dict(counts), 0, sum(counts.values()), seed, 1, 0, 1, 1, 1, 1, max(checkpoints, default=1),
                 max(checkpoints, default=1), 0, checkpoints, 0.0)
