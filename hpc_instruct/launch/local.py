"""The local executor (the embedded default) and the debug executor: the stage graph on this machine.

local: single-rank tasks packed into at most `parallelism` processes per stage (process start-up dominates a
       tiny trial on a CPU), a multi-rank trial in its own torchrun, at most `parallelism` ranks at once,
       one log file per process under logs/local/, progress bars per stage. A failed task is recorded with its
       error and log; tasks that need its output are skipped and reported; a re-run redoes only what is missing.
debug: everything in this process, one task after another, so breakpoints and pdb work.
Both produce the same study directory as the Slurm executor.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from hpc_instruct.expansion import Expansion
from hpc_instruct.launch.children import die_with_parent
from hpc_instruct.launch.entry import run_tasks
from hpc_instruct.launch.lock import launch_lock
from hpc_instruct.launch.state import (
    Submission,
    clear_local_failure,
    record_local_failure,
    record_submission,
    reserve_local_record,
)
from hpc_instruct.launch.tasks import (
    STAGES,
    Task,
    build_tasks,
    eval_ranks,
    group_ranks,
    resources,
    thread_env,
)
from hpc_instruct.recipe.study import Study
from hpc_instruct.study_dir import StudyDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalReport:
    ran: int
    skipped_done: int
    failed: list[str]
    blocked: list[str]
    seconds: float


def ranks_of(task: Task, ex: Expansion) -> int:
    if task.stage == "eval":
        return eval_ranks(task.group)  # a model split over GPUs: one rank per GPU
    if task.stage == "base":
        return group_ranks(task.group)  # laid out as its model's trials
    if task.stage != "train":
        return 1
    t = ex.trial(task.id)
    return t.tp * t.pp * t.dp


def run_local(study: Study, ex: Expansion, parallelism: int = 1, debug: bool = False, progress: bool = True,
              stages: tuple[str, ...] = STAGES, pack: bool = True) -> LocalReport:
    """Run every task not done, stage by stage, holding the study's launch lock (one launcher per study).
    `pack=False` starts one process per task (per checkpoint for eval shards), as before packing, for comparisons."""
    sdir = StudyDir(study.directory.resolve())
    with launch_lock(sdir.launch_lock, "hpci run"):
        return _run_local(sdir, study, ex, parallelism, debug, progress, stages, pack)


def _run_local(sdir: StudyDir, study: Study, ex: Expansion, parallelism: int, debug: bool, progress: bool,
               stages: tuple[str, ...], pack: bool) -> LocalReport:
    tasks = build_tasks(study, ex)
    params = {name: shape.num_parameters for name, shape in study.shapes.items()}
    start = time.time()
    ran, skipped, failed, blocked = 0, 0, [], []
    bad: set[str] = set()  # ids that failed or were blocked: their dependents cannot run
    for stage in stages:
        todo = [t for t in tasks if t.stage == stage]
        done = [t for t in todo if t.done(sdir)]
        skipped += len(done)
        todo = [t for t in todo if t not in done]
        runnable = []
        for t in todo:
            waits = [d for d in (t.after, *t.needs) if d in bad]
            if waits:
                blocked.append(f"{t.stage} {t.id} ({t.label}): waits for {', '.join(waits)}, which did not finish")
                bad.add(t.id)
            else:
                runnable.append(t)
        if not runnable:
            continue
        record_submission(sdir, Submission(stage, "local", f"local-{int(start)}", [[t.id] for t in runnable],
                                             "debug" if debug else "local", str(sdir.local_log(stage))))
        bar = tqdm(total=len(runnable), desc=f"{stage:<9}", unit="task", disable=not progress, leave=True)
        # Test-on-selected shards need every valid shard of their trial first: they form a second wave.
        waves = [[t for t in runnable if not t.waits_for_selection], [t for t in runnable if t.waits_for_selection]]
        for wave in waves:
            if debug:
                for t in wave:
                    _run_debug(sdir, t, bad, failed)
                    bar.update(1)
            elif wave:
                cpus = {(t.stage, t.group): resources(study, t.stage, t.group).cpus_per_task for t in wave}
                units = _units(wave, ex, parallelism if pack else len(wave), params)
                _run_pool(sdir, ex, units, parallelism, bad, failed, bar, cpus)
        bar.close()
        ran += len(runnable)
    return LocalReport(ran, skipped, failed, blocked, time.time() - start)


def _run_debug(sdir: StudyDir, t: Task, bad: set[str], failed: list[str]) -> None:
    try:
        run_tasks(str(sdir.root), t.stage, [t.id])
        clear_local_failure(sdir, t)
    except Exception as exc:  # noqa: BLE001 - a task failure is recorded, the study goes on
        log.exception("%s %s failed", t.stage, t.id)
        record_local_failure(sdir, t, f"{type(exc).__name__}: {exc}", "(debug executor: see the console)")
        failed.append(f"{t.stage} {t.id} ({t.label}): {type(exc).__name__}: {exc}")
        bad.add(t.id)


def _units(tasks: list[Task], ex: Expansion | None = None, parallelism: int = 1,
           params: Mapping[str, int] | None = None) -> list[list[Task]]:
    """Tasks that share one process. Process start-up (importing torch and megatron-core, building the model
    code paths) costs more than a tiny trial's training on a CPU, so single-rank tasks are packed into at most
    `parallelism` processes, one per slot, each running its tasks one after another (`entry.run_tasks`, as a
    Slurm array element does): the eval shards of one checkpoint stay together and in order (the model is loaded
    once), and the bins are balanced by work (a trial's planned steps, a checkpoint's shards), longest first.
    A multi-rank trial runs alone under torchrun."""
    groups: dict[str, list[Task]] = {}
    for t in tasks:
        key = f"{t.owner}/{t.checkpoint}" if t.stage == "eval" else t.id
        groups.setdefault(key, []).append(t)
    alone = [g for g in groups.values() if ex is not None and ranks_of(g[0], ex) > 1]
    packable = [g for g in groups.values() if not (ex is not None and ranks_of(g[0], ex) > 1)]
    bins: list[tuple[float, int, list[Task]]] = [(0.0, i, []) for i in range(max(1, min(parallelism, len(packable))))]
    for g in sorted(packable, key=lambda g: -_work(g, ex, params)):  # longest processing time first
        load, i, members = min(bins)
        bins[bins.index((load, i, members))] = (load + _work(g, ex, params), i, members + g)
    return alone + [members for _, _, members in sorted(bins, key=lambda b: b[1]) if members]


def _work(group: list[Task], ex: Expansion | None, params: Mapping[str, int] | None = None) -> float:
    """Relative cost of a group of tasks: a trial's training FLOPs (~ parameters x trained tokens; tokens alone
    without `params`), else one per task."""
    t = group[0]
    if t.stage == "train" and ex is not None:
        trial = ex.trial(t.id)
        return float(max(trial.tokens, 1)) * float((params or {}).get(trial.model, 1))
    return float(len(group))  # a base task: one each, so the bases of different models run side by side


def _command(sdir: StudyDir, unit: list[Task], ranks: int) -> list[str]:
    """`python -P -m ...`: the working directory (perhaps the study, which colleagues can write) is not put first
    on sys.path, so a `hpc_instruct/` folder there cannot shadow the code; torchrun's ranks inherit
    PYTHONSAFEPATH from the environment `_run_pool` gives them."""
    entry = ["-m", "hpc_instruct.launch.entry", unit[0].stage, str(sdir.root), *(t.id for t in unit)]
    if ranks > 1:
        return [sys.executable, "-P", "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *entry]
    return [sys.executable, "-P", *entry]


def _run_pool(sdir: StudyDir, ex: Expansion, units: list[list[Task]], parallelism: int, bad: set[str],
              failed: list[str], bar, cpus: dict[tuple[str, str], int]) -> None:
    """Run units as subprocesses, keeping at most `parallelism` ranks busy (a wider task runs alone)."""
    queue = list(units)
    running: list[tuple[list[Task], subprocess.Popen, Path, int]] = []
    cores = os.cpu_count() or 1
    while queue or running:
        busy = sum(r for *_, r in running)
        while queue:
            need = min(ranks_of(queue[0][0], ex), max(parallelism, 1))
            if running and busy + need > parallelism:
                break
            unit = queue.pop(0)
            ranks = ranks_of(unit[0], ex)
            log_path = sdir.local_log(unit[0].stage, unit[0].id)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            # The task's cpus_per_task, as under Slurm (job_threads), so both executors compute alike; fewer only
            # when this machine cannot give every running task that many.
            threads = min(cpus[unit[0].stage, unit[0].group], max(1, cores // max(parallelism, ranks)))
            env = {**os.environ, **thread_env(threads), "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1"}
            for t in unit:
                reserve_local_record(sdir, t)
            with open(log_path, "w") as fh:
                proc = subprocess.Popen(_command(sdir, unit, ranks), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=die_with_parent(signal.SIGTERM))
            running.append((unit, proc, log_path, need))
            busy += need
        time.sleep(0.05)
        for item in list(running):
            unit, proc, log_path, _ = item
            if proc.poll() is None:
                continue
            running.remove(item)
            bar.update(len(unit))
            for t in unit:
                if t.done(sdir):
                    clear_local_failure(sdir, t)
                    continue
                reason = f"exit code {proc.returncode}" if proc.returncode else "finished without writing its output"
                last = _last_error_line(log_path)
                full = disk_full_at(last)
                if full:
                    reason = f"disk full at {full}"
                record_local_failure(sdir, t, f"{reason}: {last}" if last else reason, str(log_path))
                failed.append(f"{t.stage} {t.id} ({t.label}): {reason}; log {log_path}")
                bad.add(t.id)


def disk_full_at(line: str) -> str:
    """The path in an ENOSPC error line (`[Errno 28] No space left on device: '/path'`), '' if it is not one."""
    if "No space left on device" not in line and "Errno 28" not in line:
        return ""
    match = re.search(r"No space left on device: '([^']+)'", line)
    return match.group(1) if match else "(path not named: see the log)"


def _last_error_line(path: Path) -> str:
    try:
        text = path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else ""
