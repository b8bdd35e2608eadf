"""The study directory: the only place a study keeps state (a shared filesystem path).

    <study>/study.yaml                      resolved recipe (what was planned)
    <study>/plan.json                       the expansion (trials, eval tasks, jobs)
    <study>/data/                           generated data (demo studies)
    <study>/mixtures/<hash>/                materialised mixtures + manifest.json
    <study>/trials/<id>/                    trial.json, log.parquet, checkpoints/, export/epoch-NNN/ (HF folders)
    <study>/eval/<owner>/<ckpt>/<ability>-<split>/part-<i>-of-<n>.parquet (+ .done marker)
    <study>/logs/                           Slurm / local logs
    <study>/state/                          what the launcher knows (submissions, attempts)
    <study>/results/                        scores.parquet, curves, plots, report
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StudyLayout:
    root: Path

    @property
    def recipe(self) -> Path:
        return self.root / "study.yaml"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def mixtures(self) -> Path:
        return self.root / "mixtures"

    def mixture(self, mixture_hash: str) -> Path:
        return self.mixtures / mixture_hash

    def trial(self, trial_id: str) -> Path:
        return self.root / "trials" / trial_id

    def checkpoints(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "checkpoints"

    def export(self, trial_id: str, epoch: int) -> Path:
        """The HF-format model folder of a trial at an epoch (what evaluation loads)."""
        return self.trial(trial_id) / "export" / f"epoch-{epoch:03d}"

    def eval_part(self, owner: str, checkpoint: str, ability: str, split: str, shard: int, shards: int) -> Path:
        return self.root / "eval" / owner / checkpoint / f"{ability}-{split}" / f"part-{shard:05d}-of-{shards:05d}.parquet"

    @property
    def eval_root(self) -> Path:
        return self.root / "eval"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def results(self) -> Path:
        return self.root / "results"
