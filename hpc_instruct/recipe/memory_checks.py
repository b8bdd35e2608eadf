"""The recipe's layouts against the memory of its GPU and nodes (`hpc_instruct.train.scale`).

For each megatron model on CUDA: the fullest training rank must fit the GPU, a node's processes and
checkpoint/export transients must fit `execution.train.mem_gb`, tensor parallelism must stay inside a node,
and an eval task must fit weights plus KV cache on the GPUs it holds: the fewest tensor-parallel ranks
(`eval_gpus`, at least `execution.eval.gpus`) that fit, one process per GPU (transformers' TP plan).
A layout that does not fit is a problem at the model's line naming the smallest change that fits, written as
overrides that can be pasted after the recipe (`hpci validate r.yaml models.big.tp=8 ...`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpc_instruct.recipe.schema import Recipe
from hpc_instruct.recipe.source import KeyPath
from hpc_instruct.train.config import ModelConfig
from hpc_instruct.train.presets import ModelShape
from hpc_instruct.train.scale.cache import rank_params
from hpc_instruct.train.scale.costs import CheckpointSave, checkpoint_save
from hpc_instruct.train.scale.fit import TrainFit, bigger_gpu, check_train, host_needed_gib, smallest_fix
from hpc_instruct.train.scale.gpu import GpuSpec, larger_presets
from hpc_instruct.train.scale.memory import (
    EVAL_TP_SIZES,
    Breakdown,
    EvalSetup,
    TrainSetup,
    eval_tp,
    gpu_eval,
    save_seconds,
)
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
    save: CheckpointSave | None = None  # resume checkpoint size and save time (shown by plan, not enforced)
    eval_tp: int = 1  # GPUs (tensor-parallel ranks) of one eval task


def train_setup(m: ModelConfig, shape: ModelShape, recipe: Recipe) -> TrainSetup:
    t = recipe.training
    return TrainSetup(LayoutKey(shape, m.tp, m.pp, m.vpp), m.dp, m.nodes, m.micro_batch, m.global_batch,
                      t.max_length, t.precision, t.activation_checkpointing,
                      m.sequence_parallel, m.distributed_optimizer)


def eval_setup(shape: ModelShape, recipe: Recipe, batch_size: int | None = None, tp: int = 1) -> EvalSetup:
    ev = recipe.evaluation
    return EvalSetup(shape.num_parameters, shape.num_layers, shape.num_query_groups * shape.head_dim,
                     shape.hidden_size, shape.ffn_hidden_size, shape.vocab_size,
                     batch_size or ev.batch_size, recipe.training.max_length, ev.max_new_tokens, tp)


def eval_gpus(shape: ModelShape, recipe: Recipe) -> int | None:
    """GPUs one eval task of a CUDA model holds: the fewest tensor-parallel ranks whose fullest rank fits
    weights + KV cache on `execution.eval_gpu`, at least `execution.eval.gpus`; None when no width fits.

    33B in bf16 (61 GiB of weights + 2 x 3072 tokens of KV cache) fits one 80 GB GPU; 70B (128 GiB) needs 2.
    """
    ex = recipe.execution
    gpu = ex.gpu_spec("eval")
    floor = max(1, ex.eval.gpus)
    need = eval_tp(eval_setup(shape, recipe), gpu.memory_gib, shape.num_attention_heads, shape.num_query_groups,
                   gpu.gpus_per_node)
    if need is None:
        return None
    return max(need, floor)


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
    if ex.eval.gpus > 1 and (ex.eval.gpus not in EVAL_TP_SIZES or ex.eval.gpus > eval_gpu.gpus_per_node):
        widths = [t for t in EVAL_TP_SIZES if t <= eval_gpu.gpus_per_node]
        checker.problem(("execution", "eval", "gpus"),
                        f"{ex.eval.gpus} GPUs per eval task: the model is split over them by tensor parallelism, "
                        f"which needs a width in {widths} ({eval_gpu.gpus_per_node} GPUs per {eval_gpu.name} node)",
                        f"execution.eval.gpus={max(t for t in widths if t <= ex.eval.gpus)}")
        return {}
    out: dict[str, ModelMemory] = {}
    for i, m in enumerate(recipe.models):
        shape = shapes.get(m.name)
        at: KeyPath = ("models", i)
        if shape is not None and m.device == "cuda" and m.backend == "hf":
            _hf_check(checker, at, m, shape, gpu)
        if shape is None or m.device != "cuda" or m.backend != "megatron":
            continue
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
        width = eval_gpus(shape, recipe)
        evaluation = gpu_eval(eval_setup(shape, recipe, tp=width or max(EVAL_TP_SIZES)))
        ranks = rank_params(setup.key)
        save = checkpoint_save(setup.key, ranks, setup.value_bytes, ex.filesystem_gbps, ex.warning_signal_s,
                               node_seconds=max(save_seconds(setup, r, ex.filesystem_gbps) for r in ranks))
        out[m.name] = ModelMemory(m.name, gpu.name, gpu.memory_gib, fit, evaluation, eval_gpu.name, eval_gpu.memory_gib,
                                  save, width or 0)
        if not fit.gpu_ok:
            _gpu_problem(checker, at, m, fit, gpu)
        elif not fit.host_ok:
            checker.problem(("execution", "train", "mem_gb"),
                            f"a node training {m.name!r} needs {fit.host.describe()}, more than mem_gb={ex.train.mem_gb:g}",
                            f"execution.train.mem_gb={host_needed_gib(fit)}")
        if fit.ok:  # a layout that does not fit is reported as such; its save time would change with the fix
            _signal_check(checker, m, save)
        if width is None:
            _eval_problem(checker, m, shape, recipe, eval_gpu, evaluation)
        elif shape.num_attention_heads % width or shape.num_query_groups % width:
            checker.problem(("execution", "eval", "gpus"),
                            f"{width} GPUs cannot split {m.name!r}: tensor parallelism must divide its "
                            f"{shape.num_attention_heads} attention heads and {shape.num_query_groups} key/value heads",
                            f"execution.eval.gpus={eval_tp(eval_setup(shape, recipe), eval_gpu.memory_gib, shape.num_attention_heads, shape.num_query_groups, eval_gpu.gpus_per_node)}")
    return out


HF_BYTES_PER_PARAM = 16  # hf backend: fp32 weights, fp32 gradients, two fp32 Adam moments, all on every GPU


def _hf_check(checker, at: KeyPath, m: ModelConfig, shape: ModelShape, gpu: GpuSpec) -> None:
    """The hf backend replicates the whole model and its Adam state on every GPU (DDP, no sharding)."""
    from hpc_instruct.train.scale.memory import FRAMEWORK_GIB, GIB

    need = (HF_BYTES_PER_PARAM * shape.num_parameters) / GIB + FRAMEWORK_GIB
    if need > gpu.memory_gib:
        checker.problem(at + ("backend",),
                        f"backend hf keeps fp32 weights, gradients and both Adam moments of all "
                        f"{shape.num_parameters / 1e9:.1f}B parameters on every GPU ({HF_BYTES_PER_PARAM} B/param "
                        f"= {need:.0f} GiB, before activations), more than one {gpu.name} ({gpu.memory_gib:.0f} GiB)",
                        f"models.{m.name}.backend=megatron (distributed optimizer, TP/PP) or backend=deepspeed (ZeRO-2)")


def _signal_check(checker, m: ModelConfig, save: CheckpointSave) -> None:
    """The warning signal must leave time for a synchronous resume save (1.5x the estimate, plus a margin)."""
    ex = checker.recipe.execution
    if not save.fits_warning:
        needed = save.needed_warning_s
        checker.problem(("execution", "warning_signal_s"),
                        f"a resume save of {m.name!r} takes ~{save.seconds:.0f} s (a node writes its ranks' shards at "
                        f"filesystem_gbps={ex.filesystem_gbps:g} GB/s), more than the {ex.warning_signal_s} s "
                        f"warning signal leaves", f"execution.warning_signal_s={-(-needed // 30) * 30}")


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
    """No tensor-parallel width inside a node fits: name a smaller batch at the widest width, or a bigger GPU."""
    widest = max(t for t in EVAL_TP_SIZES if t <= gpu.gpus_per_node and not shape.num_attention_heads % t
                 and not shape.num_query_groups % t)
    fits = [b for b in range(recipe.evaluation.batch_size - 1, 0, -1)
            if gpu_eval(eval_setup(shape, recipe, b, widest)).gib <= gpu.memory_gib]
    bigger = [g.name for g in larger_presets(gpu) if g.memory_gib >= ev.gib]
    hint = (f"evaluation.batch_size={fits[0]}" if fits else
            f"execution.eval_gpu={bigger[0]}" if bigger else "a GPU with more memory (execution.eval_gpu)")
    checker.problem(("evaluation", "batch_size"),
                    f"evaluating {m.name!r} on {widest} {gpu.name} (tensor parallel) needs {ev.describe()} per GPU",
                    hint)


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
