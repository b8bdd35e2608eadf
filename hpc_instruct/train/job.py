"""A training job: everything one trial's training needs, resolved from the study, as one frozen value.

`hpc_instruct.stages.train.job` builds it for a train task (the recipe's model and training settings, the
trial's seed, epochs and export epochs fixed at plan time, the prepared mixture). The loop (`hpc_instruct.train.loop`)
takes only a `TrainJob`, so tests and benchmarks can run the same loop on the same data with another
backend or layout (`dataclasses.replace(job, model=replace(job.model, tp=2))`) or another output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hpc_instruct.study_dir import StudyDir
from hpc_instruct.train.config import ModelConfig, TrainingConfig
from hpc_instruct.train.presets import ModelShape


@dataclass(frozen=True)
class TrainJob:
    """One trial's training, resolved.

    Attributes:
        trial_id / label / seed: the trial's identity (the id names its folder and every marker).
        epochs: epochs to train (the plan's, so evaluation knows the checkpoint names in advance).
        export_epochs: epochs after which an HF folder is exported for evaluation.
        model / training: the recipe's sections for this trial's model and for training.
        shape: the model shape from the recipe (its vocabulary is replaced by the tokenizer's length for
            presets, and grown to it for HF folders).
        packed: the prepared mixture's packed rows; tokenizer / template: what the prepare stage used.
        root: the study directory the outputs go to (trials/<id>/...).
        gpu_peak_tflops: fallback peak per GPU for MFU when the GPU's name is not in the table.
        init_from: an HF folder to start from instead of the preset's seeded init (a pretrained base export;
            the shape stays the preset's with the tokenizer's vocabulary).
        max_steps: train exactly this many optimizer steps instead of `epochs` epochs, and export once, at the
            end, to `export_dir(0)` (pretraining a base model).
        kind: "trial" (outputs under trials/<id>/) or "base" (a pretrained base model, under bases/<id>/).
    """

    trial_id: str
    label: str
    seed: int
    epochs: int
    export_epochs: tuple[int, ...]
    model: ModelConfig
    training: TrainingConfig
    shape: ModelShape
    packed: Path
    tokenizer: str
    template: str
    root: Path
    gpu_peak_tflops: float | None = None
    planned_steps: int = 0
    init_from: Path | None = None
    max_steps: int | None = None
    kind: Literal["trial", "base"] = "trial"

    @property
    def study_dir(self) -> StudyDir:
        return StudyDir(self.root)

    @property
    def trial_dir(self) -> Path:
        if self.kind == "base":
            return self.study_dir.base(self.trial_id)
        return self.study_dir.trial(self.trial_id)

    @property
    def checkpoints_dir(self) -> Path:
        if self.kind == "base":
            return self.study_dir.base_checkpoints(self.trial_id)
        return self.study_dir.checkpoints(self.trial_id)

    def export_dir(self, epoch: int) -> Path:
        if self.kind == "base":
            return self.study_dir.base_export(self.trial_id)
        return self.study_dir.export(self.trial_id, epoch)

    @property
    def log_path(self) -> Path:
        if self.kind == "base":
            return self.study_dir.base_step_log(self.trial_id)
        return self.study_dir.step_log(self.trial_id)

    @property
    def ranks(self) -> int:
        return self.model.tp * self.model.pp * self.model.dp
