"""Submitting a 10,000-task study: sbatch calls stay O(stages x resource shapes), not O(tasks); and `hpci
status` over all of it.

    sudo slurm/local-cluster/up.sh   # a real local Slurm cluster
    .venv/bin/python benchmarks/bench_submit.py

The study is submitted for real, measured, then cancelled (nothing runs to completion). The figure to compare is
tasks per sbatch call: a one-job-per-task launcher would make as many sbatch calls as there are tasks.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hpc_instruct.launch.slurm import SubmitOptions, cancel_study, submit_study
from hpc_instruct.launch.state import statuses, summary
from hpc_instruct.launch.study_files import write_study
from hpc_instruct.launch.tasks import build_tasks
from hpc_instruct.recipe.study import load_study
from hpc_instruct.study_dir import StudyDir

ROOT = Path(__file__).resolve().parents[1]
# 101 volumes x 9 seeds = 909 trials; each has 1 prepare task, 1 train task and 9 eval shards (nine abilities,
# valid split, last checkpoint); plus 1 aggregate task: 909 x 11 + 1 = 10,000 tasks.
OVERRIDES = (
    "execution.executor=slurm", "models=[{name: tiny, size: tiny, device: cpu, micro_batch: 8, global_batch: 8}]",
    f"sweep.curated.samples_per_ability=[{','.join(str(n) for n in range(1, 102))}]", "sweep.synthetic=null",
    "sweep.single_ability=null", "sweep.mixes=[]", "sweep.held_out=null", "evaluation.out_of_domain=[]",
    "sweep.seeds=[0,1,2,3,4,5,6,7,8]", "evaluation.splits=[valid]", "evaluation.checkpoints=last",
    "evaluation.include_base=false", "data.generate.pool_size=110",
    "data.abilities=[biology,history,code,creative_writing,chinese,understanding,role_play,math,ethics]",
)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        study = load_study(ROOT / "recipes" / "demo.yaml", (f"study.output_root={tmp}", *OVERRIDES))
        ex = study.expand()
        tasks = build_tasks(study, ex)
        write_study(study, ex)
        t0 = time.perf_counter()
        report = submit_study(study, ex, SubmitOptions(slots_per_trial=4))
        submit_s = time.perf_counter() - t0
        try:
            t1 = time.perf_counter()
            rows = statuses(StudyDir(study.directory), tasks)
            status_s = time.perf_counter() - t1
            counts = {k: dict(v) for k, v in summary(rows).items()}
        finally:
            cancel_study(study.directory)
    print(f"{len(tasks)} tasks ({len(ex.trials)} trials, {len(ex.eval_tasks)} eval shards) -> "
          f"{report.sbatch_calls} sbatch calls ({len(tasks) / report.sbatch_calls:.0f} tasks per call; "
          f"a job-per-task launcher: {len(tasks)} calls)")
    print(f"submit {submit_s:.2f} s; status over {len(rows)} tasks {status_s:.2f} s: {counts}")
    print(f"RESULT bench_submit tasks={len(tasks)} sbatch_calls={report.sbatch_calls} submit_s={submit_s:.2f} "
          f"status_s={status_s:.2f}")


if __name__ == "__main__":
    main()
