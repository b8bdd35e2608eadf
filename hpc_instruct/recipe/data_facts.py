"""What planning needs to know about a study's data, without reading samples.

Pool sizes, eval-set sizes and a data fingerprint come from the files when they are there (line counts and
content hashes), from the generator settings for generated data, and otherwise from the DoIT registry (with a
warning, so a login node can plan a study before the data is staged).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.data.abilities import REGISTRY
from hpc_instruct.data.demo.study import GENERATOR_VERSION  # the generator owns it: its bytes pin trial ids
from hpc_instruct.recipe.schema import DataConfig

DOIT_SYNTHETIC_POOL = 40960  # synthetic/40960/general_instruction_gpt4_41k.json
DOIT_EVAL_ITEMS = 100  # per ability and split (inferred)
DEMO_MEAN_TOKENS = 48
DEMO_OOD_ITEMS = 40  # hpc_instruct.data.demo writes 40 items per out-of-domain set


@dataclass(frozen=True)
class DataFacts:
    pool_sizes: dict[str, int]
    synthetic_size: int
    eval_sizes: dict[str, int]  # "<ability>/<split>" -> items
    mean_tokens: dict[str, int]
    fingerprint: str  # pins the data revision into trial ids
    source: str  # where the numbers came from, printed by `hpci plan`
    warnings: tuple[str, ...] = ()


def pool_file(root: Path, ability: str, pool: str) -> Path:
    return root / "curated" / pool / f"{ability}_{pool}.json"


def eval_file(root: Path, ability: str, split: str) -> Path:
    return root / "curated" / split / f"{ability}_{split}.json"


def gather(cfg: DataConfig, out_of_domain: tuple[str, ...], study_dir: Path) -> DataFacts:
    abilities = cfg.abilities
    if cfg.generate is not None:
        g = cfg.generate
        tokens = {a: cfg.mean_tokens.get(a, cfg.mean_tokens.get("default", DEMO_MEAN_TOKENS)) for a in abilities}
        tokens["synthetic"] = cfg.mean_tokens.get("synthetic", cfg.mean_tokens.get("default", DEMO_MEAN_TOKENS))
        return DataFacts(
            pool_sizes={a: g.pool_size for a in abilities},
            synthetic_size=g.synthetic_size,
            eval_sizes={f"{a}/{s}": DOIT_EVAL_ITEMS for a in abilities for s in ("valid", "test")}
            | {f"{o}/test": DEMO_OOD_ITEMS for o in out_of_domain},
            mean_tokens=tokens,
            fingerprint=f"generated:{GENERATOR_VERSION}:seed={g.seed}:pool={g.pool_size}:syn={g.synthetic_size}",
            source=f"generated into {study_dir / 'data'} (seed {g.seed}, {g.pool_size} per ability)",
        )
    tokens = {a: cfg.mean_tokens.get(a, cfg.mean_tokens.get("default", _registry_tokens(a))) for a in abilities}
    if "synthetic" in cfg.mean_tokens:  # else the plan assumes 400 (DoIT's GPT-4 answers are long)
        tokens["synthetic"] = cfg.mean_tokens["synthetic"]
    root = Path(cfg.root) if cfg.root else None
    if root is not None and root.is_dir():
        return _from_files(cfg, root, out_of_domain, tokens)
    registry = {a: REGISTRY[a].pool_size if a in REGISTRY else 0 for a in abilities}
    evals = {f"{a}/{s}": DOIT_EVAL_ITEMS for a in abilities for s in ("valid", "test")}
    evals.update({f"{o}/test": REGISTRY[o].total if o in REGISTRY else 0 for o in out_of_domain})
    pin = f"revision:{cfg.revision}" if cfg.revision else f"unpinned:{cfg.root}"
    warning = f"data not found at {cfg.root!s}: pool and eval sizes are the DoIT registry's"
    if not cfg.revision:
        warning += "; set data.revision to pin the data in trial ids"
    return DataFacts(registry, DOIT_SYNTHETIC_POOL, evals, tokens, pin, "DoIT registry (data not staged)", (warning,))


def _registry_tokens(ability: str) -> int:
    return REGISTRY[ability].mean_tokens if ability in REGISTRY else 300


def _from_files(cfg: DataConfig, root: Path, out_of_domain: tuple[str, ...], tokens: dict[str, int]) -> DataFacts:
    digest = hashlib.sha256()
    warnings: list[str] = []

    def count(path: Path) -> int:
        if not path.is_file():
            warnings.append(f"missing data file {path}")
            digest.update(f"{path.name}:missing\n".encode())
            return 0
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root)}:{hashlib.sha256(data).hexdigest()}\n".encode())
        return sum(1 for line in data.splitlines() if line.strip())

    pools = {a: count(pool_file(root, a, cfg.pool)) for a in cfg.abilities}
    synthetic = count(root / cfg.synthetic_pool) if cfg.synthetic_pool else 0
    evals = {f"{a}/{s}": count(eval_file(root, a, s)) for a in cfg.abilities for s in ("valid", "test")}
    evals.update({f"{o}/test": count(eval_file(root, o, "test")) for o in out_of_domain})
    pin = f"revision:{cfg.revision}" if cfg.revision else f"sha256:{digest.hexdigest()}"
    return DataFacts(pools, synthetic, evals, tokens, pin, f"files under {root}", tuple(warnings))
