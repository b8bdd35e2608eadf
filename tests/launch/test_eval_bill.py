"""`hpci plan`'s eval bill against a hand computation for a small recipe, and lengths measured on eval files.

Covers: hpc_instruct.launch.eval_bill, hpc_instruct.evaluate.throughput (the per-shard time model the bill uses).
"""

from __future__ import annotations

import json

import pytest

from hpc_instruct.data.abilities import REGISTRY
from hpc_instruct.launch.eval_bill import _measure, eval_bill
from hpc_instruct.launch.plan import plan_table
from hpc_instruct.recipe.study import load_study

RECIPE = """\
study: {name: bill, output_root: OUT}
models:
  - {name: m, size: 7b, dp: 8, global_batch: 64, micro_batch: 1}
data: {root: /nonexistent/doit, abilities: [biology, code]}
sweep: {curated: {samples_per_ability: [1]}}
training: {epochs: 1, max_length: 2048}
evaluation: {checkpoints: last, test_on: selected, include_base: false, items_per_shard: 100, batch_size: 4,
             max_new_tokens: 64, engine: native}
execution:
  gpu: a100-80g
  eval_gpu: {memory_gib: 80, bf16_tflops: 100, memory_tbps: 2}
  train: {mem_gb: 1024}
"""


def test_eval_gpu_hours_equal_a_hand_computation(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.replace("OUT", str(tmp_path / "studies")))
    study = load_study(path)
    ex = study.expand()
    assert len(ex.eval_tasks) == 4  # biology and code, valid on the last epoch and test on the selected one
    n = study.shapes["m"].num_parameters
    kv = 2 * 32 * 4096 * 2  # keys + values x layers x (32 heads x 128) x bf16, per token
    start = 30 + 2 * n / 2e9  # native task start + 2N bytes of weights at 2 GB/s
    # biology: MC, 100 items, prompt 0.6 x the registry's 200 tokens, reference reply 2 tokens, batches of 4
    prompt = 0.6 * REGISTRY["biology"].mean_tokens
    prefill = 2 * n * 100 * prompt / (100e12 * 0.4)
    p_ramble = 1 - 0.9**4  # some row of 4 runs to max_new_tokens
    steps = 25 * (p_ramble * 64 + (1 - p_ramble) * 2)
    context = prompt + (0.9 * 2 + 0.1 * 64) / 2
    step = (2 * n + 4 * kv * context) / (2e12 * 0.5) + 0.01
    biology = prefill + steps * step + start
    # code: rank3, prompt 0.6 x 600 tokens once plus three candidates of 0.4 x 600 each, prefill only
    code = 2 * n * 100 * (0.6 * 600 + 3 * 0.4 * 600) / (100e12 * 0.4) + start
    expected = 2 * (biology + code) / 3600  # valid + test, one GPU each
    bill = eval_bill(study, ex)
    assert bill.gpu_hours == pytest.approx(expected, rel=1e-9)
    assert bill.by_part["valid"] == pytest.approx(expected / 2) and bill.by_part["test"] == pytest.approx(expected / 2)
    assert bill.by_job == {"eval-1g": pytest.approx(expected)}
    # max_new_tokens halved shortens only the rambling replies; test_on=all cannot add here (one checkpoint)
    assert bill.knobs["evaluation.max_new_tokens=32"] < bill.gpu_hours
    out = plan_table(study, ex)
    assert f"eval bill: ~{expected:.0f} eval GPU-hours next to" in out and "knobs:" in out


def test_lengths_are_measured_on_eval_files(tmp_path):
    path = tmp_path / "biology_valid.json"
    records = [{"messages": [{"role": "user", "content": "问" * 30}, {"role": "assistant", "content": "B"}],
                "question_format": 0},
               {"messages": [{"role": "user", "content": "问" * 60}, {"role": "assistant", "content": "C"}],
                "question_format": 0}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    got = _measure(path, "biology")
    assert (got.prompt_tokens, got.reply_tokens, got.ranked, got.source) == (30.0, 1 / 1.5, False, "measured")
