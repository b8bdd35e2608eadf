"""The dry run: every job of every stage, its resources and outputs, and the totals, as a table or JSON.

`hpci plan` must answer on a login node in well under a second: nothing here imports torch.
Stages are submitted as one array job per stage and resource shape (never one job per task):
  prepare (one element per distinct mixture) -> base (one element per pretrained model, grouped by layout)
  -> train (one element per trial, grouped by layout)
  -> eval (one element per shard, grouped by the GPUs a model needs for inference) -> aggregate.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from hpc_instruct.expansion import Expansion
from hpc_instruct.launch.tasks import STAGES, Task, build_tasks, resources
from hpc_instruct.recipe.study import Study


@dataclass(frozen=True)
class StageJob:
    """One array submission: a stage, a resource shape, and how many elements it has."""

    stage: str
    name: str
    elements: int
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: int
    mem_gb: float
    time_min: int
    covers: str
    outputs: str


_OUTPUTS = {"prepare": "mixtures/<id>/", "base": "bases/<id>/ (base.json, export/)", "train": "trials/<id>/ (checkpoints, export/epoch-NNN)",
            "eval": "eval/<trial>/<ckpt>/<set>/part-*.parquet", "aggregate": "results/"}


def stage_jobs(study: Study, ex: Expansion) -> list[StageJob]:
    """One array job per stage and resource group, in stage order (what `hpci submit` sends to Slurm)."""
    groups: dict[tuple[str, str], list[Task]] = defaultdict(list)
    for task in build_tasks(study, ex):
        groups[(task.stage, task.group)].append(task)
    jobs = []
    for (stage, group), tasks in sorted(groups.items(), key=lambda kv: (STAGES.index(kv[0][0]), kv[0][1])):
        r = resources(study, stage, group)
        if stage == "train":
            covers = f"{len(tasks)} trials of " + ", ".join(sorted({ex.owner(t.owner).model for t in tasks}))
        elif stage == "eval":
            covers = f"{len(tasks)} shards of " + ", ".join(sorted({ex.owner(t.owner).model for t in tasks}))
        elif stage == "base":
            names = {t.label.split("/", 1)[1] for t in tasks}
            steps = sum(study.model(n).pretrain.steps for n in names)
            covers = f"{len(tasks)} base models pretrained ({', '.join(sorted(names))}; {steps} steps in all)"
        elif stage == "prepare":
            covers = f"{len(tasks)} mixtures: sample, tokenize, pack"
        else:
            covers = "scores, curves, report"
        jobs.append(StageJob(stage, f"{stage}-{group}", len(tasks), r.nodes, r.tasks_per_node, r.gpus_per_node,
                             r.cpus_per_task, r.mem_gb, r.time_min, covers, _OUTPUTS[stage]))
    return jobs


def plan_dict(study: Study, ex: Expansion) -> dict:
    """The plan as JSON-ready data (`hpci plan --format json`)."""
    r = study.recipe
    evals_per_trial = Counter(t.trial for t in ex.eval_tasks)
    jobs = stage_jobs(study, ex)
    owners = ex.to_dict()  # what Expansion.from_dict reads back (analysis, status); plus eval counts per owner
    for row in owners["trials"] + owners["baselines"]:
        row["eval_tasks"] = evals_per_trial[row["id"]]
    return {
        "study": r.study.name,
        "directory": str(study.directory),
        "data": {"source": study.facts.source, "fingerprint": study.facts.fingerprint,
                 "pool_sizes": study.facts.pool_sizes, "synthetic_pool": study.facts.synthetic_size},
        "assumptions": assumptions(study),
        "trials": owners["trials"],
        "baselines": owners["baselines"],
        "eval_tasks": owners["eval_tasks"],
        "jobs": [asdict(j) for j in jobs],
        "totals": totals(ex, jobs),
        "memory": memory_dict(study),
        "eval_bill": _bill_dict(study, ex),
        "warnings": list(study.warnings),
    }


def _bill_dict(study: Study, ex: Expansion) -> dict:
    from hpc_instruct.launch.eval_bill import eval_bill

    b = eval_bill(study, ex)
    return {"gpu_hours": round(b.gpu_hours, 2), "by_part": {k: round(v, 2) for k, v in b.by_part.items()},
            "by_job": {k: round(v, 2) for k, v in b.by_job.items()}, "engines": b.engines,
            "lengths": b.lengths_source, "knobs": {k: round(v, 2) for k, v in b.knobs.items()}}


def memory_dict(study: Study) -> dict:
    """Per model: each pipeline rank's GPU memory, a node's host memory and an eval GPU's, GiB by part."""
    def parts(b) -> dict:
        return {"total_gib": round(b.gib, 2)} | {name: round(v / 2**30, 2) for name, v in b.parts}

    return {name: {"gpu": m.gpu, "gpu_gib": round(m.gpu_gib, 2),
                   "train_ranks": [parts(b) | {"pp_rank": i} for i, b in enumerate(m.train.per_stage)],
                   "train_node_host": parts(m.train.host), "eval_gpu": parts(m.eval) | {"gpu": m.eval_gpu},
                   "checkpoint_save": None if m.save is None else {
                       "gib": round(m.save.bytes / 2**30, 1), "seconds": round(m.save.seconds, 1),
                       "fs_gbps": m.save.fs_gbps, "warning_s": m.save.warning_s, "fits_warning": m.save.fits_warning}}
            for name, m in study.memory.items()}


def assumptions(study: Study) -> dict:
    ex = study.recipe.execution
    return {
        "flops": "6 x matmul weights of the per-rank shapes (padded vocab, no input embedding) per token + "
                 "6*layers*hidden*l^2 per sample of l tokens (causal attention within each sample)",
        "gpu": ex.gpu_spec().name,
        "gpu_peak_tflops": ex.gpu_spec().peak_tflops(study.recipe.training.precision),
        "assumed_mfu": ex.assumed_mfu,
        "tokens_per_sample": study.facts.mean_tokens,
        "eval_gpus": "per eval task the fewest tensor-parallel GPUs holding bf16 weights + KV cache",
    }


def totals(ex: Expansion, jobs: list[StageJob]) -> dict:
    return {
        "trials": len(ex.trials),
        "baselines": len(ex.baselines),
        "eval_tasks": len(ex.eval_tasks),
        "array_jobs": len(jobs),
        "train_gpu_hours": round(sum(t.gpu_hours for t in ex.trials), 2),
        "train_tokens": sum(t.tokens for t in ex.trials),
        "optimizer_steps": sum(t.steps for t in ex.trials),
        "by_source": dict(Counter(t.source for t in ex.trials)),
    }


def plan_table(study: Study, ex: Expansion, every_eval_task: bool = False) -> str:
    """The plan as text a person reads: stage jobs, trials, eval tasks per owner, totals, assumptions."""
    jobs = stage_jobs(study, ex)
    evals = Counter(t.trial for t in ex.eval_tasks)
    out = [f"study {study.recipe.study.name} -> {study.directory}",
           f"data: {study.facts.source} [{study.facts.fingerprint}]", ""]
    out += _table(["stage", "array job", "elements", "nodes", "ranks/node", "gpus/node", "cpus/rank", "mem GB/node",
                   "time", "covers", "outputs"],
                  [[j.stage, j.name, j.elements, j.nodes, j.tasks_per_node, j.gpus_per_node, j.cpus_per_task, f"{j.mem_gb:g}",
                    _hm(j.time_min), j.covers, j.outputs] for j in jobs])
    out.append("")
    rows = [[t.id, " = ".join((t.label,) + t.also), t.size, t.source, t.total_samples, t.seed, t.nodes, t.gpus, f"{t.tp}/{t.pp}/{t.dp}",
             t.steps_per_epoch, t.epochs, t.steps, _si(t.tokens), f"{t.gpu_hours:.1f}", len(t.checkpoints),
             evals[t.id]] for t in ex.trials]
    rows += [[b.id, b.label, b.size, b.source, 0, "-", 1, "-", "-", "-", "-", "-", "-", "-", 1, evals[b.id]]
             for b in ex.baselines]
    out += _table(["trial", "label", "size", "source", "samples", "seed", "nodes", "gpus", "tp/pp/dp", "steps/ep",
                   "epochs", "steps", "tokens", "GPU-h", "ckpts", "eval tasks"], rows)
    if every_eval_task:
        out.append("")
        out += _table(["eval task", "trial", "checkpoint", "set", "shard", "items"],
                      [[e.id, e.trial, e.checkpoint, e.eval_set, f"{e.shard + 1}/{e.shards}", f"{e.start}-{e.stop}"]
                       for e in ex.eval_tasks])
    out += _memory_lines(study)
    tot = totals(ex, jobs)
    a = assumptions(study)
    out += ["", f"totals: {tot['trials']} trials ({', '.join(f'{k} {v}' for k, v in tot['by_source'].items())}), "
                f"{tot['baselines']} base models, {tot['eval_tasks']} eval tasks in {tot['array_jobs']} array jobs; "
                f"{tot['optimizer_steps']} optimizer steps, {_si(tot['train_tokens'])} trained tokens, "
                f"~{tot['train_gpu_hours']:.0f} training GPU-hours",
            f"assumptions: FLOPs = {a['flops']}; {a['gpu']} peak {a['gpu_peak_tflops']:g} TFLOP/s per GPU at MFU "
            f"{a['assumed_mfu']:g}; eval GPUs: {a['eval_gpus']}"]
    out += _bill_lines(study, ex, tot["train_gpu_hours"])
    out += [f"warning: {w}" for w in study.warnings]
    return "\n".join(out)


def _bill_lines(study: Study, ex: Expansion, train_hours: float) -> list[str]:
    """Eval GPU-hours by part and array job, next to training's, and what each big knob would make them."""
    from hpc_instruct.evaluate import throughput as t
    from hpc_instruct.launch.eval_bill import CHARS_PER_TOKEN, eval_bill

    b = eval_bill(study, ex)
    if not b.gpu_hours:
        return []
    engines = ", ".join(f"{m} {e}" for m, e in b.engines.items())
    lines = [f"eval bill: ~{b.gpu_hours:.0f} eval GPU-hours next to ~{train_hours:.0f} training GPU-hours "
             f"(engines: {engines}; {study.recipe.execution.gpu_spec('eval').name})",
             "  by part: " + ", ".join(f"{k} {v:.1f}" for k, v in b.by_part.items() if v),
             "  by array job: " + ", ".join(f"{k} {v:.1f}" for k, v in b.by_job.items())]
    if b.knobs:
        lines.append("  knobs: " + "; ".join(f"{k} -> ~{v:.0f} ({(v - b.gpu_hours) / b.gpu_hours:+.0%})"
                                             for k, v in b.knobs.items()))
    lines.append(f"  eval assumptions: lengths {b.lengths_source} ({CHARS_PER_TOKEN:g} characters per token); "
                 f"prefill at MFU {t.PREFILL_MFU:g}; decode at {t.DECODE_EFFICIENCY} of HBM bandwidth; "
                 f"{t.RAMBLE:.0%} of replies run to max_new_tokens; task start {t.TASK_START_S} s + weights at "
                 f"{t.LOAD_GB_S:g} GB/s")
    return lines


def _memory_lines(study: Study) -> list[str]:
    """Per model and pipeline rank: GPU memory by part (GiB), then a node's host peak and an eval GPU."""
    if not study.memory:
        return []
    rows = []
    for name, m in study.memory.items():
        for i, b in enumerate(m.train.per_stage):
            rows.append([name, f"train pp{i}", f"{b.gib:.1f} / {m.gpu_gib:.0f}", _parts(b)])
        rows.append([name, "train node host", f"{m.train.host.gib:.0f} / {m.train.node_mem_gib:g}", _parts(m.train.host)])
        rows.append([name, f"eval ({m.eval_gpu})", f"{m.eval.gib:.1f} / {m.eval_gpu_gib:.0f}", _parts(m.eval)])
        if m.save is not None:
            rows.append([name, "resume checkpoint save", f"{m.save.seconds:.0f} s / {m.save.warning_s:g} s",
                         m.save.describe()])
    return ["", f"memory per rank (GiB, on {next(iter(study.memory.values())).gpu}):"] + _table(
        ["model", "where", "need / have", "parts"], rows)


def _parts(b) -> str:
    return ", ".join(f"{name} {v / 2**30:.1f}" for name, v in b.parts if v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _hm(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(int(n))
