"""The recipe schema: frozen, typed dataclasses. YAML is only their serialisation.

Field metadata drives validation and identity:
- `lo` / `hi`: inclusive numeric bounds (`gt` for a strict lower bound);
- `identity=False`: the field does not change a trial's *result* (how it runs, not what it computes), so it is
  left out of content hashes: parallel layout, micro batch, cadence of resume checkpoints, Slurm settings.
Units are explicit in key names: `samples_per_ability`, `total_samples` and `fraction_per_ability` are
different keys, so "1" is never confused with "100%".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hpc_instruct.data.abilities import ABILITY_KEYS


def spec(default: Any = None, *, lo: float | None = None, hi: float | None = None, gt: float | None = None,
         identity: bool = True, help: str = "", factory: Any = None) -> Any:
    """A dataclass field with validation bounds and a help line (shown by `hpci validate --explain`)."""
    meta = {"lo": lo, "hi": hi, "gt": gt, "identity": identity, "help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def required(*, lo: float | None = None, hi: float | None = None, gt: float | None = None, help: str = "") -> Any:
    return field(metadata={"lo": lo, "hi": hi, "gt": gt, "identity": True, "help": help})


@dataclass(frozen=True)
class StudyConfig:
    name: str = required(help="study name; the study directory is <output_root>/<name>")
    output_root: str = spec("./studies", identity=False, help="where study directories live (a shared filesystem)")
    description: str = spec("", identity=False)


@dataclass(frozen=True)
class ModelConfig:
    """One base model and how a trial of it is laid out on the cluster."""

    name: str = required(help="name used by the sweep to refer to this model")
    family: Literal["llama", "qwen2"] = spec("llama")
    size: str | None = spec(None, help="size preset (tiny, mini, small, 7b, 13b, 33b, 70b, qwen2-*)")
    path: str | None = spec(None, help="folder with HF weights (config.json + safetensors); overrides the preset shape")
    tokenizer: str | None = spec(None, help="tokenizer folder; default: the model path, or the study's built tokenizer")
    backend: Literal["megatron", "hf", "deepspeed"] = spec("megatron")
    device: Literal["cuda", "cpu"] = spec("cuda", identity=False)
    tp: int = spec(1, lo=1, identity=False, help="tensor-parallel size")
    pp: int = spec(1, lo=1, identity=False, help="pipeline-parallel size")
    vpp: int = spec(1, lo=1, identity=False, help="virtual pipeline stages per pipeline rank")
    dp: int = spec(1, lo=1, identity=False, help="data-parallel size")
    nodes: int = spec(1, lo=1, identity=False)
    gpus_per_node: int | None = spec(None, lo=0, identity=False, help="default: tp*pp*dp/nodes")
    sequence_parallel: bool = spec(False, identity=False)
    distributed_optimizer: bool = spec(True, identity=False)
    micro_batch: int = spec(1, lo=1, identity=False, help="sequences per GPU per forward pass")
    global_batch: int = spec(64, lo=1, help="sequences per optimizer step")


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


@dataclass(frozen=True)
class CuratedArm:
    """Each ability gets N human-curated samples: one trial per (model, N, seed)."""

    samples_per_ability: tuple[int, ...] = required(lo=1)
    models: tuple[str, ...] | None = spec(None, help="default: every model")
    cap: bool = spec(False, help="take what a pool has when it holds fewer than requested")


@dataclass(frozen=True)
class SyntheticArm:
    """N samples in total from the synthetic pool (not labelled by ability)."""

    total_samples: tuple[int, ...] = required(lo=1)
    models: tuple[str, ...] | None = spec(None)
    cap: bool = spec(False)


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


@dataclass(frozen=True)
class SingleAbilityArm:
    """Train on one ability at a time (for the transfer matrix)."""

    samples_per_ability: tuple[int, ...] = required(lo=1)
    abilities: tuple[str, ...] | None = spec(None, help="default: every study ability")
    models: tuple[str, ...] | None = spec(None)
    cap: bool = spec(False)


@dataclass(frozen=True)
class SweepConfig:
    seeds: tuple[int, ...] = spec((0,))
    curated: CuratedArm | None = spec(None)
    synthetic: SyntheticArm | None = spec(None)
    mixes: tuple[Mix, ...] = spec(())
    single_ability: SingleAbilityArm | None = spec(None)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation; defaults are the DoIT paper's."""

    epochs: int = spec(15, lo=1)
    min_steps: int = spec(0, lo=0, help="train more epochs until this many optimizer steps (tiny mixtures)")
    lr: float = spec(1e-5, gt=0)
    schedule: Literal["linear", "cosine", "constant"] = spec("linear")
    warmup_steps: int = spec(0, lo=0)
    warmup_ratio: float = spec(0.0, lo=0, hi=0.99)
    min_lr: float = spec(0.0, lo=0)
    weight_decay: float = spec(0.1, lo=0)
    betas: tuple[float, float] = spec((0.9, 0.95), lo=0, hi=0.999999)
    eps: float = spec(1e-8, gt=0)
    grad_clip: float = spec(1.0, lo=0, help="0 disables clipping")
    max_length: int = spec(2048, lo=8)
    precision: Literal["fp32", "bf16", "fp16"] = spec("bf16")
    activation_checkpointing: bool = spec(True, identity=False)
    packing: bool = spec(True, help="pack samples to max_length (boundaries kept) instead of padding")
    template: Literal["doit", "tokenizer"] = spec("doit", help="DoIT <user>/<assistant>/<eot> or the tokenizer's own")
    checkpoint_every_epochs: int = spec(1, lo=1, help="export a checkpoint for evaluation every N epochs (and the last)")
    resume_every_minutes: float = spec(30.0, gt=0, identity=False, help="time cadence of resume checkpoints")
    keep_last: int = spec(2, lo=1, identity=False, help="resume checkpoints kept")


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


@dataclass(frozen=True)
class StageResources:
    time_min: int = spec(60, lo=1)
    mem_gb: float = spec(16, gt=0, help="per node")
    cpus_per_task: int = spec(4, lo=1)
    gpus: int = spec(0, lo=0, help="per node; the train stage derives it from the model's layout")


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
    gpu_peak_tflops: float = spec(312.0, gt=0, help="planning: dense bf16 peak per GPU (A100 312, H100 989)")
    assumed_mfu: float = spec(0.35, gt=0, hi=1, help="planning: model FLOPs utilisation")
    prepare: StageResources = spec(factory=lambda: StageResources(30, 32, 8, 0))
    train: StageResources = spec(factory=lambda: StageResources(1440, 480, 8, 0))
    eval: StageResources = spec(factory=lambda: StageResources(120, 64, 8, 1))
    aggregate: StageResources = spec(factory=lambda: StageResources(30, 16, 4, 0))


@dataclass(frozen=True)
class Recipe:
    study: StudyConfig = required()
    models: tuple[ModelConfig, ...] = required()
    sweep: SweepConfig = required()
    data: DataConfig = spec(factory=DataConfig)
    training: TrainingConfig = spec(factory=TrainingConfig)
    evaluation: EvalConfig = spec(factory=EvalConfig)
    execution: ExecutionConfig = spec(factory=ExecutionConfig)
