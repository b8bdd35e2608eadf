"""A simulated study: every planned eval shard written as the evaluation stage would, from planted truth.

For the analysis tests and `benchmarks/bench_aggregate.py` only: nothing here trains or evaluates a model. It
writes exactly what the eval stage contracts to write (`RESULT_SCHEMA` rows, the `StudyDir.eval_part` paths,
an atomic rename, then a `.done` marker naming the EvalTask id), so aggregation and reporting are exercised on
the real file format with answers known in advance (`planted.py`).

Items are Bernoulli draws through a Gaussian copula: an item's latent difficulty is shared by every checkpoint
that answers it (`item_correlation`), so hard items are hard for every model, as in real evaluations, and
item-paired comparisons are tighter than independent ones. For `test_on: selected`, the simulator plays the
eval writer's part: it selects on the valid rows it wrote and records the chosen epoch in `checkpoint`,
`epoch` and `selection_rule`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from planted_truth import PlantedTruth, _stable_int, default_truth, item_chances, item_formats
from scipy.special import ndtri

from hpc_instruct import __version__
from hpc_instruct.analyze.expected import StudyPlan
from hpc_instruct.atomic import atomic_path, file_sha256, write_marker, write_text
from hpc_instruct.evaluate.result_schema import RESULT_SCHEMA, SCHEMA_VERSION
from hpc_instruct.evaluate.selection import SELECTION_RULE
from hpc_instruct.expansion import EvalTask, Owner
from hpc_instruct.study_dir import BASE, SELECTED, StudyDir, epoch_name, parse_epoch

log = logging.getLogger(__name__)
SIMULATED_VERSION = f"hpc_instruct {__version__}+simulated"


@dataclass(frozen=True)
class SimulatedStudy:
    """What the simulator wrote and the truth it planted."""

    directory: Path
    plan: StudyPlan
    truth: PlantedTruth
    num_parameters: Mapping[str, int]  # model name -> parameters
    shards: int
    rows: int
    writer_choice: Mapping[str, int]  # trial id -> epoch the simulated writer selected (test_on: selected)


def create_study(
    recipe: str | os.PathLike,
    output_root: str | os.PathLike,
    overrides: tuple[str, ...] = (),
    truth: PlantedTruth | Callable[[StudyPlan], PlantedTruth] | None = None,
    seed: int = 0,
    skip: Callable[[EvalTask], bool] | None = None,
) -> SimulatedStudy:
    """Load a recipe into `<output_root>/<name>`, write `study.yaml` and `plan.json` as the launcher does, then
    every planned shard (except those `skip` names) from `truth`: a `PlantedTruth`, a function of the plan that
    makes one, or None for `default_truth` of the plan's abilities."""
    import yaml

    from hpc_instruct.analyze.expected import load_plan
    from hpc_instruct.launch.plan import plan_dict
    from hpc_instruct.recipe.study import load_study

    study = load_study(recipe, (f"study.output_root={output_root}",) + tuple(overrides))
    expansion = study.expand()
    sdir = StudyDir(study.directory)
    write_text(
        sdir.recipe,
        "# resolved recipe (written by tests/analyze/simulated_study.py)\n"
        + yaml.safe_dump(study.tree.data, sort_keys=False, allow_unicode=True),
    )
    write_text(sdir.plan, json.dumps(plan_dict(study, expansion), indent=1, ensure_ascii=False) + "\n")
    plan = load_plan(study.directory)
    if truth is None:
        truth = default_truth(plan.abilities, plan.out_of_domain, seed)
    elif callable(truth):
        truth = truth(plan)
    params = {name: shape.num_parameters for name, shape in study.shapes.items()}
    return write_shards(study.directory, plan, truth, params, seed, skip)


def write_shards(
    study_dir: str | os.PathLike,
    plan: StudyPlan,
    truth: PlantedTruth,
    num_parameters: Mapping[str, int],
    seed: int = 0,
    skip: Callable[[EvalTask], bool] | None = None,
) -> SimulatedStudy:
    """Write every planned shard of `plan` (valid first, so the writer can select for `selected` test tasks)."""
    sdir = StudyDir(Path(study_dir))
    by_owner: dict[str, list[EvalTask]] = {}
    for p in plan.shards:
        by_owner.setdefault(p.owner, []).append(p)
    sizes = plan.set_sizes()
    latent = {
        s: np.random.default_rng(_stable_int(str(seed), s, "items")).standard_normal(n)
        for s, n in sizes.items()
    }
    chances = {s: item_chances(s.split("/")[0], n) for s, n in sizes.items()}
    formats = {s: item_formats(s.split("/")[0], n) for s, n in sizes.items()}
    shards = rows = 0
    choice: dict[str, int] = {}
    pool = ThreadPoolExecutor(max_workers=4)  # Parquet encoding and file system calls release the GIL
    pending = []

    def write(*args) -> None:
        pending.append(pool.submit(_write, sdir, plan, *args, chances, formats))

    for trial in plan.trials:
        tasks = by_owner.get(trial.id, [])
        params = num_parameters.get(trial.model, int(truth.reference_parameters))
        valid: dict[int, list[float]] = {}
        later = []
        for p in tasks:
            if p.checkpoint == SELECTED:
                later.append(p)
                continue
            epoch = _epoch(p.checkpoint)
            correct = _draw(p, trial, truth, params, epoch, latent[p.eval_set], seed)
            if p.split == "valid" and p.ability in plan.abilities:
                valid.setdefault(epoch, []).append((p.ability, correct.sum(), correct.size))
            if skip is None or not skip(p):
                write(trial, p, params, p.checkpoint, epoch, "", correct)
                shards, rows = shards + 1, rows + correct.size
        if later:
            epoch = _writer_selects(valid, trial)
            choice[trial.id] = epoch
            for p in later:
                correct = _draw(p, trial, truth, params, epoch, latent[p.eval_set], seed)
                if skip is None or not skip(p):
                    write(trial, p, params, epoch_name(epoch), epoch, SELECTION_RULE, correct)
                    shards, rows = shards + 1, rows + correct.size
    with pool:
        for future in pending:
            future.result()
    log.info("simulated %d shards, %d rows under %s", shards, rows, sdir.eval_root)
    return SimulatedStudy(Path(study_dir), plan, truth, dict(num_parameters), shards, rows, choice)


def _epoch(checkpoint: str) -> int:
    return 0 if checkpoint == BASE else parse_epoch(checkpoint)


def _draw(
    p: EvalTask,
    trial: Owner,
    truth: PlantedTruth,
    params: int,
    epoch: int,
    latent: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Correct (bool) for items start..stop: latent z = sqrt(rho) * item + sqrt(1 - rho) * fresh < ndtri(p)."""
    rho = truth.item_correlation
    prob = truth.accuracy(trial, p.ability, params, epoch if trial.checkpoints else None) / 100.0
    rng = np.random.default_rng(_stable_int(str(seed), p.id))
    fresh = rng.standard_normal(p.stop - p.start)
    z = np.sqrt(rho) * latent[p.start : p.stop] + np.sqrt(1.0 - rho) * fresh
    return z < ndtri(prob)


def _writer_selects(valid: dict[int, list], trial: Owner) -> int:
    """The simulated eval writer's checkpoint choice: max mean valid accuracy over abilities, ties -> later."""
    if not valid:
        return trial.checkpoints[-1]
    means = {e: float(np.mean([c / n for _, c, n in v if n])) for e, v in valid.items()}
    return max(sorted(means), key=lambda e: (round(means[e], 12), e))


def _write(
    sdir: StudyDir,
    plan: StudyPlan,
    trial: Owner,
    p: EvalTask,
    params: int,
    checkpoint: str,
    epoch: int,
    rule: str,
    correct: np.ndarray,
    chances: dict,
    formats: dict,
) -> None:
    path = sdir.eval_shard(p)
    with atomic_path(path) as tmp:
        pq.write_table(_rows(plan, trial, p, params, checkpoint, epoch, rule, correct, chances, formats), tmp)
    write_marker(path, p.id, rows=int(correct.size), sha256=file_sha256(path), simulated=True)  # as eval does


def _rows(
    plan: StudyPlan,
    trial: Owner,
    p: EvalTask,
    params: int,
    checkpoint: str,
    epoch: int,
    rule: str,
    correct: np.ndarray,
    chances: dict,
    formats: dict,
) -> pa.Table:
    """One shard's rows in RESULT_SCHEMA order; constant columns are `pa.repeat`ed scalars (cheap)."""
    n = correct.size
    index = np.arange(p.start, p.stop, dtype=np.int64)
    fmt = formats[p.eval_set][p.start : p.stop]
    letters = np.array(list("ABCD"), dtype=object)
    reference = letters[index % 4]
    parsed = np.where(correct, reference, letters[(index + 1) % 4])
    rank = fmt == "rank3"
    ppl = np.where(correct, 2.0, 6.0)
    cand = np.stack([ppl, np.full(n, 4.0), np.full(n, 5.0)], axis=1).ravel()
    ppl_offsets = np.concatenate([[0], np.cumsum(np.where(rank, 3, 0))]).astype(np.int32)
    logp = np.full((n, 4), -3.0)
    logp[np.arange(n), np.where(correct, index % 4, (index + 1) % 4)] = -0.1
    mc = ~rank
    logp_offsets = np.concatenate([[0], np.cumsum(np.where(mc, 4, 0))]).astype(np.int32)
    versions = json.dumps(
        {"numpy": np.__version__, "pyarrow": pa.__version__, "simulator": "planted"}, sort_keys=True
    )

    def const(value, typ):
        return pa.repeat(pa.scalar(value, typ), n)

    columns = {
        "schema_version": const(SCHEMA_VERSION, pa.int16()),
        "study": const(plan.study, pa.string()),
        "trial_id": const(trial.id, pa.string()),
        "eval_task_id": const(p.id, pa.string()),
        "label": const(trial.label, pa.string()),
        "model": const(trial.model, pa.string()),
        "size": const(trial.size, pa.string()),
        "num_parameters": const(params, pa.int64()),
        "source": const(trial.source, pa.string()),
        "mixture": const(trial.mixture_json, pa.string()),
        "samples_per_ability": const(
            json.dumps(dict(trial.samples_per_ability), sort_keys=True), pa.string()
        ),
        "total_samples": const(trial.total_samples, pa.int64()),
        "synthetic_samples": const(trial.synthetic_samples, pa.int64()),
        "seed": const(trial.seed, pa.int64()),
        "checkpoint": const(checkpoint, pa.string()),
        "epoch": const(epoch, pa.int32()),
        "step": const(epoch * trial.steps_per_epoch, pa.int64()),
        "selection_rule": const(rule, pa.string()),
        "split": const(p.split, pa.string()),
        "eval_set": const(p.eval_set, pa.string()),
        "ability": const(p.ability, pa.string()),
        "item_id": pa.array(
            np.char.add(f"{p.ability}-{p.split}-", index.astype(str)).astype(object), pa.string()
        ),
        "item_index": pa.array(index),
        "format": pa.array(fmt, pa.string()),
        "question_format": pa.array(rank.astype(np.int8)),
        "response": pa.array(parsed, pa.string()),
        "parsed": pa.array(parsed, pa.string()),
        "reference": pa.array(reference, pa.string()),
        "correct": pa.array(correct),
        "chance": pa.array(chances[p.eval_set][p.start : p.stop]),
        "parse_mode": pa.array(np.where(rank, "rank", "one_char").astype(object), pa.string()),
        "candidate_ppl": pa.ListArray.from_arrays(
            pa.array(ppl_offsets), pa.array(cand.reshape(n, 3)[rank].ravel()), mask=pa.array(~rank)
        ),
        "letter_logprobs": pa.ListArray.from_arrays(
            pa.array(logp_offsets), pa.array(logp[mc].ravel()), mask=pa.array(~mc)
        ),
        "prompt_tokens": pa.array(np.full(n, 120, np.int32)),
        "response_tokens": pa.array(np.where(rank, 0, 1).astype(np.int32)),
        "latency_s": const(0.01, pa.float64()),
        "data_fingerprint": const(plan.fingerprint, pa.string()),
        "template_hash": const("sim-template-0001", pa.string()),
        "tokenizer_hash": const("sim-tokenizer-0001", pa.string()),
        "scorer_version": const("doit-scoring-1", pa.string()),
        "code_version": const(SIMULATED_VERSION, pa.string()),
        "library_versions": const(versions, pa.string()),
        "engine": const("native", pa.string()),
    }
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in RESULT_SCHEMA], schema=RESULT_SCHEMA)
