"""Exact bytes of a training rank's weights, gradient buffer and optimizer state, per data-parallel rank.

This follows, element for element, what megatron-core 0.16's `DistributedDataParallel` and
`get_megatron_optimizer` allocate for `hpc_instruct.train.megatron.parallel.Trainer` (one DDP per model chunk,
`grad_reduce_in_fp32=True`, `overlap_grad_reduce=False`, Adam); tests/train/test_scale_measure.py checks it
byte for byte against a real training step at TP2 x PP2 x DP2. The layout rules (our reading of
`_ParamAndGradBuffer.__init__` and `DistributedOptimizer._build_model_gbuf_range`):

- Each chunk's parameters go into one contiguous buffer in reverse `named_parameters()` order. Without
  `overlap_grad_reduce` there is no size limit, so there is one bucket, except that with the distributed
  optimizer a `shared_embedding` parameter (tied embeddings over a pipeline) gets a bucket of its own.
- With the distributed optimizer every parameter starts at a multiple of 64 elements, and every bucket ends at
  a multiple of lcm(dp, 128); the buffer holds the gradients (fp32) and, as a second buffer of the same
  length, the parameters (bf16/fp16/fp32): the weights live there, padding included.
- Without it, parameters are packed with no gaps; the weights stay in their own tensors.
- The distributed optimizer splits each bucket into dp equal shards; DP rank r keeps fp32 main parameters
  (16-bit training only; with fp32 weights the shard is a view of the weights) and Adam's two fp32 moments
  for the parts of parameters inside its shard. Without it every rank keeps them for every parameter.

Not counted: torch Adam's per-tensor `step` (a 0-dim host tensor, 4 bytes per parameter tensor; apex and
Transformer Engine's fused Adam keep it in the param group), which is host memory, not GPU memory.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

PARAM_ALIGN = 64  # elements: parameter starts in a distributed-optimizer buffer (128-byte addresses)
BUCKET_ALIGN = 128  # elements: bucket ends, together with dp (every shard equal, 256-byte aligned)


@dataclass(frozen=True)
class GradBuffer:
    """One chunk's gradient buffer: its length in elements and where every parameter and bucket lies."""

    numel: int
    buckets: tuple[tuple[int, int], ...]  # (start, end) in elements, padding included
    ranges: tuple[tuple[int, int, int], ...]  # (start, end, bucket) of every parameter, in placement order

    @property
    def elements(self) -> int:
        """Parameter elements (the buffer without its padding)."""
        return sum(end - start for start, end, _ in self.ranges)


@functools.lru_cache(maxsize=4096)
def grad_buffer(tensors: tuple[int, ...], shared: int, dp: int, distributed_optimizer: bool) -> GradBuffer:
    """The buffer megatron lays out for a chunk with parameter sizes `tensors` (named_parameters order)."""
    step = math.lcm(dp, BUCKET_ALIGN)
    buckets: list[tuple[int, int]] = []
    ranges: list[tuple[int, int, int]] = []
    start = bucket_start = opened = 0

    def close(end: int) -> int:
        nonlocal bucket_start, opened
        padded = -(-end // step) * step if distributed_optimizer else end
        buckets.append((bucket_start, padded))
        bucket_start, opened = padded, 0
        return padded

    for index in reversed(range(len(tensors))):
        if distributed_optimizer:
            start = -(-start // PARAM_ALIGN) * PARAM_ALIGN
        own_bucket = distributed_optimizer and index == shared
        if own_bucket and opened:
            start = close(start)
        end = start + tensors[index]
        ranges.append((start, end, len(buckets)))
        opened += 1
        start = close(end) if own_bucket else end
    if opened:
        close(start)
    return GradBuffer(bucket_start, tuple(buckets), tuple(ranges))


def shard_elements(buffer: GradBuffer, dp: int) -> tuple[int, ...]:
    """Parameter elements in each DP rank's shard of the buffer (what its distributed optimizer keeps)."""
    out = [0] * dp
    for b, (b_start, b_end) in enumerate(buffer.buckets):
        size = (b_end - b_start) // dp
        for start, end, bucket in buffer.ranges:
            if bucket != b:
                continue
            lo, hi = start - b_start, end - b_start
            for r in range(lo // size, min(dp, -(-hi // size))):
                out[r] += max(0, min(hi, (r + 1) * size) - max(lo, r * size))
    return tuple(out)


@dataclass(frozen=True)
class StaticBytes:
    """What one training rank holds from the first step on, in bytes."""

    weights: int
    grads: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer


def static_bytes(tensors: tuple[tuple[int, ...], ...], shared: tuple[int, ...], dp: int, value_bytes: int,
                 distributed_optimizer: bool) -> tuple[StaticBytes, ...]:
    """Weights, gradient buffers and optimizer state of each DP rank (index = DP rank) for one model-parallel
    rank: chunks `tensors` (see `RankParams`), weights of `value_bytes` (2 for bf16/fp16, 4 for fp32)."""
    weights = grads = 0
    kept = [0] * dp
    for chunk, flagged in zip(tensors, shared, strict=True):
        buffer = grad_buffer(chunk, flagged, dp, distributed_optimizer)
        grads += 4 * buffer.numel
        weights += value_bytes * (buffer.numel if distributed_optimizer else buffer.elements)
        shards = _shards(buffer, dp) if distributed_optimizer else (buffer.elements,) * dp
        kept = [k + e for k, e in zip(kept, shards, strict=True)]
    per_element = (4 if value_bytes < 4 else 0) + 8  # fp32 main parameter (16-bit weights) + two moments
    return tuple(StaticBytes(weights, grads, per_element * k) for k in kept)


def fullest_static(tensors: tuple[tuple[int, ...], ...], shared: tuple[int, ...], dp: int, value_bytes: int,
                   distributed_optimizer: bool) -> StaticBytes:
    """`static_bytes` of the DP rank that holds the most (shards differ by parts of a parameter)."""
    return max(static_bytes(tensors, shared, dp, value_bytes, distributed_optimizer), key=lambda s: s.total)


_shards = functools.lru_cache(maxsize=4096)(shard_elements)
