"""Shared by the Slurm integration tests: small demo recipes, waiting for a study, golden-file normalisation."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from hpc_instruct.launch.state import statuses, summary
from hpc_instruct.launch.study_files import load_written
from hpc_instruct.launch.tasks import build_tasks
from hpc_instruct.study_dir import StudyDir

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "recipes" / "demo.yaml"

# A slice of the demo study that finishes in minutes on the 2-core machine.
SMALL = ("execution.executor=slurm", "sweep.curated.samples_per_ability=[4,16]", "sweep.synthetic.total_samples=[40]",
         "models=[{name: tiny, size: tiny, device: cpu, micro_batch: 8, global_batch: 8}]",
         "data.generate.pool_size=32", "data.generate.synthetic_size=64", "training.min_steps=4",
         "training.epochs=2", "evaluation.items_per_shard=100", "evaluation.splits=[valid]",
         "sweep.seeds=[0]", "sweep.synthetic.models=null", "sweep.synthetic.seeds=null", "sweep.single_ability=null",
         "sweep.mixes=[]", "sweep.held_out=null", "evaluation.out_of_domain=[]")


def wait_for(study_dir: Path, timeout_s: float = 900) -> dict:
    """Poll `hpci status` until nothing is pending or running; returns the per-stage summary."""
    study = load_written(study_dir)
    tasks = build_tasks(study, study.expand())
    deadline = time.time() + timeout_s
    while True:
        rows = statuses(StudyDir(study.directory), tasks)
        counts = summary(rows)
        if not any(c.get("pending") or c.get("running") for c in counts.values()) or time.time() > deadline:
            return {stage: dict(c) for stage, c in counts.items()}
        time.sleep(3)


def element_job(sub, index: int = 0) -> str:
    """The Slurm id of one element of a submission: submitit submits a one-element array as a plain job."""
    return sub.job_id if len(sub.elements) == 1 else f"{sub.job_id}_{index}"


def rank_log(sub, index: int = 0, rank: int = 0) -> Path:
    """submitit's stderr file of one rank of one element (`%j_%t_log.err`, `%A_%a_%t_log.err` for arrays)."""
    return Path(sub.log_dir) / f"{element_job(sub, index)}_{rank}_log.err"


def normalise_sbatch(text: str, study_root: Path) -> str:
    """Remove what differs between runs (paths, job ids, code hash) so the script can be compared to a golden."""
    text = text.replace(sys.executable, "<PYTHON>")
    for form in (str(study_root), _sh_quoted(str(study_root))):
        text = text.replace(form, "<ROOT>")
    text = re.sub(r"code/[0-9a-f]{16}", "code/<CODE>", text)
    text = re.sub(r"(after\w*):[\d:]+", r"\1:<JOBS>", text)
    return text


def _sh_quoted(path: str) -> str:
    return path.replace("'", "'\"'\"'")
