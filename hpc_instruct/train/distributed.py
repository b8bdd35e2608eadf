"""torch.distributed rendezvous from whoever started us: torchrun, Slurm (srun / submitit), or nobody.

torchrun sets RANK/WORLD_SIZE/MASTER_ADDR itself. Under Slurm every rank is a task of one job step: rank and
world come from SLURM_PROCID/SLURM_NTASKS, the master is the first host of the allocation (submitit's
JobEnvironment parses the node list), and the port is derived from the job id so concurrent array elements
sharing a node do not collide. NCCL on GPUs, gloo without.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _first_host(nodelist: str) -> str:
    try:
        import submitit

        return submitit.JobEnvironment().hostnames[0]
    except Exception:  # noqa: BLE001 - not inside a submitit job: ask Slurm, else take the list as given
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30).stdout.split()
            return out[0] if out else nodelist
        except OSError:
            return nodelist.split(",")[0]


def detect() -> DistEnv:
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun / torch.distributed.run
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                       env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        job = int(env.get("SLURM_JOB_ID", "0"))
        return DistEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)),
                       _first_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1")), 15000 + job % 20000)
    return DistEnv(0, 1, 0, "127.0.0.1", 29500)


def device_index(local_rank: int, visible: int) -> int:
    """This rank's GPU among the visible ones: sites that bind one GPU per task show each task only its own
    (CUDA_VISIBLE_DEVICES of one device), where the local rank would point past the end."""
    if visible < 1:
        raise RuntimeError("no visible CUDA device on this node")
    return local_rank % visible


def set_comm_env(tensor_parallel: int) -> None:
    """CUDA_DEVICE_MAX_CONNECTIONS=1 when TP > 1, before CUDA starts: megatron-core's TP/SP communication
    overlap relies on kernels being issued in program order on one hardware queue (it warns or is wrong
    otherwise). A value the site already set is kept."""
    if tensor_parallel > 1:
        os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "1")


def init(backend: str | None = None, timeout_s: int = 1800) -> DistEnv:
    """Initialise the default process group (also for world size 1, so code paths stay the same).

    `timeout_s`: how long a collective may wait (the recipe's `training.dist_timeout_minutes`): a first
    checkpoint load or an HF export of a large model on a slow filesystem outlasts torch's default.
    """
    import datetime

    import torch
    import torch.distributed as dist

    d = detect()
    if dist.is_initialized():
        return d
    os.environ.update({"MASTER_ADDR": d.master_addr, "MASTER_PORT": str(d.master_port), "RANK": str(d.rank),
                       "WORLD_SIZE": str(d.world_size), "LOCAL_RANK": str(d.local_rank)})
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(device_index(d.local_rank, torch.cuda.device_count()))
    dist.init_process_group(backend, rank=d.rank, world_size=d.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return d
