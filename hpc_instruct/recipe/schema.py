"""The recipe schema: frozen, typed dataclasses. YAML is only their serialisation.

Field metadata drives validation and identity:
- `lo` / `hi`: inclusive numeric bounds (`gt` for a strict lower bound);
- `identity=False`: the field does not change a trial's *result* (how it runs, not what it computes), so it is
  left out of content hashes: parallel layout, micro batch, cadence of resume checkpoints, Slurm settings.
Units are explicit in key names: `samples_per_ability`, `total_samples` and `fraction_per_ability` are
different keys, so "1" is never confused with "100%".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hpc_instruct.config_fields import required, spec
from hpc_instruct.data.abilities import ABILITY_KEYS
from hpc_instruct.train.config import ModelConfig, TrainingConfig
from hpc_instruct.train.scale.gpu import GpuSpec, gpu_preset


@dataclass(frozen=True)
class StudyConfig:
    name: str = required(help="study name; the study directory is <output_root>/<name>")
    output_root: str = spec("./studies", identity=False, help="where study directories live (a shared filesystem)")
    description: str = spec("", identity=False)


@dataclass(frozen=True)
class GeneratedData:
    """Generate the miniature ten-ability study (`hpci data demo`) instead of reading a release."""

    seed: int = spec(0, lo=0)
    pool_size: int = spec(400, lo=1, help="training items per ability")
    synthetic_size: int = spec(2000, lo=0, help="items in the synthetic pool")


@dataclass(frozen=True)
class DataConfig:
    root: str | None = spec(None, help="folder in the DoIT release layout (curated/..., synthetic/...)")
    layout: Literal["doit"] = spec("doit")
    revision: str | None = spec(None, help="data revision pinned into every id (e.g. the dataset commit)")
    abilities: tuple[str, ...] = spec(factory=lambda: ABILITY_KEYS)
    pool: Literal["full", "1000"] = spec("full", help="which curated pool files to sample from")
    synthetic_pool: str | None = spec("synthetic/40960/general_instruction_gpt4_41k.json")
    generate: GeneratedData | None = spec(None, help="generate demo data into <study>/data instead of reading root")
    mean_tokens: dict[str, int] = spec(factory=dict, identity=False,
                                       help="planning assumption per ability (or 'default'), tokens per sample")
    allow_contamination: bool = spec(False, identity=False,
                                     help="accept eval items whose prompt is in a training pool (else an error)")


@dataclass(frozen=True)
class CuratedArm:
    """Each ability gets N human-curated samples: one trial per (model, N, seed)."""

    samples_per_ability: tuple[int, ...] = required(lo=1)
    models: tuple[str, ...] | None = spec(None, help="default: every model")
    cap: bool = spec(False, help="take what a pool has when it holds fewer than requested")
    seeds: tuple[int, ...] | None = spec(None, help="this arm's seeds; default: sweep.seeds")


@dataclass(frozen=True)
class SyntheticArm:
    """N samples in total from the synthetic pool (not labelled by ability)."""

    total_samples: tuple[int, ...] = required(lo=1)
    models: tuple[str, ...] | None = spec(None)
    cap: bool = spec(False)
    seeds: tuple[int, ...] | None = spec(None, help="this arm's seeds; default: sweep.seeds")


@dataclass(frozen=True)
class Mix:
    """A named mixture: per-ability counts (or `all`) or fractions, plus synthetic samples."""

    name: str = required()
    samples_per_ability: dict[str, int | Literal["all"]] = spec(
        factory=dict, help="ability (or 'default') -> samples, or 'all' for the whole pool")
    fraction_per_ability: dict[str, float] = spec(factory=dict, help="ability (or 'default') -> fraction of its pool")
    synthetic_total_samples: int = spec(0, lo=0)
    cap: bool = spec(False)
    models: tuple[str, ...] | None = spec(None)
    predicted: dict[str, float] = spec(factory=dict, identity=False,
                                       help="ability (or 'overall') -> predicted accuracy, written by `hpci "
                                       "plan-data --write`; the report sets the measured score beside it")
    seeds: tuple[int, ...] | None = spec(None, help="this arm's seeds; default: sweep.seeds")


@dataclass(frozen=True)
class HeldOutMixes:
    """Random per-ability volumes drawn by a seed (log-uniform in [min, max] per ability), one trial per (mix,
    model, seed): the out-of-sample test of the planner. No fit uses them (curves read curated trials only)."""

    count: int = required(lo=1, help="number of mixes")
    max_per_ability: int = required(lo=1)
    min_per_ability: int = spec(1, lo=0)
    seed: int = spec(0, lo=0, help="draws the volumes")
    models: tuple[str, ...] | None = spec(None)
    cap: bool = spec(True, help="take what a pool has when it holds fewer than drawn")
    seeds: tuple[int, ...] | None = spec(None, help="this arm's seeds; default: sweep.seeds")


@dataclass(frozen=True)
class SingleAbilityArm:
    """Train on one ability at a time (for the transfer matrix)."""

    samples_per_ability: tuple[int, ...] = required(lo=1)
    abilities: tuple[str, ...] | None = spec(None, help="default: every study ability")
    models: tuple[str, ...] | None = spec(None)
    cap: bool = spec(False)
    seeds: tuple[int, ...] | None = spec(None, help="this arm's seeds; default: sweep.seeds")


@dataclass(frozen=True)
class SweepConfig:
    seeds: tuple[int, ...] = spec((0,))
    curated: CuratedArm | None = spec(None)
    synthetic: SyntheticArm | None = spec(None)
    mixes: tuple[Mix, ...] = spec(())
    single_ability: SingleAbilityArm | None = spec(None)
    held_out: HeldOutMixes | None = spec(None, help="random mixes that test the planner's predictions")


@dataclass(frozen=True)
class EvalConfig:
    splits: tuple[Literal["valid", "test"], ...] = spec(("valid", "test"))
    out_of_domain: tuple[str, ...] = spec((), help="out-of-domain sets (test split), e.g. ceval_physician")
    checkpoints: Literal["all", "last"] = spec("all")
    test_on: Literal["selected", "all"] = spec("selected", help="test split on the checkpoint selected on valid, or all")
    include_base: bool = spec(True, help="also evaluate each base model (the transfer matrix needs it)")
    items_per_shard: int = spec(200, lo=1, identity=False)
    batch_size: int = spec(16, lo=1, identity=False)
    max_new_tokens: int = spec(1024, lo=1)
    mc_mode: Literal["doit", "doit-text", "corrected"] = spec(
        "doit", help="scoring mode: the official rules (logit fallback for MC), the official text mode, or corrected")
    few_shot: int = spec(5, lo=0, help="shots for out-of-domain sets")
    engine: Literal["auto", "native", "vllm"] = spec(
        "auto", identity=False,  # hashed as resolved per model (recipe.expand), so `auto` == what it resolves to
        help="generation engine: vllm (CUDA), native (our batched loop), auto = vllm on CUDA, native on CPU")


@dataclass(frozen=True)
class StageResources:
    time_min: int = spec(60, lo=1)
    mem_gb: float = spec(16, gt=0, help="per node")
    cpus_per_task: int = spec(4, lo=1)
    gpus: int = spec(0, lo=0, help="per node; the train stage derives it from the model's layout")


@dataclass(frozen=True)
class GpuValues:
    """A GPU given by its figures instead of a preset name (dense peaks, no sparsity)."""

    memory_gib: float = required(gt=0, help="device memory per GPU, GiB")
    bf16_tflops: float = required(gt=0, help="dense bf16 tensor-core peak")
    fp16_tflops: float | None = spec(None, gt=0, help="default: bf16_tflops")
    fp32_tflops: float | None = spec(None, gt=0, help="TF32 peak fp32 training gets; default: bf16_tflops / 2")
    gpus_per_node: int = spec(8, lo=1, help="GPUs in one node; tensor parallelism stays inside a node")
    memory_tbps: float | None = spec(None, gt=0, help="HBM bandwidth, TB/s (eval decode); default bf16_tflops / 150")


@dataclass(frozen=True)
class ExecutionConfig:
    executor: Literal["local", "debug", "slurm"] = spec("local")
    partition: str | None = spec(None)
    account: str | None = spec(None)
    qos: str | None = spec(None)
    array_throttle: int = spec(0, lo=0, help="max array elements running at once (%N); 0 = no limit")
    max_array_size: int | None = spec(None, lo=1, help="default: the cluster's MaxArraySize")
    setup: tuple[str, ...] = spec((), help="shell lines run before each task (module load ..., source ...)")
    local_parallelism: int = spec(1, lo=1, help="local executor: tasks at once")
    gpu: str | GpuValues = spec("a100-80g", identity=False,
                                help="the GPU: a100-40g, a100-80g, h100-80g, h200-141g, or {memory_gib, bf16_tflops, ...}")
    eval_gpu: str | GpuValues | None = spec(None, identity=False,
                                            help="the GPU eval tasks run on (one per task); default: gpu")
    assumed_mfu: float = spec(0.35, gt=0, hi=1, help="planning: model FLOPs utilisation")
    warning_signal_s: int = spec(300, lo=30, identity=False,
                                 help="Slurm sends USR2 this long before the time limit: the resume save must fit")
    filesystem_gbps: float = spec(2.0, gt=0, identity=False,
                                  help="write bandwidth of the study filesystem per node, GB/s (save-time estimate)")
    prepare: StageResources = spec(factory=lambda: StageResources(30, 32, 8, 0))
    train: StageResources = spec(factory=lambda: StageResources(1440, 480, 8, 0))
    eval: StageResources = spec(factory=lambda: StageResources(120, 64, 8, 1))
    aggregate: StageResources = spec(factory=lambda: StageResources(30, 16, 4, 0))

    def gpu_spec(self, stage: str = "train") -> GpuSpec:
        """The GPU of `stage` as a `GpuSpec` (KeyError for an unknown preset name; the checks report it first)."""
        g = self.eval_gpu if stage == "eval" and self.eval_gpu is not None else self.gpu
        if isinstance(g, str):
            return gpu_preset(g)
        return GpuSpec("custom", g.memory_gib, g.bf16_tflops, g.fp16_tflops or g.bf16_tflops,
                       g.fp32_tflops or g.bf16_tflops / 2, g.gpus_per_node, g.memory_tbps or g.bf16_tflops / 150)


@dataclass(frozen=True)
class Recipe:
    study: StudyConfig = required()
    models: tuple[ModelConfig, ...] = required()
    sweep: SweepConfig = required()
    data: DataConfig = spec(factory=DataConfig)
    training: TrainingConfig = spec(factory=TrainingConfig)
    evaluation: EvalConfig = spec(factory=EvalConfig)
    execution: ExecutionConfig = spec(factory=ExecutionConfig)
