"""The recipe's layouts against the memory of its GPU and nodes (`hpc_instruct.train.scale`).

For each megatron model on CUDA: the fullest training rank must fit the GPU, a node's processes and
checkpoint/export transients must fit `execution.train.mem_gb`, tensor parallelism must stay inside a node,
and an eval task (one GPU: the eval code loads the model onto one device) must fit weights plus KV cache.
A layout that does not fit is a problem at the model's line naming the smallest change that fits, written as
overrides that can be pasted after the recipe (`hpci validate r.yaml models.big.tp=8 ...`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpc_instruct.recipe.schema import Recipe
from hpc_instruct.recipe.source import KeyPath
from hpc_instruct.train.config import ModelConfig
from hpc_instruct.train.presets import ModelShape
from hpc_instruct.train.scale.fit import TrainFit, bigger_gpu, check_train, host_needed_gib, smallest_fix
from hpc_instruct.train.scale.gpu import GpuSpec, larger_presets
from hpc_instruct.train.scale.memory import Breakdown, EvalSetup, TrainSetup, gpu_eval
from hpc_instruct.train.scale.ranks import LayoutKey


@dataclass(frozen=True)
class ModelMemory:
    """What `hpci plan` shows for one model."""

    model: str
    gpu: str
    gpu_gib: float
    train: TrainFit
    eval: Breakdown
    eval_gpu: str
    eval_gpu_gib: float


def train_setup(m: ModelConfig, shape: ModelShape, recipe: Recipe) -> TrainSetup:
    t = recipe.training
    return TrainSetup(LayoutKey(shape, m.tp, m.pp, m.vpp), m.dp, m.nodes, m.micro_batch, m.global_batch,
                      t.max_length, t.precision, t.activation_checkpointing,
                      m.sequence_parallel, m.distributed_optimizer)


def eval_setup(shape: ModelShape, recipe: Recipe, batch_size: int | None = None) -> EvalSetup:
    ev = recipe.evaluation
    return EvalSetup(shape.num_parameters, shape.num_layers, shape.num_query_groups * shape.head_dim,
                     shape.hidden_size, shape.ffn_hidden_size, shape.vocab_size,
                     batch_size or ev.batch_size, recipe.training.max_length, ev.max_new_tokens)


def check_memory(checker, shapes: dict[str, ModelShape]) -> dict[str, ModelMemory]:
    """Record every memory problem on `checker` (a `recipe.checks.Checker`); the figures of each model."""
    recipe: Recipe = checker.recipe
    ex = recipe.execution
    gpus = {}
    for stage, key in (("train", "gpu"), ("eval", "eval_gpu")):
        try:
            gpus[stage] = ex.gpu_spec(stage)
        except KeyError as exc:
            checker.problem(("execution", key), str(exc.args[0]))
    if len(gpus) < 2:
        return {}
    gpu, eval_gpu = gpus["train"], gpus["eval"]
    if ex.eval.gpus > 1:
        checker.problem(("execution", "eval", "gpus"),
                        f"{ex.eval.gpus} GPUs requested, but an eval task loads its model onto one GPU",
                        "set gpus: 1 (the memory check says whether the model fits one GPU)")
    out: dict[str, ModelMemory] = {}
    for i, m in enumerate(recipe.models):
        shape = shapes.get(m.name)
        if shape is None or m.device != "cuda" or m.backend != "megatron":
            continue
        at: KeyPath = ("models", i)
        per_node = m.gpus_per_node or (m.tp * m.pp * m.dp) // m.nodes
        if m.tp > min(per_node, gpu.gpus_per_node):
            checker.problem(at + ("tp",), f"tp={m.tp} spans nodes: a node has {min(per_node, gpu.gpus_per_node)} "
                            f"GPUs of this model (tp*pp*dp/nodes, at most {gpu.gpus_per_node} per {gpu.name} node)",
                            "keep tp within a node; use pp across nodes")
            continue
        if LayoutKey(shape, m.tp, m.pp, m.vpp).problems():
            continue  # reported by the layout checks
        setup = train_setup(m, shape, recipe)
        fit = check_train(setup, gpu, ex.train.mem_gb)
        evaluation = gpu_eval(eval_setup(shape, recipe))
        out[m.name] = ModelMemory(m.name, gpu.name, gpu.memory_gib, fit, evaluation, eval_gpu.name, eval_gpu.memory_gib)
        if not fit.gpu_ok:
            _gpu_problem(checker, at, m, fit, gpu)
        elif not fit.host_ok:
            checker.problem(("execution", "train", "mem_gb"),
                            f"a node training {m.name!r} needs {fit.host.describe()}, more than mem_gb={ex.train.mem_gb:g}",
                            f"execution.train.mem_gb={host_needed_gib(fit)}")
        if evaluation.gib > eval_gpu.memory_gib:
            _eval_problem(checker, m, shape, recipe, eval_gpu, evaluation)
    return out


def _gpu_problem(checker, at: KeyPath, m: ModelConfig, fit: TrainFit, gpu: GpuSpec) -> None:
    stage, worst = fit.fullest
    fix = smallest_fix(fit.setup, gpu, fit.node_mem_gib)
    other = bigger_gpu(fit.setup, gpu, fit.node_mem_gib)
    hints = []
    if fix is not None:
        overrides = " ".join(
            f"training.{k}={_text(v)}" if k == "activation_checkpointing" else f"models.{m.name}.{k}={_text(v)}"
            for k, v in fix.changes)
        hints.append(f"smallest change that fits: {overrides} ({fix.gpus} GPUs, "
                     f"{fix.fit.fullest[1].gib:.1f} GiB on the fullest rank)")
    if other is not None:
        hints.append(f"or execution.gpu={other.name}")
    checker.problem(at, f"{m.name!r} does not fit {gpu.name} ({gpu.memory_gib:.1f} GiB): pipeline rank {stage} "
                    f"needs {worst.describe()}", "; ".join(hints) or "no layout up to a node's GPUs fits")


def _eval_problem(checker, m: ModelConfig, shape: ModelShape, recipe: Recipe, gpu: GpuSpec, ev: Breakdown) -> None:
    fits = [b for b in range(recipe.evaluation.batch_size - 1, 0, -1)
            if gpu_eval(eval_setup(shape, recipe, b)).gib <= gpu.memory_gib]
    bigger = [g.name for g in larger_presets(gpu) if g.memory_gib >= ev.gib]
    hint = (f"evaluation.batch_size={fits[0]}" if fits else
            f"execution.eval_gpu={bigger[0]}" if bigger else "a GPU with more memory (execution.eval_gpu)")
    checker.problem(("evaluation", "batch_size"),
                    f"evaluating {m.name!r} on one {gpu.name} needs {ev.describe()}", hint)


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
