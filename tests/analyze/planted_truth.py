"""Planted ground truth for simulated studies: the expected accuracy of every trial on every eval set.

Used only by the simulator (`simulate.py`), i.e. by the analysis tests and the aggregation benchmark, so that
each analysis can be checked against numbers we chose: a slope planted here must come back out of the curve
fits, a best epoch planted here must be the checkpoint selection's choice, and so on.

The model, in accuracy percentage points (P = parameters, Pref = `reference_parameters`):
    size term        s_a * log10(P / Pref)                              (s_a: sensitivity to model size)
    base model       base_a + size term
    curated / mix    intercept_a + slope_a * log10(n_a) + size term     (n_a >= 1 samples of ability a;
                     an ability left out of a mix scores as the base model)
    synthetic        ceiling_a - (ceiling_a - base_a) * exp(-N / scale_a) + size term   (N synthetic in total:
                     saturates below what curated data reaches, so "never" is a real answer)
    single ability   the curated curve for the trained ability; base_a + transfer[trained][a] elsewhere
    out-of-domain    base_o + slope_o * log10(1 + total samples) + size term (single: base_o + transfer)
    epochs           - epoch_penalty * |epoch - best epoch of the trial|   (best epoch planted per trial)
    seeds            + N(0, seed_sd) per (trial, ability), constant over epochs (training-seed noise)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from hpc_instruct.data.abilities import REGISTRY
from hpc_instruct.expansion import Owner


@dataclass(frozen=True)
class AbilityTruth:
    """The planted curve of one eval set (percent accuracy; slopes in points per decade)."""

    chance: float  # 0..1, mean over the set's items
    base: float
    intercept: float
    slope: float
    size_slope: float
    synthetic_ceiling: float
    synthetic_scale: float


@dataclass(frozen=True)
class PlantedTruth:
    abilities: Mapping[str, AbilityTruth]  # trainable abilities and out-of-domain sets
    out_of_domain: tuple[str, ...] = ()
    transfer: Mapping[str, Mapping[str, float]] = field(
        default_factory=dict
    )  # trained -> evaluated -> points
    reference_parameters: float = 1e6
    epoch_penalty: float = 8.0
    seed_sd: float = 0.8
    item_correlation: float = 0.5  # share of an item's latent difficulty common to every checkpoint (0..1)

    def best_epoch(self, trial: Owner) -> int | None:
        """The planted best checkpoint of a trained trial (a deterministic pick among its checkpoints)."""
        if not trial.checkpoints:
            return None
        return trial.checkpoints[_stable_int(trial.id, "best-epoch") % len(trial.checkpoints)]

    def curve(self, trial: Owner, ability: str, num_parameters: float) -> float:
        """Expected accuracy (percent) of the trial at its best epoch, without seed noise."""
        t = self.abilities[ability]
        size = t.size_slope * math.log10(max(num_parameters, 1.0) / self.reference_parameters)
        if trial.source == "base":
            return t.base + size
        if ability in self.out_of_domain:
            if trial.source == "single":
                return t.base + size + self._transfer(trial, ability)
            return t.base + t.slope * math.log10(1 + trial.total_samples) + size
        n = trial.samples_per_ability.get(ability, 0)
        curated = t.intercept + t.slope * math.log10(n) + size if n >= 1 else None
        if trial.source == "single":
            return curated if curated is not None else t.base + size + self._transfer(trial, ability)
        synthetic = None
        if trial.synthetic_samples > 0:
            rise = (t.synthetic_ceiling - t.base) * (
                1 - math.exp(-trial.synthetic_samples / t.synthetic_scale)
            )
            synthetic = t.base + rise + size
        options = [v for v in (curated, synthetic) if v is not None]
        return max(options) if options else t.base + size

    def accuracy(self, trial: Owner, ability: str, num_parameters: float, epoch: int | None) -> float:
        """Expected accuracy (percent) at a checkpoint, seed noise and epoch penalty included, kept in 1..99."""
        value = self.curve(trial, ability, num_parameters)
        best = self.best_epoch(trial)
        if best is not None and epoch is not None:
            value -= self.epoch_penalty * abs(epoch - best)
        if trial.source != "base":
            value += self.seed_sd * _stable_normal(trial.id, ability)
        return float(min(99.0, max(1.0, value)))

    def synthetic_equivalent(self, ability: str, curated_per_ability: int) -> float:
        """Planted synthetic samples (total) that reach the curated score of n per ability (inf: never)."""
        t = self.abilities[ability]
        target = t.intercept + t.slope * math.log10(curated_per_ability)
        if target >= t.synthetic_ceiling:
            return math.inf
        return t.synthetic_scale * math.log((t.synthetic_ceiling - t.base) / (t.synthetic_ceiling - target))

    def _transfer(self, trial: Owner, ability: str) -> float:
        trained = next(iter(trial.samples_per_ability), None)
        return self.transfer.get(trained, {}).get(ability, 0.0) if trained else 0.0


def default_truth(
    abilities: tuple[str, ...], out_of_domain: tuple[str, ...] = (), seed: int = 0
) -> PlantedTruth:
    """A truth with distinct data and size sensitivities per ability (so rankings are identifiable), a
    saturating synthetic curve (reaching the score of ~20 curated samples per ability, never more), and a sparse
    transfer matrix of +5 / +2 / -3 point effects."""
    rng = np.random.default_rng(seed)
    k = len(abilities)
    slopes = rng.permutation(np.linspace(2.0, 12.0, k)) if k > 1 else np.array([6.0])
    size_slopes = rng.permutation(np.linspace(1.0, 8.0, k)) if k > 1 else np.array([4.0])
    truth: dict[str, AbilityTruth] = {}
    for a, b, s in zip(abilities, slopes, size_slopes, strict=True):
        chance = item_chances(a, 400).mean()
        intercept = 100 * chance + 12.0
        base = intercept - 6.0
        truth[a] = AbilityTruth(
            chance,
            base,
            intercept,
            float(b),
            float(s),
            intercept + 1.3 * float(b),
            float(rng.choice([200.0, 400.0, 800.0])),
        )
    for o in out_of_domain:
        chance = item_chances(o, 400).mean()
        truth[o] = AbilityTruth(
            chance, 100 * chance + 8, 100 * chance + 8, 1.5, 3.0, 100 * chance + 10, 400.0
        )
    effects = np.array([5.0, 2.0, -3.0, 0.0, 0.0, 0.0])
    transfer = {
        src: {dst: float(rng.choice(effects)) for dst in abilities + out_of_domain if dst != src}
        for src in abilities
    }
    return PlantedTruth(truth, tuple(out_of_domain), transfer)


def item_chances(ability: str, n: int) -> np.ndarray:
    """Per-item chance (0..1) of an eval set, following its registry formats (mixed sets alternate formats)."""
    i = np.arange(n)
    kind = REGISTRY[ability].key if ability in REGISTRY else ""
    if kind == "history":  # multiple choice and true/false
        return np.where(i % 2 == 0, 0.25, 0.5)
    if kind == "chinese":  # multiple choice and cloze
        return np.where(i % 2 == 0, 0.25, 0.0)
    if kind == "understanding":  # 3- or 4-way dialogue questions
        return np.where(i % 2 == 0, 1 / 3, 0.25)
    if kind == "ethics":  # choose k of 4, k = 1..4
        return 1.0 / np.array([math.comb(4, k) for k in (1, 2, 3, 4)])[i % 4]
    if kind == "math":
        return np.zeros(n)
    if kind in ("code", "creative_writing", "role_play"):
        return np.full(n, 1 / 3)
    return np.full(n, 0.25)


def item_formats(ability: str, n: int) -> np.ndarray:
    """Per-item format names matching `item_chances`."""
    formats = REGISTRY[ability].formats if ability in REGISTRY else ("mc",)
    return np.asarray(formats, dtype=object)[np.arange(n) % len(formats)]


def _stable_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "little")


def _stable_normal(*parts: str) -> float:
    return float(np.random.default_rng(_stable_int(*parts)).standard_normal())
