"""A training job: everything one trial's training needs, resolved from the study, as one frozen value.

`job_from_context` reads it off a train task (the recipe's model and training settings, the trial's seed,
epochs and export epochs fixed at plan time, the prepared mixture). The loop (`hpc_instruct.train.loop`)
takes only a `TrainJob`, so tests and benchmarks can run the same loop on the same data with another
backend or layout (`dataclasses.replace(job, model=replace(job.model, tp=2))`) or another output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.launch.layout import StudyLayout
from hpc_instruct.recipe.schema import ModelConfig, TrainingConfig
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

    @property
    def layout(self) -> StudyLayout:
        return StudyLayout(self.root)

    @property
    def trial_dir(self) -> Path:
        return self.layout.trial(self.trial_id)

    @property
    def checkpoints_dir(self) -> Path:
        return self.layout.checkpoints(self.trial_id)

    def export_dir(self, epoch: int) -> Path:
        return self.layout.export(self.trial_id, epoch)

    @property
    def log_path(self) -> Path:
        return self.trial_dir / "log.parquet"

    @property
    def ranks(self) -> int:
        return self.model.tp * self.model.pp * self.model.dp


def job_from_context(ctx) -> TrainJob:
    """The job of a train task (`hpc_instruct.launch.entry.TaskContext`)."""
    from hpc_instruct.data.prepare import prepared

    trial = ctx.trial()
    recipe = ctx.study.recipe
    model = next(m for m in recipe.models if m.name == trial.model)
    prep = prepared(ctx.layout, ctx.task.after)
    return TrainJob(
        trial_id=trial.id,
        label=trial.label,
        seed=trial.seed,
        epochs=trial.epochs,
        export_epochs=tuple(trial.checkpoints),
        model=model,
        training=recipe.training,
        shape=ctx.study.shapes[model.name],
        packed=ctx.layout.root / prep["packed"],
        tokenizer=prep["tokenizer"],
        template=prep["template"],
        root=ctx.layout.root,
        gpu_peak_tflops=recipe.execution.gpu_spec().peak_tflops(recipe.training.precision),
        planned_steps=trial.steps,
    )
