"""Contamination and duplicate checks: held-out prompts that also appear in a training pool.

Two samples collide when their normalised user prompts are equal (NFKC, case-folded, whitespace removed; see
`Sample.prompt_key`). A collision between a training pool (curated or synthetic) and a valid/test set makes
that eval item a memorisation test, so it is reported with both locations; the researcher decides whether to
drop it. Collisions are compared across abilities too: a synthetic record is not labelled by ability.

Two entry points: `find_contamination` compares parsed `Sample`s; `find_prompt_collisions` compares
`PromptSite`s (file, line, a digest of the prompt key), which is what record validation keeps in its cache, so
a re-validate of unchanged files finds contamination without parsing them again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from hpc_instruct.data.doit_reader import EVAL_SPLITS, DoitData
from hpc_instruct.data.records import Sample


@dataclass(frozen=True)
class Contamination:
    """One held-out item whose prompt also occurs in training data (every training location listed)."""

    held_out: Sample
    training: tuple[Sample, ...]

    def __str__(self) -> str:
        where = ", ".join(f"{s.source}:{s.line}" for s in self.training[:3])
        more = f" (+{len(self.training) - 3} more)" if len(self.training) > 3 else ""
        return (f"{self.held_out.source}:{self.held_out.line}: {self.held_out.split} item "
                f"{self.held_out.ability}#{self.held_out.idx} has the same prompt as training data at {where}{more}")


def find_contamination(training: Iterable[Sample], held_out: Iterable[Sample]) -> tuple[Contamination, ...]:
    """Held-out samples whose prompt key equals that of any training sample, in held-out order."""
    by_key: dict[str, list[Sample]] = defaultdict(list)
    for s in training:
        by_key[s.prompt_key].append(s)
    return tuple(Contamination(h, tuple(by_key[h.prompt_key])) for h in held_out if h.prompt_key in by_key)


@dataclass(frozen=True)
class PromptSite:
    """Where a prompt occurs, without the record: its file, 1-based line, and `prompt_digest` of its key."""

    path: str
    line: int
    digest: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class PromptCollision:
    """One held-out item whose prompt digest equals that of training records (every training site listed)."""

    held_out: PromptSite
    training: tuple[PromptSite, ...]

    def where(self, limit: int = 3) -> str:
        """The training sites, the first `limit` by name: "a.json:3, b.json:9 (+4 more)"."""
        more = f" (+{len(self.training) - limit} more)" if len(self.training) > limit else ""
        return ", ".join(str(s) for s in self.training[:limit]) + more


def prompt_digest(prompt_key: str) -> str:
    """A 16-hex-digit digest of a `Sample.prompt_key`: small enough to cache one per record."""
    return hashlib.sha256(prompt_key.encode("utf-8")).hexdigest()[:16]


def find_prompt_collisions(training: Iterable[PromptSite],
                           held_out: Iterable[PromptSite]) -> tuple[PromptCollision, ...]:
    """Held-out sites whose digest equals that of any training site, in held-out order."""
    by_digest: dict[str, list[PromptSite]] = defaultdict(list)
    for site in training:
        by_digest[site.digest].append(site)
    return tuple(PromptCollision(h, tuple(by_digest[h.digest])) for h in held_out if h.digest in by_digest)


def data_contamination(data: DoitData) -> tuple[Contamination, ...]:
    """Check every eval split of `data` (valid, test, C-Eval) against every training pool it holds."""
    training = [s for split, pools in data.samples.items() if split not in EVAL_SPLITS
                for pool in pools.values() for s in pool]
    held_out = [s for split in EVAL_SPLITS for ability in sorted(data.samples.get(split, {}))
                for s in data.samples[split][ability]]
    return find_contamination(training, held_out)


def find_duplicates(samples: Iterable[Sample]) -> tuple[tuple[Sample, ...], ...]:
    """Groups of samples with the same content (`uid`); a pool with duplicates over-weights those items."""
    by_uid: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_uid[s.uid].append(s)
    return tuple(tuple(g) for g in by_uid.values() if len(g) > 1)


def contamination_report(found: tuple[Contamination, ...], limit: int = 20) -> str:
    """A readable summary: counts per eval set, then the first `limit` collisions one per line."""
    if not found:
        return "no held-out prompt appears in the training data"
    counts: dict[str, int] = defaultdict(int)
    for c in found:
        counts[f"{c.held_out.ability}/{c.held_out.split}"] += 1
    head = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    lines = [f"{len(found)} held-out item(s) share a prompt with training data ({head})"]
    lines += [f"  {c}" for c in found[:limit]]
    if len(found) > limit:
        lines.append(f"  ... and {len(found) - limit} more")
    return "\n".join(lines)
