"""The training library's own configs: one base model and how a trial of it is laid out, and optimisation.

The recipe schema (`hpc_instruct.recipe.schema`) composes these; the training code takes them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hpc_instruct.config_fields import required, spec


@dataclass(frozen=True)
class PretrainConfig:
    """Pretrain a size-preset model once on a plain-text corpus (every token trained, no chat template): the
    study's base model, which every trial of that model starts from and `evaluation.include_base` evaluates.

    The learning rate warms up over `warmup_steps`, then follows a cosine to a tenth of `lr` at `steps`.
    """

    steps: int = required(lo=1, help="optimizer steps of pretraining (exactly this many)")
    lr: float = spec(3e-3, gt=0, help="peak learning rate")
    warmup_steps: int = spec(10, lo=0)
    corpus: str = spec("pretrain/corpus.jsonl",
                       help="JSON lines with a 'text' per document; relative to the study's data root, or absolute")
    micro_batch: int | None = spec(None, lo=1, identity=False, help="default: the model's micro_batch")
    global_batch: int | None = spec(None, lo=1, help="sequences per optimizer step; default: the model's global_batch")


@dataclass(frozen=True)
class ModelConfig:
    """One base model and how a trial of it is laid out on the cluster."""

    name: str = required(help="name used by the sweep to refer to this model")
    family: Literal["llama", "qwen2"] = spec("llama")
    size: str | None = spec(None, help="size preset (micro, tiny, mid, mini, small, 7b, 13b, 33b, 70b, qwen2-*)")
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
    pretrain: PretrainConfig | None = spec(None, help="size presets: pretrain a base model on a plain-text corpus "
                                                      "once, and start every trial of this model from it")


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
    activation_checkpointing: Literal["selective", "full", "none"] | bool = spec(
        "full", identity=False,
        help="recompute activations in backward: selective (attention core, megatron only), full (every layer), "
             "none; true/false (older recipes) mean full/none")
    packing: bool = spec(True, help="pack samples to max_length (boundaries kept) instead of padding")
    template: Literal["doit", "tokenizer"] = spec("doit", help="DoIT <user>/<assistant>/<eot> or the tokenizer's own")
    checkpoint_every_epochs: int = spec(1, lo=1, help="export a checkpoint for evaluation every N epochs (and the last)")
    resume_every_minutes: float = spec(30.0, gt=0, identity=False, help="time cadence of resume checkpoints")
    keep_last: int = spec(2, lo=1, identity=False, help="resume checkpoints kept")
    dist_timeout_minutes: int = spec(30, lo=1, identity=False,
                                     help="how long a collective may wait (checkpoint loads, exports, stragglers)")
    async_save: bool = spec(False, identity=False,
                            help="megatron: write resume checkpoints in the background while training goes on "
                                 "(host memory holds a copy of the rank's shard until written)")

    def __post_init__(self) -> None:
        # Recipes written before `selective` existed say true/false: keep them valid, as full/none.
        if isinstance(self.activation_checkpointing, bool):
            object.__setattr__(self, "activation_checkpointing", "full" if self.activation_checkpointing else "none")
