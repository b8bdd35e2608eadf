"""What decides the parameters a rank holds (`LayoutKey`), what it holds (`RankParams`), and the closed form.

The simulation (`simulate`) measures `RankParams` from megatron-core's own modules; `closed_form` counts the
same numbers from the shape, as an independent check (the tests require both to agree exactly) and for the
fix search in `fit`, which has to try many layouts cheaply before confirming one by simulation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from hpc_instruct.train.presets import ModelShape, padded_vocab_size

# Bump when the simulation's output could change for the same key (model code, megatron-core minor version).
SIMULATION_VERSION = "megatron-core-0.16/local-spec/2"


@dataclass(frozen=True)
class LayoutKey:
    """A model shape split over tensor (tp) x pipeline (pp) ranks with `vpp` chunks per pipeline rank.

    Data parallelism does not change what a rank holds, so it is not part of the key.
    """

    shape: ModelShape
    tp: int = 1
    pp: int = 1
    vpp: int = 1
    vocab_multiple: int = 128

    @property
    def padded_vocab(self) -> int:
        return padded_vocab_size(self.shape.vocab_size, self.tp, self.vocab_multiple)

    def digest(self) -> str:
        """Content hash of everything the simulated shapes depend on."""
        text = json.dumps([asdict(self), SIMULATION_VERSION], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def problems(self) -> list[str]:
        """Why megatron-core cannot split the shape this way (empty when it can)."""
        s, out = self.shape, []
        if s.num_attention_heads % self.tp or s.num_query_groups % self.tp:
            out.append(f"tp={self.tp} must divide the {s.num_attention_heads} heads and {s.num_query_groups} "
                       "key/value groups")
        if s.num_layers % (self.pp * self.vpp):
            out.append(f"pp*vpp = {self.pp}*{self.vpp} must divide the {s.num_layers} layers")
        if self.vpp > 1 and self.pp == 1:
            out.append("vpp > 1 needs pp > 1")
        return out


@dataclass(frozen=True)
class RankParams:
    """The parameters one (pipeline rank, tensor rank) holds, by part; every count in elements.

    `output_layer` includes, with tied embeddings and pp > 1, the last stage's copy of the embedding (megatron
    keeps it in sync through the embedding group); `tied_copy` is that copy's size, so a sum over ranks minus
    the copies is the model.

    `tensors` lists, per virtual chunk, every parameter's element count in `named_parameters()` order (the
    order megatron's DDP lays them out in its gradient buffer, in reverse; `buffers` needs it for the exact
    per-parameter padding); `shared` is, per chunk, the index of the parameter megatron marks
    `shared_embedding` (the tied embedding or its copy, pp > 1: it gets a bucket of its own), or -1.
    """

    pp_rank: int
    tp_rank: int
    chunk_layers: tuple[int, ...]  # decoder layers per virtual chunk on this rank
    params: int
    embedding: int
    output_layer: int
    final_norm: int
    decoder: int
    tied_copy: int
    largest: int  # elements of the largest single tensor (bounds per-tensor transients)
    tensors: tuple[tuple[int, ...], ...]
    shared: tuple[int, ...]

    @property
    def layers(self) -> int:
        return sum(self.chunk_layers)


def layer_params(shape: ModelShape, tp: int) -> int:
    """Parameters of one decoder layer on one TP rank (norms are replicated, linears split)."""
    h, f, d = shape.hidden_size, shape.ffn_hidden_size, shape.head_dim
    qkv_out = shape.num_attention_heads * d + 2 * shape.num_query_groups * d
    split = h * qkv_out + shape.num_attention_heads * d * h + 3 * h * f
    if shape.family == "qwen2":
        split += qkv_out
    return 2 * h + split // tp


def layer_tensors(shape: ModelShape, tp: int) -> tuple[int, ...]:
    """One decoder layer's parameters on one TP rank in megatron's order: input norm, attention output
    projection, fused QKV (and its bias for Qwen2), pre-MLP norm, fused gate/up (fc1), down (fc2)."""
    h, f, d = shape.hidden_size, shape.ffn_hidden_size, shape.head_dim
    qkv_out = (shape.num_attention_heads + 2 * shape.num_query_groups) * d
    bias = (qkv_out // tp,) if shape.family == "qwen2" else ()
    return (h, shape.num_attention_heads * d * h // tp, h * qkv_out // tp, *bias, h, 2 * f * h // tp, f * h // tp)


def closed_form(key: LayoutKey) -> tuple[RankParams, ...]:
    """Every rank's parameters by formula, ordered by (pp_rank, tp_rank); see the module docstring."""
    s, h = key.shape, key.shape.hidden_size
    per_chunk = s.num_layers // (key.pp * key.vpp)
    vocab_rows = key.padded_vocab // key.tp
    qkv_out = (s.num_attention_heads + 2 * s.num_query_groups) * s.head_dim
    out = []
    for p in range(key.pp):
        first, last = p == 0, p == key.pp - 1
        embedding = vocab_rows * h if first else 0
        tied = s.tie_embeddings
        output = vocab_rows * h if last and (not tied or not first) else 0
        tied_copy = output if tied else 0
        decoder = key.vpp * per_chunk * layer_params(s, key.tp)
        norm = h if last else 0
        largest = max(vocab_rows * h if (embedding or output) else 0,
                      h * qkv_out // key.tp, 2 * s.ffn_hidden_size * h // key.tp)
        chunks, shared = [], []
        for v in range(key.vpp):
            head = (vocab_rows * h,) if first and v == 0 else ()
            tail = (h, *((vocab_rows * h,) if output else ())) if last and v == key.vpp - 1 else ()
            chunks.append((*head, *layer_tensors(s, key.tp) * per_chunk, *tail))
            tied_pp = tied and key.pp > 1
            shared.append(0 if head and tied_pp else len(chunks[-1]) - 1 if tail and output and tied_pp else -1)
        for t in range(key.tp):
            out.append(RankParams(p, t, (per_chunk,) * key.vpp, embedding + output + decoder + norm, embedding,
                                  output, norm, decoder, tied_copy, largest, tuple(chunks), tuple(shared)))
    return tuple(out)
