"""`models[].pretrain`: its syntax and defaults, its place in trial and base ids, and its errors (file:line, key,
suggestion, exit 2, nothing written).

Covers: hpc_instruct.train.config (PretrainConfig), hpc_instruct.recipe.checks (Checker.pretrain),
hpc_instruct.recipe.expand (model_identity)."""

from __future__ import annotations

import pytest
from recipe_base import BASE

from hpc_instruct.cli import main
from hpc_instruct.errors import RecipeError
from hpc_instruct.recipe.study import load_study
from hpc_instruct.stages.base import base_id

PRETRAIN = "    global_batch: 8\n    pretrain: {{steps: 50}}\n"


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def with_pretrain(spec: str) -> str:
    return edit("    global_batch: 8\n", f"    global_batch: 8\n    pretrain: {spec}\n")


def test_pretrain_parses_with_defaults(write_recipe):
    study = load_study(write_recipe(with_pretrain("{{steps: 50}}")))
    p = study.model("m").pretrain
    assert (p.steps, p.lr, p.warmup_steps, p.corpus, p.micro_batch, p.global_batch) == (
        50, 3e-3, 10, "pretrain/corpus.jsonl", None, None)
    assert load_study(write_recipe(BASE, "plain.yaml")).model("m").pretrain is None


def test_the_default_corpus_is_the_one_the_demo_generator_writes():
    from hpc_instruct.data.demo.study import PRETRAIN_FILE
    from hpc_instruct.recipe.checks import PRETRAIN_FILE as CHECKED
    from hpc_instruct.train.config import PretrainConfig

    assert PretrainConfig(steps=1).corpus == PRETRAIN_FILE == CHECKED


def test_pretrain_is_part_of_every_trial_and_base_id(write_recipe):
    plain = load_study(write_recipe(BASE, "plain.yaml")).expand()
    study = load_study(write_recipe(with_pretrain("{{steps: 50}}"), "a.yaml"))
    a = study.expand()
    b_study = load_study(write_recipe(with_pretrain("{{steps: 50, lr: 1.0e-3}}"), "b.yaml"))
    b = b_study.expand()
    same = load_study(write_recipe(with_pretrain("{{steps: 50, micro_batch: 2}}"), "c.yaml"))
    ids = lambda ex: [t.id for t in ex.trials] + [x.id for x in ex.baselines]  # noqa: E731
    assert not set(ids(plain)) & set(ids(a)) and not set(ids(a)) & set(ids(b))
    assert ids(same.expand()) == ids(a)  # micro_batch is layout, not identity
    assert base_id(study, "m") != base_id(b_study, "m") and base_id(same, "m") == base_id(study, "m")
    assert base_id(study, "m") == base_id(load_study(write_recipe(edit("seeds: [0, 1]", "seeds: [3]",
                                                                       with_pretrain("{{steps: 50}}")), "d.yaml")), "m")


def test_ids_of_models_without_pretrain_do_not_change():
    """A study planned before `pretrain` existed keeps its trial ids: an unset section is not hashed."""
    from hpc_instruct.recipe.expand import model_identity
    from hpc_instruct.train.config import ModelConfig, PretrainConfig

    assert "pretrain" not in model_identity(ModelConfig(name="m", size="tiny"))
    assert model_identity(ModelConfig(name="m", size="tiny", pretrain=PretrainConfig(steps=5)))["pretrain"]["steps"] == 5


CASES = [
    ("with-path", edit("    size: tiny\n", "    size: tiny\n    path: /models/x\n", with_pretrain("{{steps: 5}} #<")),
     "models[0].pretrain", "pretrain is for size presets only", "replace path with size"),
    ("zero-steps", with_pretrain("{{steps: 0}} #<"), "models[0].pretrain.steps", "expected a value >= 1", ""),
    ("no-steps", with_pretrain("{{lr: 1.0e-3}} #<"), "models[0].pretrain.steps", "missing required key", ""),
    ("typo", with_pretrain("{{steps: 5, setps: 4}} #<"), "models[0].pretrain.setps", "unknown key",
     "did you mean 'steps'?"),
    ("batch", with_pretrain("{{steps: 5, global_batch: 6}} #<"), "models[0].pretrain.global_batch",
     "global_batch=6 must be a multiple of micro_batch*dp = 4*1", "e.g. 8"),
    ("absolute-corpus-missing", with_pretrain("{{steps: 5, corpus: /nowhere/corpus.jsonl}} #<"),
     "models[0].pretrain.corpus", "pretraining corpus /nowhere/corpus.jsonl not found", "JSON-lines"),
    ("generated-has-no-such-corpus", with_pretrain("{{steps: 5, corpus: mine.jsonl}} #<"),
     "models[0].pretrain.corpus", "the generated data has no 'mine.jsonl'", "'pretrain/corpus.jsonl'"),
]


@pytest.mark.parametrize("text,key,message,suggestion", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_pretrain_errors_give_one_actionable_line(write_recipe, tmp_path, capsys, text, key, message, suggestion):
    path = write_recipe(text)
    marked = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if "#<" in line]
    with pytest.raises(RecipeError) as err:
        load_study(path)
    (problem,) = err.value.problems
    assert problem.key == key and message in problem.message and suggestion in problem.suggestion, str(problem)
    assert problem.location is not None and problem.location.line == marked[0], str(problem)
    assert main(["validate", str(path)]) == 2
    err_text = capsys.readouterr().err
    assert str(problem) in err_text and "Traceback" not in err_text
    assert not (tmp_path / "studies").exists()


def test_corpus_under_a_staged_data_root_must_be_there(write_recipe, tmp_path):
    root = tmp_path / "release"
    (root / "curated").mkdir(parents=True)
    text = edit("  generate: {{pool_size: 50, synthetic_size: 100}}\n",
                f"  root: {root}\n  abilities: [math]\n", with_pretrain("{{steps: 5, corpus: text/c.jsonl}}"))
    text = text.replace("  synthetic:\n    total_samples: [10]\n", "")
    with pytest.raises(RecipeError) as err:
        load_study(write_recipe(text))
    assert any(p.key == "models[0].pretrain.corpus" and "not found under data.root" in p.message
               for p in err.value.problems), err.value
    (root / "text").mkdir()
    (root / "text" / "c.jsonl").write_text('{"text": "hello"}\n')
    with pytest.raises(RecipeError) as err:  # the corpus is found: what is left is the empty release's pools
        load_study(write_recipe(text))
    assert not any(p.key.startswith("models[0].pretrain") for p in err.value.problems)
