"""A prepared miniature study shared by the training tests (generated data, tiny Llama preset, one trial).

One trial: 40 samples (4 per ability) packed into 13 rows of <= 200 tokens (the per-character tokenizer);
global batch 4 = micro batch 2 x accumulation 2 (x dp 1), so 4 steps per epoch (the last one short) x 2 epochs
= 8 steps; exports after both epochs. Preparing it (data, tokenizer, packing) takes a few seconds, once per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

RECIPE = """\
study:
  name: train-tests
  output_root: {root}
models:
  - name: tiny
    size: tiny
    device: cpu
    micro_batch: 2
    global_batch: 4
data:
  generate: {{seed: 0, pool_size: 16, synthetic_size: 8}}
  mean_tokens: {{default: 48, synthetic: 64}}
sweep:
  seeds: [0]
  curated:
    samples_per_ability: [4]
training:
  epochs: 2
  lr: 2.0e-3
  warmup_steps: 1
  max_length: 200
  precision: fp32
  activation_checkpointing: false
  packing: true
  resume_every_minutes: 600
evaluation:
  include_base: false
  checkpoints: last
"""


@dataclass(frozen=True)
class PreparedStudy:
    root: Path  # the study directory
    trial: str  # the one trial's id
    packed: Path  # its packed mixture


@pytest.fixture(scope="session")
def prepared_study(tmp_path_factory: pytest.TempPathFactory) -> PreparedStudy:
    from hpc_instruct.launch.local import run_local
    from hpc_instruct.launch.study_files import write_study
    from hpc_instruct.recipe.study import load_study
    from hpc_instruct.stages.prepare import mixture_id, read_prepared
    from hpc_instruct.study_dir import StudyDir

    base = tmp_path_factory.mktemp("train-study")
    recipe = base / "recipe.yaml"
    recipe.write_text(RECIPE.format(root=base / "studies"))
    study = load_study(recipe)
    ex = study.expand()
    write_study(study, ex)
    report = run_local(study, ex, parallelism=1, progress=False, stages=("prepare",))
    assert not report.failed, report.failed
    (trial,) = ex.trials
    layout = StudyDir(study.directory.resolve())
    packed = read_prepared(layout, mixture_id(study, trial))["packed"]
    return PreparedStudy(layout.root, trial.id, layout.root / packed)
