"""Which generation engine an eval task uses: `native` (our batched loop, `inference.Inference`) or `vllm`.

`evaluation.engine: auto | native | vllm`. `auto` resolves from the recipe alone, never from the machine that
happens to read it: `vllm` for a model on CUDA, `native` on the CPU. A login node (plan, submit) and a compute
node (which re-expands the study to find its task) must compute the same eval-task ids, so resolving by
"is vLLM importable here" would make the two disagree. The resolved engine is hashed into every eval task
whose engine is not `native` (`recipe.expand`), and recorded in every result row (`engine` column), so rows of
two engines are never silently mixed. A task resolved to vLLM on a node where vLLM does not import fails with
one line naming both fixes (install it, or set `evaluation.engine=native`).

Ranking (rank3 items) always runs on our batched scorer: for log-likelihoods of given candidates a batched
forward with the output layer on scored tokens only beats vLLM's prompt-logprob path.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

NATIVE = "native"
VLLM = "vllm"
AUTO = "auto"
EngineChoice = Literal["auto", "native", "vllm"]


def resolve_engine(requested: str, device: str) -> str:
    """The engine a model's generation runs on: `auto` is vLLM on CUDA, native on the CPU."""
    if requested == AUTO:
        return VLLM if device == "cuda" else NATIVE
    if requested not in (NATIVE, VLLM):
        raise ValueError(f"unknown evaluation engine {requested!r} (auto, native or vllm)")
    return requested


def vllm_importable() -> bool:
    """vLLM is installed in this environment (checked without importing it: the import costs seconds)."""
    return importlib.util.find_spec("vllm") is not None


class EngineUnavailable(RuntimeError):
    """The engine an eval task was planned with cannot run on this node."""


def require_vllm(model: str, requested: str) -> None:
    """Raise EngineUnavailable, naming the fixes, if vLLM cannot be imported here."""
    if not vllm_importable():
        why = "evaluation.engine: auto resolves to vllm on CUDA" if requested == AUTO else "evaluation.engine: vllm"
        raise EngineUnavailable(
            f"model {model!r} is evaluated with vLLM ({why}), but vllm is not importable on this node: "
            "install it (pip install 'hpc_instruct[vllm]') or set evaluation.engine=native"
        )
