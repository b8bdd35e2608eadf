"""The study directory: the only place a study keeps state (a shared filesystem path), and the only module that
spells a file name of it. Everything else asks `StudyDir` for a path.

    <study>/study.yaml                               resolved recipe (what was planned)
    <study>/plan.json                                the expansion (trials, base models, eval tasks, jobs)
    <study>/data/                                    generated data (demo studies)
    <study>/tokenizer/                               the study tokenizer for preset models
    <study>/.<name>.lock                             study-wide locks (data generation, tokenizer, runs)
    <study>/mixtures/<prepare task>/                 one prepare task: <content>/ (samples.jsonl, manifest.json),
                                                     packed/ (tokenized rows), prepared.json (+ .done marker)
    <study>/trials/<id>/                             trial.json (+ .done), log.parquet, checkpoints/step-NNNNNNNN/,
                                                     export/epoch-NNN/ (HF folders, + .done)
    <study>/bases/<id>/                              one pretrained base model (`models[].pretrain`): base.json
                                                     (+ .done), log.parquet, checkpoints/, packed/ (the corpus),
                                                     export/ (the HF folder its trials start from, + .done)
    <study>/eval/<owner>/<checkpoint>/<ability>-<split>/part-<i>-of-<n>.parquet (+ .done marker)
    <study>/logs/                                    Slurm / local logs
    <study>/state/                                   submissions.jsonl, code/<hash>/ (the code jobs run), old plans
    <study>/results/                                 scores.parquet, selection.parquet, completeness.json,
                                                     report.html, report.md, plots/, tables/

The checkpoint vocabulary of eval tasks and result rows lives here too: `base` (the untrained model),
`selected` (the epoch chosen on valid) and `epoch-NNN` (`epoch_name`, parsed back by `parse_epoch`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

BASE = "base"
SELECTED = "selected"
_EPOCH = re.compile(r"^epoch-(\d{3,})$")


def epoch_name(epoch: int) -> str:
    """The checkpoint name of an epoch's export: `epoch-003`."""
    return f"epoch-{epoch:03d}"


def parse_epoch(name: str) -> int | None:
    """The epoch of an `epoch-NNN` checkpoint name; None for `base`, `selected` or anything else."""
    match = _EPOCH.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class StudyDir:
    """Every path of one study, from its root."""

    root: Path

    # ------------------------------------------------------------------ what was planned
    @property
    def recipe(self) -> Path:
        return self.root / "study.yaml"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    def lock(self, name: str) -> Path:
        """A study-wide lock file (`data`, `tokenizer`, ...)."""
        return self.root / f".{name}.lock"

    # ------------------------------------------------------------------ data
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def mixtures(self) -> Path:
        return self.root / "mixtures"

    def mixture(self, prepare_id: str) -> Path:
        """The folder of one prepare task (its sampled mixture, packed rows and `prepared.json`)."""
        return self.mixtures / prepare_id

    def prepared(self, prepare_id: str) -> Path:
        """What a prepare task wrote for its train tasks (+ .done marker)."""
        return self.mixture(prepare_id) / "prepared.json"

    def packed(self, prepare_id: str) -> Path:
        return self.mixture(prepare_id) / "packed"

    # ------------------------------------------------------------------ training
    def trial(self, trial_id: str) -> Path:
        return self.root / "trials" / trial_id

    def trial_summary(self, trial_id: str) -> Path:
        """trial.json: what was trained, how, how fast, with which code (+ .done marker: the trial is done)."""
        return self.trial(trial_id) / "trial.json"

    def step_log(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "log.parquet"

    def checkpoints(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "checkpoints"

    def exports(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "export"

    def export(self, trial_id: str, epoch: int) -> Path:
        """The HF-format model folder of a trial at an epoch (what evaluation loads)."""
        return self.exports(trial_id) / epoch_name(epoch)

    # ------------------------------------------------------------------ pretrained base models
    def base(self, base_id: str) -> Path:
        return self.root / "bases" / base_id

    def base_summary(self, base_id: str) -> Path:
        """base.json: how the base model was pretrained (+ .done marker: its export is complete)."""
        return self.base(base_id) / "base.json"

    def base_export(self, base_id: str) -> Path:
        """The pretrained base model's HF folder: what its model's trials start from and base evaluation loads."""
        return self.base(base_id) / "export"

    def base_packed(self, base_id: str) -> Path:
        """The pretraining corpus, tokenized and packed."""
        return self.base(base_id) / "packed"

    def base_checkpoints(self, base_id: str) -> Path:
        return self.base(base_id) / "checkpoints"

    def base_step_log(self, base_id: str) -> Path:
        return self.base(base_id) / "log.parquet"

    # ------------------------------------------------------------------ evaluation
    @property
    def eval_root(self) -> Path:
        return self.root / "eval"

    def eval_part(self, owner: str, checkpoint: str, ability: str, split: str, shard: int, shards: int) -> Path:
        return self.eval_root / owner / checkpoint / f"{ability}-{split}" / f"part-{shard:05d}-of-{shards:05d}.parquet"

    def eval_shard(self, task) -> Path:
        """The Parquet file of an `hpc_instruct.expansion.EvalTask`."""
        return self.eval_part(task.trial, task.checkpoint, task.ability, task.split, task.shard, task.shards)

    # ------------------------------------------------------------------ launcher state
    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def submissions(self) -> Path:
        """One JSON line per submitted array job."""
        return self.state / "submissions.jsonl"

    @property
    def code_snapshots(self) -> Path:
        return self.state / "code"

    @property
    def launch_lock(self) -> Path:
        """Held by `hpci run` / `hpci submit`: one launcher per study (it names its holder)."""
        return self.state / "launch.lock"

    def local_record(self, task_id: str) -> Path:
        """What the local executor knows of a task it ran (failure reason, log, launcher pid)."""
        return self.state / "local" / f"{task_id}.json"

    def local_log(self, stage: str, task_id: str = "") -> Path:
        """The local executor's log folder of a stage, or one task's log in it."""
        folder = self.logs / "local" / stage
        return folder / f"{task_id}.log" if task_id else folder

    def old_plan(self, stamp: str) -> Path:
        """A plan.json kept when the recipe changed (the drift's "before")."""
        return self.state / "plans" / f"plan-{stamp}.json"

    # ------------------------------------------------------------------ results
    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def scores(self) -> Path:
        return self.results / "scores.parquet"

    @property
    def selection(self) -> Path:
        return self.results / "selection.parquet"

    @property
    def completeness(self) -> Path:
        return self.results / "completeness.json"

    @property
    def report_html(self) -> Path:
        return self.results / "report.html"

    @property
    def report_md(self) -> Path:
        return self.results / "report.md"

    @property
    def plots(self) -> Path:
        return self.results / "plots"

    @property
    def tables(self) -> Path:
        return self.results / "tables"

    def allocation(self, budget: int, suffix: str) -> Path:
        """The allocation plan for a budget (`yaml` recipe snippet or `json`)."""
        return self.results / f"allocation-{budget}.{suffix}"

    def plan_recipe(self, budget: int) -> Path:
        """The recipe `hpci plan-data --write` writes: plan, uniform and reconstruct arms at one budget."""
        return self.results / f"plan-{budget}.yaml"
