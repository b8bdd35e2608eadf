"""Content-hash ids: stable across key order and processes; change when, and only when, something that matters does.

Covers: hpc_instruct.hashing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from hpc_instruct.recipe.study import load_study


def ids(path, *overrides):
    ex = load_study(path, tuple(overrides)).expand()
    return {t.label: t.id for t in ex.trials}, {b.model: b.id for b in ex.baselines}, {e.id for e in ex.eval_tasks}


def reversed_keys(obj):
    if isinstance(obj, dict):
        return {k: reversed_keys(v) for k, v in reversed(list(obj.items()))}
    if isinstance(obj, list):
        return [reversed_keys(v) for v in obj]
    return obj


def test_key_order_does_not_change_ids(write_recipe):
    a = write_recipe()
    shuffled = reversed_keys(yaml.safe_load(a.read_text()))
    b = write_recipe(yaml.safe_dump(shuffled, sort_keys=False), "b.yaml")
    assert a.read_text() != b.read_text()
    assert ids(a) == ids(b)


def test_lr_changes_every_trial_and_nothing_else(write_recipe):
    path = write_recipe()
    trials, bases, evals = ids(path)
    trials2, bases2, evals2 = ids(path, "training.lr=2e-3")
    assert trials.keys() == trials2.keys()
    assert all(trials[k] != trials2[k] for k in trials)
    assert bases == bases2  # base models are not trained: lr does not touch them
    study = load_study(path)
    base_ids = set(bases.values())
    base_evals = {e.id for e in study.expand().eval_tasks if e.trial in base_ids}
    assert base_evals and base_evals <= evals & evals2
    assert evals - base_evals and not (evals - base_evals) & evals2


def test_layout_and_cadence_do_not_change_ids(write_recipe):
    path = write_recipe()
    same = ids(path, "models.m.micro_batch=2", "training.keep_last=5", "execution.local_parallelism=2",
               "evaluation.batch_size=4")
    assert same == ids(path)


def test_volume_change_touches_only_its_trials(write_recipe):
    path = write_recipe()
    before, _, _ = ids(path)
    after, _, _ = ids(path, "sweep.curated.samples_per_ability=[1,5]")
    kept = {k for k in before if k in after and before[k] == after[k]}
    assert kept == {k for k in before if not k.startswith("curated-4/")}


def test_adding_a_seed_keeps_existing_ids(write_recipe):
    path = write_recipe()
    before, _, _ = ids(path)
    after, _, _ = ids(path, "sweep.seeds=[0,1,2]")
    assert before.items() <= after.items() and len(after) > len(before)


def test_data_revision_changes_ids(write_recipe):
    path = write_recipe()
    assert ids(path)[0] != ids(path, "data.generate.seed=1")[0]


def test_a_new_data_generator_version_changes_ids(write_recipe, monkeypatch):
    """Generated data is pinned by the generator's own version (one owner): a generator that writes other bytes
    must not reuse the trials, models and scores of the data it wrote before."""
    import hpc_instruct.data.demo.study as generator
    import hpc_instruct.recipe.data_facts as facts

    path = write_recipe()
    assert facts.GENERATOR_VERSION is generator.GENERATOR_VERSION
    assert f"generated:{generator.GENERATOR_VERSION}:" in load_study(path).facts.fingerprint
    before = ids(path)
    monkeypatch.setattr(facts, "GENERATOR_VERSION", generator.GENERATOR_VERSION + "-next")
    after = ids(path)
    assert set(before[0].values()).isdisjoint(after[0].values()) and before[2].isdisjoint(after[2])


def test_ids_are_stable_across_processes(write_recipe):
    path = write_recipe()
    code = ("import json,sys; from hpc_instruct.recipe.study import load_study; "
            "print(json.dumps(sorted(t.id for t in load_study(sys.argv[1]).expand().trials)))")
    outs = [subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert outs[0] == outs[1] == json.dumps(sorted(ids(path)[0].values())) + "\n"

