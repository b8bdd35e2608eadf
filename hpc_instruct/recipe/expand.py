"""Expanding a validated study into Trials (one training run each) and EvalTasks (checkpoint x set x shard).

Derived numbers are computed here, once, and explained where they are computed:
- ranks per trial = tp * pp * dp (GPUs on CUDA); nodes from the recipe;
- sequences per epoch = samples (padded) or ceil(tokens / max_length) (packed);
- steps per epoch = ceil(sequences / global_batch); epochs = max(epochs, ceil(min_steps / steps per epoch));
- trained tokens = tokens per epoch * epochs; FLOPs = 6 x matmul weights of the per-rank shapes megatron builds
  (padded vocabulary, no input embedding; `train.scale.costs.train_flops_per_token`) per token + causal
  attention per sample (6 L h l^2, with each ability's mean length l: `ModelShape.training_flops`), the same
  packed or padded (packing changes the padding, which is not model FLOPs, not the samples' attention);
- GPU-hours = FLOPs / (peak TFLOP/s of the named GPU at the training precision * MFU) / 3600, with the peak and
  MFU printed as assumptions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import Any

import numpy as np

from hpc_instruct.evaluate.engines import NATIVE, resolve_engine
from hpc_instruct.evaluate.partition import count_shards
from hpc_instruct.expansion import Baseline, EvalTask, Expansion, Trial
from hpc_instruct.hashing import EVAL_CODE_VERSION, TRAIN_CODE_VERSION, digest, identity
from hpc_instruct.recipe.data_facts import DataFacts
from hpc_instruct.recipe.schema import EvalConfig, Recipe
from hpc_instruct.study_dir import BASE, SELECTED, epoch_name
from hpc_instruct.train.config import ModelConfig
from hpc_instruct.train.presets import ModelShape
from hpc_instruct.train.scale.costs import train_flops_per_token
from hpc_instruct.train.scale.ranks import LayoutKey, closed_form


def expand(recipe: Recipe, shapes: dict[str, ModelShape], facts: DataFacts, with_eval: bool = True) -> Expansion:
    data_pin = facts.fingerprint
    train_digest = digest(identity(recipe.training))
    models = {m.name: m for m in recipe.models}
    model_digest = {m.name: digest([model_identity(m), identity(shapes[m.name]), TRAIN_CODE_VERSION])
                    for m in recipe.models}
    trials: list[Trial] = []
    index: dict[str, int] = {}
    for source, name, model, request, seeds in _requests(recipe):
        m, shape = models[model], shapes[model]
        counts, synthetic = _resolve(request, facts)
        for seed in seeds:
            tid = "t" + digest([model_digest[model], train_digest, data_pin, request, seed], 15)
            label = f"{name}/{model}/seed{seed}"
            if tid in index:  # the same experiment reached from two arms (mix-baseline == curated-1000): run it once
                first = trials[index[tid]]
                trials[index[tid]] = replace(first, also=first.also + (label,))
                continue
            index[tid] = len(trials)
            trials.append(_trial(tid, label, source, m, shape, request, counts, synthetic, seed, recipe, facts))
    baselines = tuple(Baseline("b" + digest([model_digest[m.name], BASE], 15), m.name, _size(m))
                      for m in recipe.models) if recipe.evaluation.include_base else ()
    engines = {m.name: resolve_engine(recipe.evaluation.engine, m.device) for m in recipe.models}
    tasks = (_eval_tasks(recipe.evaluation, trials, baselines, facts, recipe.data.abilities, engines)
             if with_eval else ())
    return Expansion(tuple(trials), baselines, tasks)


def model_identity(m: ModelConfig) -> dict[str, Any]:
    """A model's hashed fields. `pretrain` counts only when set (a pretrained base changes every trial and the
    base checkpoint), so the ids of studies written before it existed stay as they were."""
    fields = identity(m)
    if m.pretrain is None:
        fields.pop("pretrain", None)
    return fields


def _requests(recipe: Recipe):
    """(source, label, model, mixture request, seeds) for every arm of the sweep (an arm's own seeds, else the
    sweep's); the caller makes one trial per seed."""
    sw, every = recipe.sweep, [m.name for m in recipe.models]

    def seeds(arm) -> tuple[int, ...]:
        return arm.seeds if arm.seeds is not None else sw.seeds

    abilities = recipe.data.abilities
    if sw.curated:
        for n in sw.curated.samples_per_ability:
            request = {"per_ability": {a: n for a in abilities}, "synthetic": 0, "cap": sw.curated.cap}
            for model in sw.curated.models or every:
                yield "curated", f"curated-{n}", model, request, seeds(sw.curated)
    if sw.synthetic:
        for n in sw.synthetic.total_samples:
            request = {"per_ability": {}, "synthetic": n, "cap": sw.synthetic.cap}
            for model in sw.synthetic.models or every:
                yield "synthetic", f"synthetic-{n}", model, request, seeds(sw.synthetic)
    for mix in sw.mixes:
        request = {"per_ability": mix_amounts(mix, abilities), "synthetic": mix.synthetic_total_samples, "cap": mix.cap}
        for model in mix.models or every:
            yield "mix", mix.name if mix.name.startswith("mix") else f"mix-{mix.name}", model, request, seeds(mix)
    if sw.single_ability:
        sa = sw.single_ability
        for ability in sa.abilities or abilities:
            for n in sa.samples_per_ability:
                request = {"per_ability": {ability: n}, "synthetic": 0, "cap": sa.cap}
                for model in sa.models or every:
                    yield "single", f"single-{ability}-{n}", model, request, seeds(sa)
    if sw.held_out:
        ho = sw.held_out
        for k, counts in enumerate(held_out_counts(ho, abilities), start=1):
            request = {"per_ability": counts, "synthetic": 0, "cap": ho.cap}
            for model in ho.models or every:
                yield "held_out", f"heldout-{k}", model, request, seeds(ho)


def held_out_counts(ho, abilities: tuple[str, ...]) -> list[dict[str, int]]:
    """`ho.count` mixes of per-ability counts, log-uniform in [min, max] (0 stays possible when min is 0), from
    `ho.seed` alone: the same recipe always draws the same mixes."""
    rng = np.random.default_rng([ho.seed, 1207])
    lo, hi = max(ho.min_per_ability, 1), max(ho.max_per_ability, max(ho.min_per_ability, 1))
    draws = np.exp(rng.uniform(math.log(lo), math.log(hi + 1), size=(ho.count, len(abilities))))
    counts = np.minimum(np.floor(draws).astype(int), hi)
    if ho.min_per_ability == 0:  # an ability left out of a mix now and then (one in five)
        counts[rng.uniform(size=counts.shape) < 0.2] = 0
    return [{a: int(n) for a, n in zip(abilities, row, strict=True) if n > 0} for row in counts]


def mix_amounts(mix, abilities: tuple[str, ...]) -> dict[str, Any]:
    """Per ability: an explicit count/'all', else an explicit fraction, else the defaults; absent = not in the mix."""
    out: dict[str, Any] = {}
    for a in abilities:
        if a in mix.samples_per_ability:
            out[a] = mix.samples_per_ability[a]
        elif a in mix.fraction_per_ability:
            out[a] = {"fraction": mix.fraction_per_ability[a]}
        elif "default" in mix.samples_per_ability:
            out[a] = mix.samples_per_ability["default"]
        elif "default" in mix.fraction_per_ability:
            out[a] = {"fraction": mix.fraction_per_ability["default"]}
    return out


def take(amount: Any, pool: int) -> int:
    """How many samples a request takes from a pool of `pool` (validation already refused overdraws without cap)."""
    if amount == "all":
        return pool
    if isinstance(amount, dict):  # floor, as hpc_instruct.data.mixtures.count_of (0.29 * 100 -> 29)
        return min(pool, math.floor(amount["fraction"] * pool + 1e-9))
    return min(int(amount), pool)


def _resolve(request: dict[str, Any], facts: DataFacts) -> tuple[dict[str, int], int]:
    counts = {a: take(v, facts.pool_sizes.get(a, 0)) for a, v in request["per_ability"].items()}
    return counts, min(request["synthetic"], facts.synthetic_size)


def _size(m: ModelConfig) -> str:
    return m.size if m.size else f"hf:{m.path}"


def _trial(tid, label, source, m: ModelConfig, shape: ModelShape, request, counts, synthetic, seed,
           recipe: Recipe, facts: DataFacts) -> Trial:
    t, ex = recipe.training, recipe.execution
    # Tokens per epoch: each sample contributes its mean length, truncated to max_length.
    lengths = [(n, min(facts.mean_tokens.get(a, 300), t.max_length)) for a, n in counts.items()]
    lengths.append((synthetic, min(facts.mean_tokens.get("synthetic", 400), t.max_length)))
    tokens_epoch = sum(n * length for n, length in lengths)
    squares_epoch = sum(n * length**2 for n, length in lengths)  # attention: every sample at its mean length
    samples = sum(counts.values()) + synthetic
    sequences = math.ceil(tokens_epoch / t.max_length) if t.packing else samples
    steps_per_epoch = max(1, math.ceil(sequences / m.global_batch))
    epochs = max(t.epochs, math.ceil(t.min_steps / steps_per_epoch))
    ckpts = tuple(e for e in range(1, epochs + 1) if e % t.checkpoint_every_epochs == 0 or e == epochs)
    world = m.tp * m.pp * m.dp
    gpus = world if m.device == "cuda" else 0
    matmul = _flops_per_token(shape, m.tp, m.pp, m.vpp, 0)  # seq 0: the matmuls only; attention per sample below
    flops = (matmul * tokens_epoch + shape.training_flops(0, squares_epoch)) * epochs
    peak = ex.gpu_spec().peak_tflops(t.precision)
    gpu_hours = flops / (peak * 1e12 * ex.assumed_mfu) / 3600 if gpus else 0.0
    return Trial(tid, label, m.name, _size(m), source, request, counts, synthetic, samples, seed, m.nodes, gpus,
                 m.tp, m.pp, m.dp, steps_per_epoch, epochs, steps_per_epoch * epochs, tokens_epoch * epochs, ckpts,
                 gpu_hours)


@functools.lru_cache(maxsize=256)
def _flops_per_token(shape: ModelShape, tp: int, pp: int, vpp: int, seq: int) -> float:
    key = LayoutKey(shape, tp, pp, vpp)
    return train_flops_per_token(key, closed_form(key), seq)


def _eval_tasks(ev: EvalConfig, trials: list[Trial], baselines: tuple[Baseline, ...], facts: DataFacts,
                abilities: tuple[str, ...], engines: dict[str, str] | None = None) -> tuple[EvalTask, ...]:
    """Every (owner, checkpoint, set, shard) task. `engines`: the resolved generation engine per model; a task
    whose engine is not native hashes it (native tasks keep the ids they had before engines existed)."""
    settings = digest([identity(ev), EVAL_CODE_VERSION])
    engines = engines or {}
    sets = [(a, s) for s in ev.splits for a in abilities] + [(o, "test") for o in ev.out_of_domain]
    # Shard ranges per set, computed once: [(shard, shards, start, stop), ...]. The count rule (every item costs
    # the same); hpc_instruct.evaluate.partition.plan_shards is the cost-aware alternative.
    planned = count_shards({f"{a}/{s}": facts.eval_sizes.get(f"{a}/{s}", 0) for a, s in sets}, ev.items_per_shard)
    ranges = {(a, s): [(r.shard, r.shards, r.start, r.stop) for r in planned[f"{a}/{s}"]] for a, s in sets}
    set_pin = {key: digest([facts.fingerprint, key]) for key in ranges}
    out: list[EvalTask] = []

    def add(owner: str, checkpoint: str, split_filter, model: str) -> None:
        engine = engines.get(model, NATIVE)
        for (a, s), shard_ranges in ranges.items():
            if not split_filter(s):
                continue
            for i, k, start, stop in shard_ranges:
                key = [owner, checkpoint, set_pin[(a, s)], settings, start, stop] + ([engine] if engine != NATIVE else [])
                eid = "e" + digest(key, 15)
                out.append(EvalTask(eid, owner, checkpoint, f"{a}/{s}", a, s, i, k, start, stop))

    for b in baselines:
        add(b.id, BASE, lambda s: True, b.model)
    for trial in trials:
        chosen = trial.checkpoints if ev.checkpoints == "all" else trial.checkpoints[-1:]
        for e in chosen:
            add(trial.id, epoch_name(e), lambda s: s == "valid" or ev.test_on == "all", trial.model)
        if ev.test_on == SELECTED:
            add(trial.id, SELECTED, lambda s: s == "test", trial.model)
    return tuple(out)
