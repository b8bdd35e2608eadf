"""Chaos: does a small study survive what shared machines do to it, and end with the same numbers?

    .venv/bin/python benchmarks/bench_chaos.py --seed 1 --injections 8
    .venv/bin/python benchmarks/bench_chaos.py --kinds kill_hpci,corrupt_shard --no-slurm

The study is benchmarks/chaos.yaml, its own recipe, so that changes to recipes/demo.yaml never change these figures
(2 trials, 30 eval shards, ~40 s alone on 2 cores). It is first run once without interruption: its
results/scores.parquet (value columns, not provenance) and every trial's final loss are the baseline. Then, for each
injection (kind and moment drawn from the seed; kinds are dealt from a shuffled deck refilled when empty, so each
block of len(kinds) injections holds every kind once): a fresh study is started and hurt at a random moment, and
recovered only with the documented commands (`hpci run`, `hpci resubmit`, `hpci aggregate`).
Kinds: kill_hpci (SIGKILL of `hpci run`), kill_task / term_task (SIGKILL / SIGTERM of a stage task), full_disk (a
tmpfs study root that fills, then grows), two_runs (a second `hpci run` of the same study meanwhile),
corrupt_shard / truncate_shard (a finished study's result shard damaged), and on the local Slurm cluster
requeue (`scontrol requeue`), usr2 (`scancel --signal=USR2`, the preemption warning), slurmd_stop (the node's
slurmd stopped during a job, restarted a few seconds later).

Counted: recovered (aggregate passes, nothing missing), identical (recovered, scores equal, final losses within
1e-6), lost (not recovered), manual_steps (anything beyond the documented commands the harness had to do: kill
an orphan, remove a lock). Last line: `RESULT bench_chaos injected= recovered= identical= lost= manual_steps=`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos_results import results, same  # noqa: E402  (benchmarks/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "benchmarks" / "chaos.yaml"
STUDY = "chaos"  # the recipe's study.name: the study folder under each root
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
HPCI = [sys.executable, "-m", "hpc_instruct.cli"]
LOCAL_KINDS = ("kill_hpci", "kill_task", "term_task", "full_disk", "two_runs", "corrupt_shard", "truncate_shard")
SLURM_KINDS = ("requeue", "usr2", "slurmd_stop")


@dataclass
class Outcome:
    kind: str
    detail: str = ""
    recovered: bool = False
    identical: bool = False
    manual_steps: int = 0
    commands: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""


def hpci(*args: str, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*HPCI, *args], env=ENV, capture_output=True, text=True, timeout=timeout, **kw)


def run_args(root: Path, executor: str = "local") -> list[str]:
    return ["run" if executor == "local" else "submit", str(RECIPE), f"study.output_root={root}",
            f"execution.executor={executor}", *(["--quiet"] if executor == "local" else [])]


def start_run(root: Path) -> subprocess.Popen:
    return subprocess.Popen([*HPCI, *run_args(root)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


# ---- processes ----------------------------------------------------------------------------------------------


def processes_under(study: Path) -> list[int]:
    """Processes whose command line names the study (tasks and launchers of it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(study).encode() in cmd and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def stage_tasks(study: Path) -> list[int]:
    out = []
    for pid in processes_under(study):
        try:
            if b"hpc_instruct.launch.entry" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


def orphans_gone(study: Path, outcome: Outcome, within_s: float = 30) -> None:
    """Nothing of the study may keep running once its launcher is gone; what does is a manual step to kill."""
    deadline = time.monotonic() + within_s
    while processes_under(study) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_under(study)
    if left:
        outcome.manual_steps += 1
        outcome.note += f" orphans {left} killed by hand;"
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def recover_local(study_root: Path, outcome: Outcome, tries: int = 3) -> None:
    """`hpci run` until it passes (a run that fails hands its failures to the next), then `hpci aggregate`."""
    for _ in range(tries):
        done = hpci(*run_args(study_root))
        outcome.commands.append(f"run={done.returncode}")
        if done.returncode == 2 and "in use" in done.stderr:  # a stale lock would need a person
            outcome.manual_steps += 1
            outcome.note += f" lock: {done.stderr.strip()[-120:]};"
            break
        if done.returncode == 0:
            break
    agg = hpci("aggregate", str(study_root / STUDY))
    outcome.commands.append(f"aggregate={agg.returncode}")
    outcome.recovered = agg.returncode == 0 and (study_root / STUDY / "results" / "scores.parquet").is_file()
    if not outcome.recovered:
        outcome.note += f" aggregate: {(agg.stdout + agg.stderr).strip()[-200:]};"


# ---- the injections -------------------------------------------------------------------------------------------


def inject_kill(kind: str, rng: random.Random, root: Path, base_s: float, outcome: Outcome) -> None:
    """SIGKILL `hpci run` (kill_hpci), or SIGKILL / SIGTERM one of its stage tasks, at a random moment."""
    moment = rng.uniform(0.05, 0.9) * base_s
    proc = start_run(root)
    deadline = time.monotonic() + moment
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    victim = proc.pid
    if kind != "kill_hpci":  # the first stage task running from that moment on
        end = time.monotonic() + base_s
        while not (tasks := stage_tasks(root)) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        victim = rng.choice(tasks) if tasks else None
    if proc.poll() is not None or victim is None:
        outcome.detail = f"t={moment:.1f}s: the run ended first"
    else:
        try:
            cmd = Path(f"/proc/{victim}/cmdline").read_bytes().split(b"\0")
            what = " ".join(c.decode() for c in cmd[3:5]) if kind != "kill_hpci" else "hpci run"
            os.kill(victim, signal.SIGTERM if kind == "term_task" else signal.SIGKILL)
            outcome.detail = f"t={moment:.1f}s {what}"
        except (ProcessLookupError, FileNotFoundError):
            outcome.detail = f"t={moment:.1f}s: the victim ended first"
    proc.communicate(timeout=1800)
    outcome.commands.append(f"interrupted run={proc.returncode}")
    orphans_gone(root, outcome)
    recover_local(root, outcome)


def inject_two_runs(rng: random.Random, root: Path, base_s: float, outcome: Outcome) -> None:
    moment = rng.uniform(0.0, 0.8) * base_s
    first = start_run(root)
    time.sleep(moment)
    second = start_run(root)
    _, err2 = second.communicate(timeout=1800)
    first.communicate(timeout=1800)
    outcome.detail = f"second after {moment:.1f}s: exit {second.returncode} {err2.strip()[-90:]!r}"
    outcome.commands.append(f"runs={first.returncode},{second.returncode}")
    orphans_gone(root, outcome)
    recover_local(root, outcome)


def inject_full_disk(rng: random.Random, root: Path, base_bytes: int, outcome: Outcome) -> Path:
    """A tmpfs study root (in a private mount namespace) that fills; then it grows and the user runs again."""
    size = int(rng.uniform(0.2, 0.9) * base_bytes) // 4096 * 4096
    kept = root.parent / "kept"
    run = " ".join(_q(a) for a in [*HPCI, *run_args(root)])
    script = (f"mount -t tmpfs -o size={size} tmpfs {_q(root)} || exit 99\n"
              f"{run} >/dev/null 2>{_q(root.parent / 'first.err')}; echo first=$?\n"
              f"mount -o remount,size=2g {_q(root)}\n"
              f"{run} >/dev/null 2>&1; echo run=$?\n"
              f"{' '.join(_q(a) for a in [*HPCI, 'aggregate', str(root / STUDY)])} >/dev/null 2>&1; echo aggregate=$?\n"
              f"mkdir -p {_q(kept)} && cp -a {_q(root / STUDY)} {_q(kept)}/\n")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=ENV, capture_output=True, text=True,
                          timeout=3600)
    codes = dict(line.split("=") for line in done.stdout.split() if "=" in line)
    first_err = (root.parent / "first.err").read_text(errors="replace") if (root.parent / "first.err").exists() else ""
    outcome.detail = f"{size // 1024} KiB: first run exit {codes.get('first')}"
    if "Traceback" in first_err:
        outcome.note += " traceback on the full disk;"
    outcome.commands += [f"interrupted run={codes.get('first')}", f"run={codes.get('run')}",
                         f"aggregate={codes.get('aggregate')}"]
    outcome.recovered = codes.get("aggregate") == "0"
    if done.returncode != 0 and "first" not in codes:
        outcome.note += f" unshare: {done.stderr.strip()[-150:]};"
    return kept


def inject_shard(kind: str, rng: random.Random, root: Path, baseline_study: Path, outcome: Outcome) -> None:
    root.mkdir(parents=True)
    shutil.copytree(baseline_study, root / STUDY, symlinks=True)
    shards = sorted((root / STUDY / "eval").rglob("part-*.parquet"))
    shard = rng.choice(shards)
    data = bytearray(shard.read_bytes())
    if kind == "corrupt_shard":
        offset, bit = rng.randrange(len(data)), rng.randrange(8)
        data[offset] ^= 1 << bit
        outcome.detail = f"{shard.relative_to(root / STUDY)} bit {bit} of byte {offset}/{len(data)}"
    else:
        offset = rng.randrange(len(data))
        data = data[:offset]
        outcome.detail = f"{shard.relative_to(root / STUDY)} cut at {offset}"
    shard.write_bytes(bytes(data))
    recover_local(root, outcome)


def _q(text: object) -> str:
    return "'" + str(text).replace("'", "'\"'\"'") + "'"


def inject_slurm(kind: str, rng: random.Random, root: Path, outcome: Outcome) -> None:
    """Submit, wait for a running train job, hurt it, then let `hpci resubmit` and `hpci aggregate` recover."""
    done = hpci(*run_args(root, "slurm"))
    outcome.commands.append(f"submit={done.returncode}")
    study = root / STUDY
    subs = [json.loads(line) for line in (study / "state" / "submissions.jsonl").read_text().splitlines()]
    trains = [s["job_id"] for s in subs if s["stage"] == "train"]
    job, node, end = None, "", time.monotonic() + 900
    while job is None and time.monotonic() < end:
        queue = subprocess.run(["squeue", "-h", "-r", "-t", "R", "-o", "%i|%N", "-j", ",".join(trains)],
                               capture_output=True, text=True).stdout.split()
        if queue:
            job, node = rng.choice(queue).split("|")
        time.sleep(0.5)
    if job is None:
        outcome.detail = "no train job ran"
    else:
        time.sleep(rng.uniform(1.0, 8.0))
        if kind == "requeue":
            subprocess.run(["scontrol", "requeue", job], capture_output=True)
        elif kind == "usr2":
            subprocess.run(["scancel", "--signal=USR2", job], capture_output=True)
        else:
            pid = int(Path(f"/run/slurm/slurmd-{node}.pid").read_text())
            os.kill(pid, signal.SIGTERM)
            time.sleep(rng.uniform(2.0, 8.0))
            subprocess.Popen(["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "setsid", "slurmd", "-N", node],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        outcome.detail = f"{kind} job {job} on {node}"
    for attempt in range(3):
        while True:  # as a user would: look at hpci status until nothing is pending or running
            summary = json.loads(hpci("status", str(study), "--format", "json").stdout)["summary"]
            counts = {k: v for stage in summary.values() for k, v in stage.items()}
            if not counts.get("pending") and not counts.get("running"):
                break
            time.sleep(3)
        if set(counts) == {"done"} or attempt == 2:
            break
        outcome.commands.append(f"resubmit={hpci('resubmit', str(study)).returncode}")
    agg = hpci("aggregate", str(study))
    outcome.commands.append(f"aggregate={agg.returncode}")
    outcome.recovered = agg.returncode == 0


# ---- the run --------------------------------------------------------------------------------------------------


def deal(kinds: list[str], n: int, seed: int) -> list[str]:
    """`n` kinds dealt from a deck of `kinds` shuffled by `seed`, reshuffled and refilled whenever it runs out: every
    kind comes up exactly once in each successive block of len(kinds) injections (independent draws can leave a kind
    out of 50), and the same seed deals the same sequence. Each injection's moment comes from its own
    random.Random(f"{seed}-{i}"), so it does not depend on the kinds before it either."""
    rng, deck, plan = random.Random(seed), [], []
    while len(plan) < n:
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        plan.append(deck.pop())
    return plan


def slurm_up() -> bool:
    status = ROOT / "slurm" / "local-cluster" / "status.sh"
    return shutil.which("sbatch") is not None and subprocess.run([status], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--injections", type=int, default=50)
    parser.add_argument("--kinds", help=f"comma list from {', '.join(LOCAL_KINDS + SLURM_KINDS)}")
    parser.add_argument("--slurm", action=argparse.BooleanOptionalAction, default=None,
                        help="include the Slurm kinds (default: when the local cluster is up)")
    parser.add_argument("--work", type=Path, help="working folder (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep every study (default: only those not identical)")
    args = parser.parse_args()
    use_slurm = slurm_up() if args.slurm is None else args.slurm
    if not use_slurm and not args.kinds:
        print(f"note: Slurm kinds ({', '.join(SLURM_KINDS)}) left out: "
              + ("--no-slurm" if args.slurm is False else "the local cluster is not up (slurm/local-cluster/up.sh)"),
              flush=True)
    kinds = args.kinds.split(",") if args.kinds else [*LOCAL_KINDS, *(SLURM_KINDS if use_slurm else ())]
    unknown = set(kinds) - set(LOCAL_KINDS + SLURM_KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; valid: {', '.join(LOCAL_KINDS + SLURM_KINDS)}")
    plan = deal(kinds, args.injections, args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="hpci-chaos-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    base = hpci(*run_args(work / "baseline"))
    base_s = time.perf_counter() - t0
    if base.returncode != 0:
        sys.exit(f"the uninterrupted run failed (exit {base.returncode}): {base.stderr[-500:]}")
    baseline_study = work / "baseline" / STUDY
    baseline = results(baseline_study)
    base_bytes = sum(p.stat().st_size for p in baseline_study.rglob("*") if p.is_file())
    print(f"baseline: uninterrupted run {base_s:.0f} s, {len(baseline[0])} score rows, {len(baseline[1])} trials, "
          f"{base_bytes / 1e6:.1f} MB; seed {args.seed}; plan {plan}", flush=True)

    outcomes = []
    for i, kind in enumerate(plan):
        case_rng = random.Random(f"{args.seed}-{i}")
        root = work / f"{i:03d}-{kind}" / "root"
        root.mkdir(parents=True, exist_ok=True)
        outcome, start = Outcome(kind), time.perf_counter()
        study = root / STUDY
        if kind in ("kill_hpci", "kill_task", "term_task"):
            inject_kill(kind, case_rng, root, base_s, outcome)
        elif kind == "two_runs":
            inject_two_runs(case_rng, root, base_s, outcome)
        elif kind == "full_disk":
            study = inject_full_disk(case_rng, root, base_bytes, outcome) / STUDY
        elif kind in ("corrupt_shard", "truncate_shard"):
            root.rmdir()
            inject_shard(kind, case_rng, root, baseline_study, outcome)
        else:
            inject_slurm(kind, case_rng, root, outcome)
        outcome.seconds = time.perf_counter() - start
        if outcome.recovered:
            outcome.identical, why = same(study, baseline)
            outcome.note += f" {why}"
        outcomes.append(outcome)
        verdict = "identical" if outcome.identical else "recovered, DIFFERENT" if outcome.recovered else "LOST"
        print(f"[{i + 1}/{len(plan)}] {kind:<14} {outcome.detail[:90]:<90} -> {verdict} "
              f"({', '.join(outcome.commands)}; {outcome.seconds:.0f} s){outcome.note}", flush=True)
        if outcome.identical and not args.keep:
            shutil.rmtree(root.parent, ignore_errors=True)

    n = len(outcomes)
    recovered = sum(o.recovered for o in outcomes)
    identical = sum(o.identical for o in outcomes)
    manual = sum(o.manual_steps for o in outcomes)
    per = sum(o.seconds for o in outcomes) / max(n, 1)
    print(f"{'kind':<16}{'injected':>10}{'recovered':>11}{'identical':>11}{'lost':>6}{'manual':>8}")
    for kind in kinds:
        mine = [o for o in outcomes if o.kind == kind]
        print(f"{kind:<16}{len(mine):>10}{sum(o.recovered for o in mine):>11}{sum(o.identical for o in mine):>11}"
              f"{sum(not o.recovered for o in mine):>6}{sum(o.manual_steps for o in mine):>8}")
    print(f"{'':<28}{'this run':>12}{'target':>12}")
    for name, value in (("recovered", recovered), ("identical", identical), ("lost", n - recovered),
                        ("manual steps", manual)):
        target = n if name in ("recovered", "identical") else 0
        print(f"{name:<28}{value:>12}{target:>12}")
    print(f"seconds per injection {per:.0f} (uninterrupted run {base_s:.0f} s: x{per / base_s:.1f}); "
          f"50 injections ~{50 * per / 60:.0f} min; studies kept under {work}")
    print(f"RESULT bench_chaos injected={n} recovered={recovered} identical={identical} lost={n - recovered} "
          f"manual_steps={manual}")


if __name__ == "__main__":
    main()
