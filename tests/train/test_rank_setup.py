"""Rank set-up on a cluster: the GPU a rank takes, the comm environment, the warning signals (issue 14, item 6)."""

from __future__ import annotations

import os
import signal

import pytest

from hpc_instruct.train import distributed
from hpc_instruct.train.preemption import PreemptionGuard


def test_device_index_wraps_at_the_visible_devices() -> None:
    # A site that binds one GPU per task shows each task one device: local rank 5 must take device 0.
    assert distributed.device_index(5, 1) == 0
    assert distributed.device_index(9, 8) == 1 and distributed.device_index(3, 8) == 3
    with pytest.raises(RuntimeError, match="no visible CUDA device"):
        distributed.device_index(0, 0)


def test_cuda_device_max_connections_is_set_for_tensor_parallelism_only(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_DEVICE_MAX_CONNECTIONS", raising=False)
    distributed.set_comm_env(1)
    assert "CUDA_DEVICE_MAX_CONNECTIONS" not in os.environ
    distributed.set_comm_env(4)
    assert os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    monkeypatch.setenv("CUDA_DEVICE_MAX_CONNECTIONS", "8")  # the site's own choice stays
    distributed.set_comm_env(4)
    assert os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] == "8"


def test_sigterm_is_handed_over_as_usr2_where_a_requeue_handler_waits() -> None:
    """submitit requeues on USR2 and only logs SIGTERM: handlers of that shape (plain Python ones here, standing
    for submitit's, which install only inside a Slurm job) must see a SIGTERM preemption end in a requeue."""
    calls: list[str] = []
    old_usr2 = signal.signal(signal.SIGUSR2, lambda *_: calls.append("requeue"))
    old_term = signal.signal(signal.SIGTERM, lambda *_: calls.append("ignored"))
    try:
        with PreemptionGuard() as guard:
            os.kill(os.getpid(), signal.SIGTERM)
            assert guard.received == signal.SIGTERM
            guard.hand_over()
        assert calls == ["requeue"]
    finally:
        signal.signal(signal.SIGUSR2, old_usr2)
        signal.signal(signal.SIGTERM, old_term)


def test_process_group_timeout_comes_from_the_recipe() -> None:
    from hpc_instruct.train.backend import BackendSettings
    from hpc_instruct.train.config import ModelConfig, TrainingConfig

    settings = BackendSettings.from_recipe(ModelConfig(name="m"), TrainingConfig(dist_timeout_minutes=90), 1, 0)
    assert settings.dist_timeout_minutes == 90
