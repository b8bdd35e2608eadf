"""Training mixtures: what to take from each pool (`MixtureSpec`) and the nested, seeded draw that takes it.

Nesting. Each pool (an ability's curated pool, or the synthetic pool) is put in one order that depends only
on (seed, pool key, item uids): items are sorted by sha256(f"{seed}|{pool}|{uid}"). A draw of N items is the
first N of that order, so for every seed the 4-sample subset lies inside the 16-sample subset, which lies
inside the 64-sample one, and the order is the same whatever the file order, process or platform (sha256, not
Python's salted `hash`). DoIT's original sampler drew from a shared RNG in glob order, so its subsets were
neither nested nor reproducible.

Units (never confused, because they have different Python types):
- `int` N >= 0: N samples;
- `float` f in (0, 1]: floor(f * pool size) samples (1.0 is the whole pool, 1 is one sample);
- `"all"`: the whole pool.
Without `cap`, asking for more than a pool holds is an error that names every short pool; with `cap`, a draw
takes what exists and the manifest records requested vs taken.

The paper's guideline mixes are `guideline_mix("baseline" | "reconstruct" | "maximum" | "mix-2560" |
"mix-40960")`; a curated volume is `MixtureSpec(default=N)`, a synthetic one `MixtureSpec(synthetic_total=N)`.
Torch-free (login-node path); writing a mixture to disk lives in `mixture_store`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hpc_instruct.data.doit_reader import POOL_SPLITS, SYNTHETIC, DoitData
from hpc_instruct.data.records import Sample
from hpc_instruct.errors import UserError

Amount = int | float | Literal["all"]
ALL = "all"
MIXTURE_FORMAT = 1  # bump when the draw or the written files change; part of every mixture id


class MixtureError(UserError):
    """A mixture that cannot be drawn from the data as asked (unknown ability, pool too small, bad amount)."""


def check_amount(amount: Any, what: str) -> Amount:
    """Validate one amount (see the module docstring for units); return it unchanged."""
    if isinstance(amount, bool):
        raise MixtureError(f"{what}: expected a count, a fraction in (0, 1] or 'all', got {amount!r}")
    if isinstance(amount, int):
        if amount < 0:
            raise MixtureError(f"{what}: a sample count cannot be negative ({amount})")
        return amount
    if isinstance(amount, float):
        if not 0.0 < amount <= 1.0 or math.isnan(amount):
            raise MixtureError(f"{what}: a fraction must be in (0, 1], got {amount}; write an int for a count")
        return amount
    if amount == ALL:
        return ALL
    raise MixtureError(f"{what}: expected a count, a fraction in (0, 1] or 'all', got {amount!r}")


def count_of(amount: Amount, available: int) -> int:
    """How many samples `amount` asks for from a pool of `available`."""
    if amount == ALL:
        return available
    if isinstance(amount, float):
        return math.floor(amount * available + 1e-9)  # 0.29 * 100 is 28.999...; mean 29
    return int(amount)


@dataclass(frozen=True)
class MixtureSpec:
    """What a training mixture takes from each pool. Two equal specs on the same data give the same bytes.

    Attributes:
        per_ability: explicit amounts, as a mapping or pairs; stored sorted by ability.
        default: amount for every other ability in `abilities` (0 leaves them out).
        synthetic_total: amount from the synthetic pool (not labelled by ability).
        cap: take what a pool holds when it holds fewer than asked, instead of failing.
        seed: the draw's seed; all nested volumes of one seed share one order per pool.
        pool: which curated files to draw from: "full" (all curated data) or "1000" (the release's subsets).
        abilities: the curated abilities of the study; None means every ability the data has in `pool`.
    """

    per_ability: tuple[tuple[str, Amount], ...] = ()
    default: Amount = 0
    synthetic_total: Amount = 0
    cap: bool = False
    seed: int = 0
    pool: str = "full"
    abilities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        pairs = self.per_ability.items() if isinstance(self.per_ability, Mapping) else self.per_ability
        normalised = tuple(sorted((str(k), check_amount(v, f"per_ability.{k}")) for k, v in pairs))
        if len({k for k, _ in normalised}) != len(normalised):
            raise MixtureError(f"per_ability names an ability twice: {[k for k, _ in normalised]}")
        object.__setattr__(self, "per_ability", normalised)
        check_amount(self.default, "default")
        check_amount(self.synthetic_total, "synthetic_total")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise MixtureError(f"seed: expected an integer, got {self.seed!r}")
        if self.pool not in POOL_SPLITS:
            raise MixtureError(f"pool: expected one of {POOL_SPLITS}, got {self.pool!r}")
        if self.abilities is not None:
            object.__setattr__(self, "abilities", tuple(sorted(set(self.abilities))))
            unknown = [k for k, _ in normalised if k not in self.abilities]
            if unknown:
                raise MixtureError(f"per_ability names {unknown}, which are not in abilities {self.abilities}")

    def to_dict(self) -> dict[str, Any]:
        return {"per_ability": dict(self.per_ability), "default": self.default,
                "synthetic_total": self.synthetic_total, "cap": self.cap, "seed": self.seed, "pool": self.pool,
                "abilities": list(self.abilities) if self.abilities is not None else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MixtureSpec:
        abilities = d.get("abilities")
        return cls(tuple(d.get("per_ability", {}).items()), d.get("default", 0), d.get("synthetic_total", 0),
                   bool(d.get("cap", False)), int(d.get("seed", 0)), d.get("pool", "full"),
                   tuple(abilities) if abilities is not None else None)

    @classmethod
    def from_amounts(cls, samples_per_ability: Mapping[str, int | str] | None = None,
                     fraction_per_ability: Mapping[str, float] | None = None, synthetic_total_samples: int = 0,
                     **kwargs: Any) -> MixtureSpec:
        """Build from recipe-style keys, where the ability name "default" means every other ability."""
        merged: dict[str, Amount] = {}
        for source in (samples_per_ability or {}, fraction_per_ability or {}):
            for k, v in source.items():
                if k in merged:
                    raise MixtureError(f"{k!r} has both a sample count and a fraction; give one")
                merged[k] = float(v) if source is fraction_per_ability else v
        default = merged.pop("default", 0)
        return cls(tuple(merged.items()), default, synthetic_total_samples, **kwargs)

    @property
    def content_hash(self) -> str:
        """16 hex digits of sha256 over the canonical JSON of the spec (units kept: 1 and 1.0 differ)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def nested_order(samples: Iterable[Sample], *, seed: int, pool: str) -> tuple[Sample, ...]:
    """The pool's seeded order: a function of (seed, pool key, uids) only. Ties (duplicate content) by idx."""
    prefix = hashlib.sha256(f"{seed}|{pool}|".encode())  # the key is sha256(f"{seed}|{pool}|{uid}")

    def key(s: Sample) -> tuple[bytes, str, int, str, int]:
        h = prefix.copy()
        h.update(s.uid.encode())
        return (h.digest(), s.uid, s.idx, s.source, s.line)

    return tuple(sorted(samples, key=key))


@dataclass(frozen=True)
class Draw:
    """What one pool gave: the amount asked, the count it meant, what the pool had, and the samples taken."""

    pool: str  # ability key, or "synthetic"
    amount: Amount
    requested: int
    available: int
    taken: tuple[Sample, ...] = field(repr=False)

    @property
    def capped(self) -> bool:
        return len(self.taken) < self.requested


def draw(samples: Iterable[Sample], amount: Amount, *, seed: int, pool: str, cap: bool) -> Draw:
    """The first `amount` of the pool's nested order (see module docstring); error if short and not capped."""
    ordered = nested_order(samples, seed=seed, pool=pool)
    requested = count_of(check_amount(amount, pool), len(ordered))
    if requested > len(ordered) and not cap:
        raise MixtureError(f"{pool}: asked for {requested} samples, the pool holds {len(ordered)} "
                           "(set cap to take what exists)")
    return Draw(pool, amount, requested, len(ordered), ordered[:requested])


def pool_fingerprint(samples: Iterable[Sample]) -> str:
    """sha256 over the sorted (uid, idx) of a pool: its content, independent of file order and line endings."""
    lines = sorted(f"{s.uid} {s.idx}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class MixturePlan:
    """A spec resolved against data: one Draw per used pool, and the mixture id that names it on disk."""

    spec: MixtureSpec
    draws: tuple[Draw, ...]  # curated abilities sorted by key, then the synthetic pool
    fingerprints: dict[str, str]  # pool key -> pool_fingerprint, for the pools drawn from
    mixture_id: str

    @property
    def samples(self) -> tuple[Sample, ...]:
        return tuple(s for d in self.draws for s in d.taken)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def plan_mixture(spec: MixtureSpec, data: DoitData) -> MixturePlan:
    """Resolve `spec` against `data`. Raises one MixtureError naming every unknown ability and short pool."""
    have = data.abilities(spec.pool)
    problems: list[str] = []
    study = spec.abilities if spec.abilities is not None else have
    if not have and (spec.per_ability or spec.default != 0):
        problems.append(f"the data holds no curated/{spec.pool} pools (was that split read?)")
    for name in sorted(set(study) | {k for k, _ in spec.per_ability}):
        if name not in have:
            problems.append(f"ability {name!r} has no curated/{spec.pool} data{_did_you_mean(name, have)}")
    explicit = dict(spec.per_ability)
    wanted: list[tuple[str, Amount]] = [(a, explicit.get(a, spec.default)) for a in study if a in have]
    if spec.synthetic_total != 0:
        if SYNTHETIC in data.samples:
            wanted.append((SYNTHETIC, spec.synthetic_total))
        else:
            problems.append(f"synthetic_total is {spec.synthetic_total!r} but the data has no synthetic pool")
    draws: list[Draw] = []
    for pool, amount in wanted:
        if amount == 0:
            continue
        samples = data.pool(pool, spec.pool)
        try:
            draws.append(draw(samples, amount, seed=spec.seed, pool=pool, cap=spec.cap))
        except MixtureError as e:
            problems.append(str(e))
    if problems:
        raise MixtureError("mixture cannot be drawn:\n" + "\n".join(f"  {p}" for p in problems))
    fingerprints = {d.pool: pool_fingerprint(data.pool(d.pool, spec.pool)) for d in draws}
    identity = json.dumps({"format": MIXTURE_FORMAT, "spec": spec.to_dict(), "pools": fingerprints},
                          sort_keys=True, separators=(",", ":"))
    mixture_id = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return MixturePlan(spec, tuple(draws), fingerprints, mixture_id)


# The DoIT guideline mixes (paper section on data construction; see shared/study/DOIT.md).
_GUIDED = (("creative_writing", 1000), ("ethics", 64), ("role_play", 64))
GUIDELINE_MIXES = ("baseline", "reconstruct", "maximum", "mix-2560", "mix-40960")


def guideline_mix(name: str, *, seed: int = 0, pool: str = "full",
                  abilities: tuple[str, ...] | None = None) -> MixtureSpec:
    """The paper's named mixes. `reconstruct` and later cap, so a short pool (biology) gives what it has.

    baseline: 1000 per ability. reconstruct: ethics 64, role_play 64, creative_writing 1000, the rest 1305
    each (~10k in total). maximum: the same three, all available data for the rest. mix-N: maximum plus N
    synthetic samples.
    """
    guided = tuple(p for p in _GUIDED if abilities is None or p[0] in abilities)
    if name == "baseline":
        return MixtureSpec(default=1000, seed=seed, pool=pool, abilities=abilities)
    if name == "reconstruct":
        return MixtureSpec(guided, default=1305, cap=True, seed=seed, pool=pool, abilities=abilities)
    if name == "maximum" or name == "mix-0":
        return MixtureSpec(guided, default=ALL, cap=True, seed=seed, pool=pool, abilities=abilities)
    if name.startswith("mix-") and name[4:].isdigit():
        return MixtureSpec(guided, default=ALL, synthetic_total=int(name[4:]), cap=True, seed=seed, pool=pool,
                           abilities=abilities)
    raise MixtureError(f"unknown guideline mix {name!r}; known: {', '.join(GUIDELINE_MIXES)} (or mix-N)"
                       f"{_did_you_mean(name, GUIDELINE_MIXES)}")
