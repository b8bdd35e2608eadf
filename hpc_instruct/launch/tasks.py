"""The stage graph as tasks: what runs, what each task produces, what it waits for, and how tasks are grouped
into array jobs (one per stage and resource shape).

    prepare  one task per distinct mixture (sample, tokenize, pack)           -> mixtures/<id>/ (+ marker)
    base     one task per model with `pretrain` (pretrain on the corpus)      -> bases/<id>/base.json (+ marker)
    train    one task per trial, after its mixture (and its model's base)     -> trials/<id>/trial.json (+ marker)
    eval     one task per shard (checkpoint x eval set x range), after its trial (a base checkpoint: after its
             model's base task, when the model is pretrained)                 -> eval/.../part-*.parquet (+ marker)
    aggregate one task, after every eval task                                 -> results/scores.parquet (+ marker)

A task is done when its output's marker carries the task's id (content hash): a re-run skips exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.atomic import is_done
from hpc_instruct.evaluate.engines import VLLM, resolve_engine
from hpc_instruct.expansion import BASE_SOURCE, Expansion
from hpc_instruct.hashing import digest
from hpc_instruct.recipe.study import Study
from hpc_instruct.stages import ORDER
from hpc_instruct.stages.base import base_id
from hpc_instruct.stages.prepare import mixture_id
from hpc_instruct.study_dir import SELECTED, StudyDir
from hpc_instruct.train.export_check import export_problem, trial_exports_problem

STAGES = ORDER  # prepare -> base -> train -> eval -> aggregate


@dataclass(frozen=True)
class Resources:
    """What one array element of a group asks Slurm for."""

    nodes: int
    tasks_per_node: int  # one task per rank (srun starts them; torch.distributed rendezvous from Slurm env)
    gpus_per_node: int
    cpus_per_task: int
    mem_gb: float  # per node
    time_min: int


def eval_gpus(study: Study, model: str) -> int:
    """GPUs one eval task of `model` holds: none on the CPU; on CUDA the fewest tensor-parallel ranks whose
    fullest rank fits bf16 weights + KV cache (`recipe.memory_checks.eval_gpus`, at least
    `execution.eval.gpus`; validation has refused a model that fits no width, so the widest is a fallback)."""
    from hpc_instruct.recipe.memory_checks import eval_gpus as needed
    from hpc_instruct.train.scale.memory import EVAL_TP_SIZES

    m = study.model(model)
    if m.device != "cuda":
        return 0
    return needed(study.shapes[model], study.recipe) or max(EVAL_TP_SIZES)


def eval_group(gpus: int, engine: str) -> str:
    """`<gpus>g`: one process per GPU (native: transformers' tensor parallelism over the ranks);
    `<gpus>g-vllm`: one process holding every GPU (vLLM runs its own tensor-parallel workers)."""
    return f"{gpus}g-{VLLM}" if engine == VLLM else f"{gpus}g"


def eval_ranks(group: str) -> int:
    """Processes one element of an eval group starts (one per GPU for native, one for vLLM, one on CPU)."""
    gpus, _, engine = group.partition("g")
    return 1 if engine or int(gpus) == 0 else int(gpus)


def resources(study: Study, stage: str, group: str) -> Resources:
    """Resources of one array element, from the recipe's stage settings and the group's shape.

    train and base groups are `<nodes>n<gpus>g` (one rank per GPU, cpus_per_task CPUs each) or `<nodes>n<ranks>cpu`
    (a base task is laid out and resourced as its model's trials: `execution.train`);
    eval groups are `<gpus>g` (one rank per GPU: a model that does not fit one GPU is split over them by tensor
    parallelism) or `<gpus>g-vllm` (one process, vLLM's tensor parallelism over the GPUs).
    """
    ex = study.recipe.execution
    cfg = getattr(ex, "train" if stage == "base" else stage)
    if stage in ("train", "base"):
        nodes, rest = group.split("n")
        count = int(rest.rstrip("gcpu"))
        gpus = count if rest.endswith("g") else 0
        return Resources(int(nodes), count, gpus, cfg.cpus_per_task, cfg.mem_gb, cfg.time_min)
    if stage == "eval":
        gpus = int(group.partition("g")[0])
        return Resources(1, eval_ranks(group), gpus, cfg.cpus_per_task, cfg.mem_gb, cfg.time_min)
    return Resources(1, 1, cfg.gpus, cfg.cpus_per_task, cfg.mem_gb, cfg.time_min)


@dataclass(frozen=True)
class Task:
    stage: str
    id: str
    group: str  # resource shape: tasks of one stage and group go into one array job
    output: str  # path of the task's output, relative to the study directory (its marker sits next to it)
    after: str = ""  # id of the task this one waits for ("" = nothing beyond its stage's predecessor)
    label: str = ""
    owner: str = ""  # train and eval: the trial (or base model) the task belongs to
    checkpoint: str = ""  # eval: the checkpoint it evaluates (epoch-NNN | selected | base)
    needs: tuple[str, ...] = ()  # ids of tasks of earlier stages it needs besides `after` (a pretrained base)

    def done(self, sdir: StudyDir) -> bool:
        if not is_done(sdir.root / self.output, self.id):
            return False
        if self.stage == "base":  # a pretrained base counts only while its export holds its weights
            return export_problem(sdir.base_export(self.id)) is None
        # A finished trial counts only while every export it lists holds its weights (see train/export_check).
        return self.stage != "train" or trial_exports_problem(sdir.root, sdir.root / self.output) is None

    @property
    def waits_for_selection(self) -> bool:
        """An eval shard of the checkpoint chosen on valid: it reads its trial's valid results."""
        return self.checkpoint == SELECTED


def thread_env(threads: int) -> dict[str, str]:
    """CPU thread settings of a task, the same under every executor (thread counts change float reductions)."""
    n = str(max(1, int(threads)))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "HPCI_THREADS": n}


def build_tasks(study: Study, ex: Expansion) -> list[Task]:
    sdir = StudyDir(Path("."))
    tasks: list[Task] = []
    seen: set[str] = set()
    for t in ex.trials:
        mid = mixture_id(study, t)
        if mid not in seen:
            seen.add(mid)
            tasks.append(Task("prepare", mid, "cpu", _rel(sdir.prepared(mid)), label=f"mixture of {t.label}"))
    bases = {m.name: base_id(study, m) for m in study.recipe.models if m.pretrain is not None}
    used = {t.model for t in ex.trials} | {b.model for b in ex.baselines}
    for m in study.recipe.models:
        if m.name in bases and m.name in used:
            tasks.append(Task("base", bases[m.name], _layout_group(m, m.nodes, m.tp * m.pp * m.dp),
                              _rel(sdir.base_summary(bases[m.name])), label=f"base/{m.name}"))
    for t in ex.trials:
        m = study.model(t.model)
        needs = (bases[t.model],) if t.model in bases else ()
        tasks.append(Task("train", t.id, _train_group(m, t), _rel(sdir.trial_summary(t.id)),
                          after=mixture_id(study, t), label=t.label, owner=t.id, needs=needs))
    groups = {m.name: eval_group(eval_gpus(study, m.name), resolve_engine(study.recipe.evaluation.engine, m.device))
              for m in study.recipe.models}
    for e in ex.eval_tasks:
        owner = ex.owner(e.trial)
        group = groups[owner.model]
        is_base = owner.source == BASE_SOURCE
        tasks.append(Task("eval", e.id, group, _rel(sdir.eval_shard(e)),
                          after=e.trial if not is_base else "",
                          label=f"{e.trial}/{e.checkpoint}/{e.eval_set}#{e.shard}", owner=e.trial,
                          checkpoint=e.checkpoint,
                          needs=(bases[owner.model],) if is_base and owner.model in bases else ()))
    aid = "a" + digest(sorted(e.id for e in ex.eval_tasks), 15)
    tasks.append(Task("aggregate", aid, "cpu", _rel(sdir.report_html), label="aggregate"))
    return tasks


def _rel(path: Path) -> str:
    return str(path)


def _train_group(m, t) -> str:
    return _layout_group(m, t.nodes, t.tp * t.pp * t.dp)


def _layout_group(m, nodes: int, ranks: int) -> str:
    """`<nodes>n<gpus per node>g` on CUDA, `<nodes>n<ranks per node>cpu` on the CPU."""
    return f"{nodes}n{ranks // nodes}g" if m.device == "cuda" else f"{nodes}n{ranks // nodes}cpu"


def group_ranks(group: str) -> int:
    """Ranks of one element of a train or base group (`<nodes>n<per node>g|cpu`)."""
    nodes, rest = group.split("n", 1)
    return int(nodes) * int(rest.rstrip("gcpu"))
