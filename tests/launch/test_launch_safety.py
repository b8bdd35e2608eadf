"""One launcher per study, workers that die with their launcher, and a trial that is done only when its exports
hold their weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpc_instruct.atomic import write_json, write_marker
from hpc_instruct.launch.lock import StudyBusy, launch_lock
from hpc_instruct.launch.tasks import Task
from hpc_instruct.study_dir import StudyDir

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

HOLDER = """
import sys
from hpc_instruct.launch.lock import launch_lock
with launch_lock(sys.argv[1] + "/launch.lock", "hpci run"):
    print("held", flush=True)
    sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _wait_dead(pid: int, within: float = 30.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_second_launcher_is_refused_naming_the_holder(tmp_path):
    state = tmp_path / "study" / "state"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyBusy) as busy, launch_lock(state / "launch.lock", "hpci submit"):
            pass
        message = str(busy.value)
        assert "in use by `hpci run`" in message and f"pid {holder.pid}" in message and str(tmp_path / "study") in message
        assert busy.value.exit_code == 2
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock, no stale file to clean
        holder.wait()
    with launch_lock(state / "launch.lock", "hpci run"):
        pass


def test_hpci_run_on_a_held_study_exits_2_with_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
study: {{name: t, output_root: {tmp_path / 'studies'}}}
models: [{{name: m, size: tiny, device: cpu, micro_batch: 4, global_batch: 8}}]
data: {{generate: {{pool_size: 50, synthetic_size: 100}}}}
sweep: {{seeds: [0], curated: {{samples_per_ability: [1]}}}}
training: {{epochs: 1, precision: fp32, lr: 1.0e-3, max_length: 256}}
""")
    with launch_lock(StudyDir(tmp_path / "studies" / "t").launch_lock, "hpci run"):
        done = subprocess.run([sys.executable, "-m", "hpc_instruct.cli", "run", str(recipe), "--executor", "local"],
                              env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "is in use by `hpci run`" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "studies" / "t" / "trials").exists()


PARENT = """
import subprocess, sys
from hpc_instruct.launch.children import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], preexec_fn=die_with_parent())
print(child.pid, flush=True)
child.wait()
"""


def test_workers_die_with_their_launcher(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=ENV, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)  # `hpci run` killed at a random moment
    parent.wait()
    assert _wait_dead(child), "the worker outlived its launcher"


def _finished_trial(root: Path, weights: bool) -> Task:
    layout = StudyDir(root)
    export = layout.export("t1", 1)
    export.mkdir(parents=True)
    (export / "config.json").write_text("{}")
    (export / "tokenizer.json").write_text("{}")
    if weights:
        (export / "model.safetensors").write_bytes(b"\0" * 64)
    write_marker(export, "t1", epoch=1, step=4)
    out = layout.trial("t1") / "trial.json"
    write_json(out, {"exports": {"1": str(export.relative_to(root))}})
    write_marker(out, "t1")
    return Task("train", "t1", "1n1cpu", str(out.relative_to(root)))


def test_a_trial_whose_export_lacks_weights_is_not_done(tmp_path):
    whole = _finished_trial(tmp_path / "a", weights=True)
    assert whole.done(StudyDir(tmp_path / "a"))
    broken = _finished_trial(tmp_path / "b", weights=False)  # what two racing runs once left behind
    assert not broken.done(StudyDir(tmp_path / "b"))  # so `hpci run` trains it again


def test_sharded_export_needs_every_shard(tmp_path):
    from hpc_instruct.train.export_check import export_problem

    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert "model-00002-of-00002" in export_problem(folder)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert export_problem(folder) is None


FULL_DISK = """
import json, sys
from pathlib import Path
from hpc_instruct.study_dir import StudyDir
from hpc_instruct.launch.local import disk_full_at
from hpc_instruct.launch.state import record_local_failure, reserve_local_record
from hpc_instruct.launch.tasks import Task
layout = StudyDir(Path(sys.argv[1]))
task = Task("eval", "e1", "cpu", "eval/x.parquet")
reserve_local_record(layout, task)  # before the task runs
try:  # the task fills the disk
    with open(layout.root / "fill", "wb") as fh:
        while True:
            fh.write(b"\\0" * 4096)
            fh.flush()
except OSError as exc:
    line = f"OSError: [Errno 28] No space left on device: '{layout.root / 'eval' / 'x.parquet'}'"
    assert exc.errno == 28
ok = record_local_failure(layout, task, f"disk full at {disk_full_at(line)}: {line}", "log")
print(ok, json.loads((layout.state / "local" / "e1.json").read_text())["error"])
"""


def test_a_failure_is_recorded_on_a_full_disk(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    script = f"mount -t tmpfs -o size=64k tmpfs {study} && exec {sys.executable} -c \"$0\" {study}"
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip("needs a private mount namespace (unshare -rm) to make a small full disk")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script, FULL_DISK], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True disk full at ") and "eval/x.parquet" in done.stdout, done.stdout
