"""Models larger than one GPU: an eval task holds N GPUs and loads its model over all of them.

Native engine: one process per GPU (Slurm starts `tasks_per_node = N` ranks, the local executor torchrun), a
process group over them (NCCL on GPUs, gloo on the CPU), and transformers' tensor-parallel plan for the model
(Llama/Qwen2: attention and MLP projections and the output layer split over the ranks, embedding and norms
replicated; see `hpc_instruct.train.scale.memory.gpu_eval` for the memory it needs). Every rank runs the same
`Inference` on the same items; the logits are gathered, so every rank computes the same replies, and only
rank 0 writes the shard. The same code runs over gloo on the CPU, which is how the split is tested
(tests/evaluate/test_sharded.py: TP=2 gives the single-device replies, letter log-probs and perplexities).

Weights must be read from an HF folder whose vocabulary already matches the study tokenizer: an epoch's
export is one; a base model whose vocabulary the DoIT template grows, or a preset init, is first written once
to a folder (`materialized_folder`, rank 0 writes, the others wait), which vLLM also reads.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hpc_instruct.evaluate.checkpoints import Checkpoint, LoadedModel

log = logging.getLogger(__name__)


def world() -> tuple[int, int]:
    """(rank, world size) of this process: torchrun's or Slurm's variables, (0, 1) when started alone."""
    from hpc_instruct.train.distributed import detect

    d = detect()
    return d.rank, d.world_size


def init_group() -> None:
    """Join the eval task's process group (idempotent; NCCL with CUDA, gloo without)."""
    from hpc_instruct.train.distributed import init

    init()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def needs_folder(ckpt: Checkpoint, template_kind: str) -> bool:
    """True when the weights on disk are not the model the study evaluates (a preset init, a GGUF file, or a
    base model whose vocabulary the template grows): they must be written to a folder first."""
    if ckpt.kind in ("preset", "gguf"):
        return True
    if ckpt.kind == "export":
        return False
    from transformers import AutoConfig

    from hpc_instruct.data.template import ChatTemplate, TemplateConfig
    from hpc_instruct.data.tokenizer import load_tokenizer

    template = ChatTemplate(load_tokenizer(ckpt.tokenizer), TemplateConfig(kind=template_kind))
    return len(template.tokenizer) > AutoConfig.from_pretrained(ckpt.path).vocab_size


def materialized_folder(ckpt: Checkpoint, template_kind: str, shape=None, root: str | None = None,
                        dtype: str = "bf16") -> Path:
    """An HF folder holding exactly the model `load_checkpoint` builds for `ckpt` (weights and tokenizer).

    The checkpoint's own folder when it already is that; otherwise rank 0 loads the model on the CPU and saves
    it under `root` (default: `$TMPDIR`, node-local; a tensor-parallel task stays inside one node), keyed by
    the checkpoint, in `dtype` ("bf16" for GPUs, "fp32" for CPU runs), and every rank waits for it. The model
    is built in fp32 on the host first: 4 bytes per parameter of host memory at that moment.
    """
    if not needs_folder(ckpt, template_kind):
        return Path(ckpt.path)
    from hpc_instruct.evaluate.checkpoints import load_checkpoint
    from hpc_instruct.hashing import digest

    target = Path(root or tempfile.gettempdir()) / f"hpci-eval-{digest([ckpt, template_kind, dtype], 12)}"
    rank, _ = world()
    if rank == 0 and not (target / "config.json").is_file():
        import torch

        from hpc_instruct.evaluate.checkpoints import clear_cache

        loaded = load_checkpoint(ckpt, template_kind, shape, "cpu")  # fp32 on the host (see the report's limits)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        if dtype == "bf16":
            loaded.model.to(torch.bfloat16)
        loaded.model.save_pretrained(str(tmp))
        loaded.tokenizer.save_pretrained(str(tmp))
        clear_cache()  # do not keep a host copy of the whole model
        if not target.exists():
            tmp.rename(target)
    barrier()
    return target


def load_tensor_parallel(ckpt: Checkpoint, template_kind: str, shape, device: str) -> LoadedModel:
    """The model of `ckpt` split over this process group's ranks (every rank calls it), with the template.

    Raises:
        ValueError: the model has no tensor-parallel plan, or the ranks do not divide its heads.
    """
    import torch

    from hpc_instruct.data.template import ChatTemplate, TemplateConfig
    from hpc_instruct.data.tokenizer import load_tokenizer, tokenizer_hash

    init_group()
    started = time.perf_counter()
    folder = materialized_folder(ckpt, template_kind, shape, dtype="bf16" if device == "cuda" else "fp32")
    _, size = world()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = load_tokenizer(ckpt.tokenizer if ckpt.kind != "gguf" else folder)
    template = ChatTemplate(tokenizer, TemplateConfig(kind=template_kind))
    model = _from_pretrained_tp(folder, dtype, size).eval()
    unique = {id(p): p for p in model.parameters()}.values()
    params = sum(p.numel() for p in unique)  # DTensor numel is the full (global) count
    log.info("loaded %s %s over %d ranks (%.1fM parameters) in %.1f s", ckpt.kind, ckpt.name, size, params / 1e6,
             time.perf_counter() - started)
    return LoadedModel(model, tokenizer, template, params, tokenizer_hash(tokenizer), template.template_hash)


def _from_pretrained_tp(folder: Path, dtype: Any, size: int) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder))
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    if heads % size or kv % size:
        raise ValueError(f"{size} ranks cannot split {folder}: tensor parallelism must divide its {heads} attention "
                         f"heads and {kv} key/value heads (set execution.eval.gpus to a divisor)")
    try:  # transformers >= 5.x: tensor parallelism is configured by a DistributedConfig
        from transformers.distributed import DistributedConfig

        kwargs: dict[str, Any] = {"distributed_config": DistributedConfig(tp_size=size)}
    except ImportError:
        kwargs = {"tp_plan": "auto"}
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **kwargs)


def folder_facts(folder: Path, template_kind: str) -> LoadedModel:
    """What result rows record about a model folder (parameters, tokenizer and template) without loading its
    weights: parameter counts come from the safetensors headers (an engine such as vLLM holds the weights)."""
    from safetensors import safe_open

    from hpc_instruct.data.template import ChatTemplate, TemplateConfig
    from hpc_instruct.data.tokenizer import load_tokenizer, tokenizer_hash

    params = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():
                shape = fh.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                params += count
    tokenizer = load_tokenizer(folder)
    template = ChatTemplate(tokenizer, TemplateConfig(kind=template_kind))
    return LoadedModel(None, tokenizer, template, params, tokenizer_hash(tokenizer), template.template_hash)
