"""How long one eval shard takes on a GPU, per engine: the arithmetic behind `hpci plan`'s eval GPU-hours.

A shard of `items` items of one set on a model of N parameters (bf16: 2N bytes of weights) over `tp` GPUs:
- prefill (compute bound): 2·N FLOPs per prompt token at PREFILL_MFU of the GPUs' dense bf16 peak; ranking
  items prefill prompt + every candidate (the prompt once: prefix sharing); vLLM also prefills each option
  letter's request `prompt + letter` (counted in full: prompt log-probs may bypass its prefix cache);
- decode (memory bound): a step reads the weights and the rows' KV cache once, at DECODE_EFFICIENCY of the
  GPUs' HBM bandwidth, plus a fixed host cost per step (the native eager loop launches every kernel from
  Python; vLLM replays CUDA graphs);
  - native: batches of `batch` rows; a batch runs until its slowest row stops: with a share RAMBLE of replies
    running to `max_new_tokens` (base models and early checkpoints often never emit a stop token), a batch
    takes max_new_tokens steps with probability 1 - (1 - RAMBLE)^batch, else as many as the reference reply;
  - vLLM: continuous batching of up to `concurrency` rows; steps = total reply tokens / concurrency;
- task start: TASK_START_S (process, CUDA context, vLLM's graph capture) plus reading the weights at
  LOAD_GB_S from the shared filesystem; every GPU of the task is billed for the whole time.
Replies are as long as the eval set's reference replies (measured on the data) except the rambling share.
The constants are stated assumptions, printed by `hpci plan`; `tools/gpu_check_eval.py` measures the real rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PREFILL_MFU = 0.4
DECODE_EFFICIENCY = {"native": 0.5, "vllm": 0.75}  # share of HBM bandwidth a decode step reaches
STEP_OVERHEAD_S = {"native": 0.01, "vllm": 0.0}  # host time per decode step (eager launches vs CUDA graphs)
TASK_START_S = {"native": 30.0, "vllm": 90.0}
LOAD_GB_S = 2.0  # weights read from the shared filesystem, GB/s
RAMBLE = 0.1  # share of replies that run to max_new_tokens
VLLM_CONCURRENCY = 256  # vLLM's default max_num_seqs


@dataclass(frozen=True)
class SetLengths:
    """Mean token counts of one eval set's items (measured on the data, or assumed; `source` says which)."""

    prompt_tokens: float
    reply_tokens: float  # the reference reply (generated formats)
    candidate_tokens: float  # rank3: all candidates together (0 for generated formats)
    letters: float  # option letters per item whose log-probs are read (0 for free-form formats)
    ranked: bool  # rank3: scored by perplexity, never generated
    source: str = "assumed"


@dataclass(frozen=True)
class Hardware:
    """The GPUs of one eval task."""

    tp: int
    bf16_tflops: float  # per GPU
    memory_tbps: float  # HBM TB/s per GPU


@dataclass(frozen=True)
class ShardCost:
    prefill_s: float
    decode_s: float
    start_s: float
    gpus: int

    @property
    def seconds(self) -> float:
        return self.prefill_s + self.decode_s + self.start_s

    @property
    def gpu_hours(self) -> float:
        return self.seconds * self.gpus / 3600


def expected_steps(batch: int, reply: float, max_new_tokens: int) -> float:
    """Decode steps of a native batch of `batch` rows (see the module docstring)."""
    p = 1 - (1 - RAMBLE) ** batch
    return p * max_new_tokens + (1 - p) * min(reply, max_new_tokens)


def shard_cost(items: int, lengths: SetLengths, params: int, kv_bytes_per_token: int, hw: Hardware, engine: str,
               batch: int, max_new_tokens: int, start: bool = True) -> ShardCost:
    """Seconds of one shard of `items` items on `hw` with `engine` (`native` or `vllm`)."""
    flops_per_s = hw.tp * hw.bf16_tflops * 1e12 * PREFILL_MFU
    bytes_per_s = hw.tp * hw.memory_tbps * 1e12 * DECODE_EFFICIENCY[engine]
    weights = 2 * params
    start_s = (TASK_START_S[engine] + weights / (LOAD_GB_S * 1e9)) if start else 0.0
    if lengths.ranked:
        tokens = items * (lengths.prompt_tokens + lengths.candidate_tokens)
        return ShardCost(2 * params * tokens / flops_per_s, 0.0, start_s, hw.tp)
    prompt_tokens = items * lengths.prompt_tokens
    if engine == "vllm":
        prompt_tokens += items * lengths.letters * (lengths.prompt_tokens + 1)
    prefill = 2 * params * prompt_tokens / flops_per_s
    reply = (1 - RAMBLE) * min(lengths.reply_tokens, max_new_tokens) + RAMBLE * max_new_tokens
    context = lengths.prompt_tokens + reply / 2  # mean KV length a step reads per row
    if engine == "vllm":
        rows = min(VLLM_CONCURRENCY, items)
        steps = items * reply / rows
    else:
        rows = min(batch, items)
        steps = math.ceil(items / rows) * expected_steps(rows, lengths.reply_tokens, max_new_tokens)
    step_s = (weights + rows * kv_bytes_per_token * context) / bytes_per_s + STEP_OVERHEAD_S[engine]
    return ShardCost(prefill, steps * step_s, start_s, hw.tp)
