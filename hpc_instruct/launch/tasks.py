"""The stage graph as tasks: what runs, what each task produces, what it waits for, and how tasks are grouped
into array jobs (one per stage and resource shape).

    prepare  one task per distinct mixture (sample, tokenize, pack)           -> mixtures/<id>/ (+ marker)
    train    one task per trial, after its mixture                            -> trials/<id>/trial.json (+ marker)
    eval     one task per shard (checkpoint x eval set x range), after its trial -> eval/.../part-*.parquet (+ marker)
    aggregate one task, after every eval task                                 -> results/scores.parquet (+ marker)

A task is done when its output's marker carries the task's id (content hash): a re-run skips exactly that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.atomic import is_done
from hpc_instruct.launch.layout import StudyLayout
from hpc_instruct.recipe.expand import Expansion
from hpc_instruct.recipe.hashing import digest
from hpc_instruct.recipe.study import Study
from hpc_instruct.train.export_check import trial_exports_problem

STAGES = ("prepare", "train", "eval", "aggregate")
EVAL_WEIGHTS_GB_PER_GPU = 40.0  # planning: bf16 weights that one eval GPU holds with room for the KV cache


@dataclass(frozen=True)
class Resources:
    """What one array element of a group asks Slurm for."""

    nodes: int
    tasks_per_node: int  # one task per rank (srun starts them; torch.distributed rendezvous from Slurm env)
    gpus_per_node: int
    cpus_per_task: int
    mem_gb: float  # per node
    time_min: int


def eval_gpus(num_parameters: int, device: str) -> int:
    """GPUs one eval task needs: bf16 weights (2 bytes/param) at <= EVAL_WEIGHTS_GB_PER_GPU per GPU."""
    if device != "cuda":
        return 0
    return max(1, math.ceil(2 * num_parameters / 1e9 / EVAL_WEIGHTS_GB_PER_GPU))


def resources(study: Study, stage: str, group: str) -> Resources:
    """Resources of one array element, from the recipe's stage settings and the group's shape.

    train groups are `<nodes>n<gpus>g` (one rank per GPU, cpus_per_task CPUs each) or `<nodes>n<ranks>cpu`;
    eval groups are `<gpus>g` (a model that does not fit one GPU is evaluated with tensor parallelism).
    """
    ex = study.recipe.execution
    cfg = getattr(ex, stage)
    if stage == "train":
        nodes, rest = group.split("n")
        count = int(rest.rstrip("gcpu"))
        gpus = count if rest.endswith("g") else 0
        return Resources(int(nodes), count, gpus, cfg.cpus_per_task, cfg.mem_gb, cfg.time_min)
    if stage == "eval":
        gpus = int(group.rstrip("g"))
        return Resources(1, 1, gpus, cfg.cpus_per_task, cfg.mem_gb, cfg.time_min)
    return Resources(1, 1, cfg.gpus, cfg.cpus_per_task, cfg.mem_gb, cfg.time_min)


@dataclass(frozen=True)
class Task:
    stage: str
    id: str
    group: str  # resource shape: tasks of one stage and group go into one array job
    output: str  # path of the task's output, relative to the study directory (its marker sits next to it)
    after: str = ""  # id of the task this one waits for ("" = nothing beyond its stage's predecessor)
    label: str = ""

    def done(self, layout: StudyLayout) -> bool:
        if not is_done(layout.root / self.output, self.id):
            return False
        # A finished trial counts only while every export it lists holds its weights (see train/export_check).
        return self.stage != "train" or trial_exports_problem(layout.root, layout.root / self.output) is None


def thread_env(threads: int) -> dict[str, str]:
    """CPU thread settings of a task, the same under every executor (thread counts change float reductions)."""
    n = str(max(1, int(threads)))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "HPCI_THREADS": n}


def mixture_id(study: Study, trial) -> str:
    """A prepare task's id: the mixture request, its seed, the data pin, and the tokenizer the packing uses."""
    m = next(m for m in study.recipe.models if m.name == trial.model)
    tokenizer = m.tokenizer or m.path or "study-tokenizer"
    return "m" + digest([trial.mixture, trial.seed, study.facts.fingerprint, tokenizer], 15)


def build_tasks(study: Study, ex: Expansion) -> list[Task]:
    layout = StudyLayout(Path("."))
    models = {m.name: m for m in study.recipe.models}
    tasks: list[Task] = []
    seen: set[str] = set()
    for t in ex.trials:
        mid = mixture_id(study, t)
        if mid not in seen:
            seen.add(mid)
            tasks.append(Task("prepare", mid, "cpu", _rel(layout.mixture(mid) / "prepared.json"),
                              label=f"mixture of {t.label}"))
    owners = {t.id: t.model for t in ex.trials} | {b.id: b.model for b in ex.baselines}
    for t in ex.trials:
        m = models[t.model]
        tasks.append(Task("train", t.id, _train_group(m, t), _rel(layout.trial(t.id) / "trial.json"),
                          after=mixture_id(study, t), label=t.label))
    trials = {t.id for t in ex.trials}
    for e in ex.eval_tasks:
        m = models[owners[e.trial]]
        gpus = eval_gpus(study.shapes[m.name].num_parameters, m.device)
        group = f"{max(gpus, study.recipe.execution.eval.gpus) if gpus else 0}g"
        out = layout.eval_part(e.trial, e.checkpoint, e.ability, e.split, e.shard, e.shards)
        tasks.append(Task("eval", e.id, group, _rel(out), after=e.trial if e.trial in trials else "",
                          label=f"{e.trial}/{e.checkpoint}/{e.eval_set}#{e.shard}"))
    aid = "a" + digest(sorted(e.id for e in ex.eval_tasks), 15)
    tasks.append(Task("aggregate", aid, "cpu", _rel(layout.results / "report.html"), label="aggregate"))
    return tasks


def _rel(path: Path) -> str:
    return str(path)


def _train_group(m, t) -> str:
    gpn = t.gpus // t.nodes if t.gpus else 0
    return f"{t.nodes}n{gpn}g" if m.device == "cuda" else f"{t.nodes}n{(t.tp * t.pp * t.dp) // t.nodes}cpu"
