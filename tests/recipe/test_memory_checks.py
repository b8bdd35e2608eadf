"""`hpci validate` refuses layouts that do not fit the GPU or the node, naming the smallest fix that does.

Covers: hpc_instruct.recipe.memory_checks."""

from __future__ import annotations

import shlex

import pytest

from hpc_instruct.cli import main

BIG = """\
study: {{name: big, output_root: {out}}}
models:
  - name: big
    size: 70b
    tp: 1
    dp: 8
    micro_batch: 1
    global_batch: 64
data:
  generate: {{pool_size: 50, synthetic_size: 100}}
sweep:
  curated: {{samples_per_ability: [1]}}
training: {{epochs: 1, max_length: 2048}}
evaluation: {{batch_size: 2}}
execution:
  gpu: a100-80g
  eval_gpu: h200-141g   # one h200 holds 70B in bf16 (128 GiB) + KV cache at batch 2
  train: {{mem_gb: 1024}}
  warning_signal_s: 900  # a 70B node writes ~0.5 TB per resume save
"""


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCI_SCALE_CACHE", str(tmp_path / "scale-cache"))


def _problems(capsys) -> list[str]:
    return [line.strip() for line in capsys.readouterr().err.splitlines() if line.startswith("  ")]


def test_70b_at_tp1_on_80gb_fails_with_the_smallest_fix_and_the_fix_validates(write_recipe, capsys):
    path = write_recipe(BIG)
    assert main(["validate", str(path)]) == 2
    (problem,) = _problems(capsys)
    assert problem.startswith(f"{path}:3: models[0]: 'big' does not fit a100-80g (80.0 GiB)")
    assert "smallest change that fits: " in problem
    overrides = shlex.split(problem.split("smallest change that fits: ")[1].split(" (")[0])
    assert overrides and all(o.startswith(("models.big.", "training.")) for o in overrides)
    assert main(["validate", str(path), *overrides]) == 0
    assert not (path.parent / "studies").exists()  # validate writes nothing


def test_plan_shows_memory_per_rank(write_recipe, capsys):
    path = write_recipe(BIG)
    assert main(["plan", str(path), "models.big.tp=8", "models.big.pp=4", "models.big.dp=2",
                 "models.big.nodes=8", "models.big.sequence_parallel=true"]) == 0
    out = capsys.readouterr().out
    assert "memory per rank (GiB, on a100-80g)" in out and "train pp3" in out and "eval (h200-141g)" in out


def test_tp_beyond_a_node_is_an_error(write_recipe, capsys):
    assert main(["validate", str(write_recipe(BIG)), "models.big.tp=8", "models.big.dp=2", "models.big.nodes=4"]) == 2
    (problem,) = _problems(capsys)
    assert "models[0].tp: tp=8 spans nodes: a node has 4 GPUs" in problem


def test_host_memory_shortfall_names_the_memory_needed(write_recipe, capsys):
    args = ["models.big.tp=8", "models.big.pp=4", "models.big.dp=2", "models.big.nodes=8",
            "models.big.sequence_parallel=true", "execution.train.mem_gb=64"]
    assert main(["validate", str(write_recipe(BIG)), *args]) == 2
    (problem,) = _problems(capsys)
    assert "execution.train.mem_gb: a node training 'big' needs" in problem
    needed = problem.rsplit("execution.train.mem_gb=", 1)[1].rstrip(")")
    assert main(["validate", str(write_recipe(BIG)), *args[:-1], f"execution.train.mem_gb={needed}"]) == 0


def test_eval_tasks_hold_the_gpus_weights_and_kv_cache_need(write_recipe, capsys):
    from hpc_instruct.launch.tasks import build_tasks, resources
    from hpc_instruct.recipe.study import load_study

    args = ["models.big.tp=8", "models.big.pp=4", "models.big.dp=2", "models.big.nodes=8",
            "models.big.sequence_parallel=true"]
    path = write_recipe(BIG)
    # 70B in bf16 is 128 GiB of weights: two h100-80g hold it (tensor parallel), so validation accepts it
    assert main(["validate", str(path), *args, "execution.eval_gpu=h100-80g"]) == 0
    for engine, group, ranks in (("native", "2g", 2), ("vllm", "2g-vllm", 1)):
        study = load_study(path, (*args, "execution.eval_gpu=h100-80g", f"evaluation.engine={engine}"))
        assert study.memory["big"].eval_tp == 2 and study.memory["big"].eval.gib < study.memory["big"].eval_gpu_gib
        groups = {t.group for t in build_tasks(study, study.expand()) if t.stage == "eval"}
        assert groups == {group}
        r = resources(study, "eval", group)
        assert (r.gpus_per_node, r.tasks_per_node) == (2, ranks)  # native: one rank per GPU; vLLM: one process
    # the fewest GPUs that fit: one h200-141g holds 70B at batch 2
    assert load_study(path, tuple(args)).memory["big"].eval_tp == 1
    # a width tensor parallelism cannot use, and a GPU too small even at 8 ranks
    assert main(["validate", str(path), *args, "execution.eval.gpus=3"]) == 2
    assert any("execution.eval.gpus: 3 GPUs per eval task" in p and "execution.eval.gpus=2" in p for p in _problems(capsys))
    small = BIG.replace("  eval_gpu: h200-141g", "  eval_gpu: {{memory_gib: 12, bf16_tflops: 100}}")
    assert main(["validate", str(write_recipe(small)), *args]) == 2
    assert any("evaluating 'big' on 8 custom (tensor parallel) needs" in p for p in _problems(capsys))


def test_gpu_by_values_and_a_misspelt_preset(write_recipe, capsys):
    path = write_recipe(BIG)
    assert main(["validate", str(path), "execution.gpu=a100-80", "models.big.tp=4"]) == 2
    assert any("execution.gpu: unknown GPU 'a100-80' (did you mean 'a100-80g'?)" in p for p in _problems(capsys))
    custom = BIG.replace("  gpu: a100-80g", "  gpu: {{memory_gib: 600, bf16_tflops: 1000}}")
    # 513 GiB fits a 600 GiB device; a node of 8 such ranks writes ~1 TB per resume save (~8 min at 2 GB/s)
    assert main(["validate", str(write_recipe(custom)), "execution.train.mem_gb=8000"]) == 0


def test_warning_signal_must_leave_time_for_the_resume_save(write_recipe, capsys):
    args = ["models.big.tp=8", "models.big.pp=4", "models.big.dp=2", "models.big.nodes=8",
            "models.big.sequence_parallel=true", "execution.filesystem_gbps=0.1"]
    path = write_recipe(BIG)
    assert main(["validate", str(path), *args]) == 2
    (problem,) = _problems(capsys)
    assert "execution.warning_signal_s: a resume save of 'big' takes ~" in problem
    needed = problem.rsplit("execution.warning_signal_s=", 1)[1].rstrip(")")
    assert int(needed) > 900
    assert main(["validate", str(path), *args, f"execution.warning_signal_s={needed}"]) == 0


def test_hf_backend_refuses_a_model_its_replicated_adam_state_does_not_fit(write_recipe, capsys):
    path = write_recipe(BIG)
    assert main(["validate", str(path), "models.big.backend=hf", "models.big.size=7b"]) == 2
    problems = _problems(capsys)
    assert any("models[0].backend: backend hf keeps fp32 weights, gradients and both Adam moments of all 6." in p
               and "models.big.backend=megatron" in p for p in problems), problems
    assert main(["validate", str(path), "models.big.backend=hf", "models.big.size=qwen2-0.5b"]) == 0
