"""End-to-end checks of the local Slurm cluster (slurm/local-cluster/) with submitit, as the launcher uses it.

Run: `.venv/bin/python -m pytest -m slurm tests/launch/test_local_cluster.py` (as root the first time, so the
fixture can install and start the cluster; ~1 min in all once it is up).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import cloudpickle
import pytest
import submitit

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# How long any one job may take here before a test gives up (they take 2-15 s on 2 cores).
JOB_DEADLINE_S = 180


@pytest.fixture(scope="module", autouse=True)
def _pickle_this_module_by_value():
    # Jobs unpickle the functions below in a fresh Python where this test module is not importable (pytest put
    # its folder on sys.path only here), so ship their code instead of a reference to the module.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


def _executor(folder: Path, **parameters) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(slurm_partition="debug", timeout_min=10, cpus_per_task=1, **parameters)
    return executor


def _wait(jobs: list[submitit.Job]) -> None:
    """Wait until every job is done; cancel them and fail after JOB_DEADLINE_S instead of hanging."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    while not all(job.done() for job in jobs):
        if time.monotonic() > deadline:
            for job in jobs:
                job.cancel(check=False)
            states = {job.job_id: job.state for job in jobs}
            pytest.fail(f"jobs not done after {JOB_DEADLINE_S} s: {states}")
        time.sleep(0.5)


def _sacct_states(job_id: str, expected_count: int) -> dict[str, str]:
    """Job (or array element) id -> final state from sacct, waiting for the records (they lag ~1 s)."""
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(
            ["sacct", "--noheader", "--parsable2", "--allocations", "--jobs", job_id, "--format=JobID,State"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # A state may carry a suffix ("CANCELLED by 0"): keep the first word.
        states = dict((line.split("|")[0], line.split("|")[1].split()[0]) for line in out.splitlines())
        finished = [s for s in states.values() if s not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")]
        if len(finished) >= expected_count or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _square(x: int) -> tuple[int, str | None]:
    return x * x, os.environ.get("SLURM_ARRAY_JOB_ID")


def _all_reduce_rank(master_port: int) -> dict:
    """One rank of a 2-node x 2-task job: rendezvous from the Slurm environment and sum rank+1 over all ranks."""
    import torch
    import torch.distributed as dist

    env = submitit.JobEnvironment()
    # Every rank computes the same address: the job's first node (rank 0 runs there and hosts the store).
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{env.hostnames[0]}:{master_port}",
        rank=env.global_rank,
        world_size=env.num_tasks,
        timeout=timedelta(seconds=120),
    )
    value = torch.tensor([float(env.global_rank + 1)])
    dist.all_reduce(value)
    dist.destroy_process_group()
    return {
        "global_rank": env.global_rank,
        "local_rank": env.local_rank,
        "node": env.node,
        "num_tasks": env.num_tasks,
        "hostnames": list(env.hostnames),
        "slurmd_nodename": os.environ["SLURMD_NODENAME"],
        "sum": value.item(),
    }


def _fail() -> None:
    raise ValueError("deliberate failure from test_local_cluster")


def _free_port() -> int:
    # All emulated nodes share this machine's loopback, so a port free here now is free for rank 0 shortly.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_map_array_returns_results_and_sacct_completed(slurm_cluster: str, tmp_path: Path) -> None:
    executor = _executor(tmp_path / "logs", slurm_array_parallelism=10)
    jobs = executor.map_array(_square, range(10))
    _wait(jobs)

    results = [job.result() for job in jobs]
    assert [value for value, _ in results] == [x * x for x in range(10)]
    array_id = jobs[0].job_id.split("_")[0]
    assert {array_job_id for _, array_job_id in results} == {array_id}  # one array, not 10 jobs
    states = _sacct_states(array_id, expected_count=10)
    assert states == {f"{array_id}_{i}": "COMPLETED" for i in range(10)}


def test_two_nodes_two_tasks_each_give_four_ranks_and_gloo_all_reduce(
    slurm_cluster: str, tmp_path: Path
) -> None:
    executor = _executor(tmp_path / "logs", nodes=2, tasks_per_node=2)
    job = executor.submit(_all_reduce_rank, _free_port())
    _wait([job])

    ranks = sorted(job.results(), key=lambda r: r["global_rank"])
    assert [r["global_rank"] for r in ranks] == [0, 1, 2, 3]
    assert all(r["num_tasks"] == 4 for r in ranks)
    hostnames = ranks[0]["hostnames"]
    assert len(hostnames) == 2 and len(set(hostnames)) == 2, hostnames
    assert all(r["hostnames"] == hostnames for r in ranks)
    for rank in ranks:
        # submitit's view (node index into hostnames) agrees with the slurmd that ran the task.
        assert hostnames[rank["node"]] == rank["slurmd_nodename"]
    # Two tasks per node, local ranks 0 and 1 on each node.
    by_node = sorted((r["node"], r["local_rank"]) for r in ranks)
    assert by_node == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r["sum"] == 1 + 2 + 3 + 4 for r in ranks)
    assert _sacct_states(job.job_id, expected_count=1) == {job.job_id: "COMPLETED"}


def test_failing_job_shows_failed_in_sacct(slurm_cluster: str, tmp_path: Path) -> None:
    executor = _executor(tmp_path / "logs")
    job = executor.submit(_fail)
    _wait([job])

    with pytest.raises(submitit.core.utils.FailedJobError, match="deliberate failure"):
        job.result()
    assert _sacct_states(job.job_id, expected_count=1) == {job.job_id: "FAILED"}
