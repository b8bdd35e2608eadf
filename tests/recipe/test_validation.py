"""Malformed recipes: each gives its own one-line error with file:line, key, expectation and a suggestion,
exit code 2, and nothing written.

Covers: hpc_instruct.recipe.checks, hpc_instruct.recipe.coerce, hpc_instruct.recipe.schema,
hpc_instruct.config_fields, hpc_instruct.recipe.data_facts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from recipe_base import BASE

from hpc_instruct.cli import main
from hpc_instruct.errors import RecipeError
from hpc_instruct.recipe.study import load_study


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (case id, recipe text with the offending line marked `#<`, key, message fragment, suggestion fragment)
CASES = [
    ("typo-in-key", edit("  epochs: 2", "  epoch: 2 #<"), "training.epoch", "unknown key", "did you mean 'epochs'?"),
    ("typo-in-section", edit("training:", "trainig: #<"), "trainig", "unknown key", "did you mean 'training'?"),
    ("key-in-wrong-section", edit("    global_batch: 8", "    global_batch: 8\n    lr: 0.1 #<"),
     "models[0].lr", "unknown key", "'lr' belongs under 'training'"),
    ("not-a-number", edit("  lr: 1.0e-3", "  lr: fast #<"), "training.lr", "expected a number, got 'fast'", ""),
    ("out-of-range", edit("  epochs: 2", "  epochs: 0 #<"), "training.epochs", "expected a value >= 1, got 0", ""),
    ("bool-is-not-int", edit("  epochs: 2", "  epochs: true #<"), "training.epochs", "expected an integer, got True", ""),
    ("bad-choice", edit("    device: cpu", "    device: cpu\n    backend: megatorn #<"), "models[0].backend",
     "expected one of 'megatron', 'hf', 'deepspeed', got 'megatorn'", "did you mean 'megatron'?"),
    ("unknown-preset", edit("    size: tiny", "    size: tinny #<"), "models[0].size", "unknown size preset 'tinny'",
     "did you mean 'tiny'?"),
    ("batch-not-divisible", edit("    global_batch: 8", "    global_batch: 10 #<"), "models[0].global_batch",
     "global_batch=10 must be a multiple of micro_batch*dp = 4*1", "e.g. 12"),
    ("tp-not-dividing-heads", edit("    device: cpu", "    device: cpu\n    tp: 3 #<"), "models[0].tp",
     "tp=3 must divide the 4 attention heads", "valid tp: 1, 2, 4"),
    ("pp-not-dividing-layers", edit("    device: cpu", "    device: cpu\n    pp: 4 #<"), "models[0].pp",
     "pp*vpp = 4*1 must divide the 2 layers", ""),
    ("unknown-model-ref", edit("    total_samples: [10]", "    total_samples: [10]\n    models: [mm] #<"),
     "sweep.synthetic.models[0]", "no model named 'mm'", "did you mean 'm'?"),
    ("unknown-ability", edit("data:\n", "data:\n  abilities: [biology, histroy] #<\n"), "data.abilities[1]",
     "unknown ability 'histroy'", "did you mean 'history'?"),
    ("pool-too-small", edit("    samples_per_ability: [1, 4]", "    samples_per_ability: [1, 400] #<"),
     "sweep.curated.samples_per_ability", "400 samples per ability requested but these pools hold fewer",
     "set cap: true"),
    ("synthetic-pool-too-small", edit("    total_samples: [10]", "    total_samples: [10, 5000] #<"),
     "sweep.synthetic.total_samples", "5000 samples requested but the synthetic pool holds 100", "cap: true"),
    ("arm-seeds-repeat", edit("    total_samples: [10]", "    total_samples: [10]\n    seeds: [3, 3] #<"),
     "sweep.synthetic.seeds", "an arm's seeds must be distinct and not empty", "sweep.seeds"),
    ("count-and-fraction", edit("training:", "  mixes:\n    - name: x\n      samples_per_ability: {math: 4}\n"
                                 "      fraction_per_ability: {math: 0.5} #<\ntraining:"),
     "sweep.mixes[0].fraction_per_ability.math", "'math' is given both a sample count and a fraction",
     "keep one of the two"),
    ("fraction-over-one", edit("training:", "  mixes:\n    - name: x\n      fraction_per_ability: {default: 1.5} #<\n"
                                "training:"),
     "sweep.mixes[0].fraction_per_ability.default", "expected a fraction in (0, 1], got 1.5",
     "use samples_per_ability for a count"),
    ("mix-ability-typo", edit("training:", "  mixes:\n    - name: x\n      samples_per_ability: {ethic: 4} #<\n"
                               "training:"),
     "sweep.mixes[0].samples_per_ability.ethic", "'ethic' is not an ability of this study", "did you mean 'ethics'?"),
    ("missing-required", edit("  name: t\n", ""), "study.name", "missing required key (a string)", ""),
    ("duplicate-yaml-key", edit("  epochs: 2", "  epochs: 2\n  epochs: 3 #<"), "training.epochs",
     "duplicate key (first set at line", ""),
    ("yaml-syntax", edit("  epochs: 2", "  epochs: 2\n   x: 1 #<"), "", "YAML syntax error", ""),
    ("unset-env", edit("  name: t", "  name: ${HPCI_TEST_NOPE} #<"), "study.name",
     "environment variable HPCI_TEST_NOPE is not set", "export HPCI_TEST_NOPE"),
    ("duplicate-model", edit("data:", "  - name: m #<\n    size: tiny\n    device: cpu\n    global_batch: 8\ndata:"),
     "models[1].name", "duplicate model name 'm'", ""),
    ("warmup-twice", edit("  epochs: 2", "  epochs: 2\n  warmup_steps: 3\n  warmup_ratio: 0.1 #<"),
     "training.warmup_ratio", "give warmup_steps or warmup_ratio, not both", ""),
    ("betas-length", edit("  epochs: 2", "  epochs: 2\n  betas: [0.9] #<"), "training.betas",
     "expected a list of 2 values, got 1", ""),
    ("seq-parallel-without-tp", edit("    device: cpu", "    device: cpu\n    sequence_parallel: true #<"),
     "models[0].sequence_parallel", "sequence parallelism needs tp > 1", ""),
    ("hf-backend-with-tp", edit("    device: cpu", "    device: cpu\n    backend: hf #<\n    tp: 2"),
     "models[0].backend", "tp/pp > 1 needs backend 'megatron'", ""),
    ("gpus-per-node-mismatch", edit("    device: cpu", "    device: cuda\n    dp: 2\n    gpus_per_node: 8 #<"),
     "models[0].gpus_per_node", "expected tp*pp*dp/nodes = 1*1*2/1 = 2, got 8", ""),
    ("fp16-on-cpu", edit("  precision: fp32", "  precision: fp16 #<"), "training.precision",
     "runs on cpu, where fp16 training is not supported", "use fp32"),
    ("empty-sweep", BASE[:BASE.index("sweep:")] + "sweep: {} #<\n" + BASE[BASE.index("training:"):], "sweep",
     "the sweep defines no trials", "add curated, synthetic, mixes, single_ability or held_out"),
    ("held-out-min-over-max", edit("    total_samples: [10]\n", "    total_samples: [10]\n  held_out: {{count: 3, "
                                   "min_per_ability: 8, max_per_ability: 4}} #<\n"),
     "sweep.held_out.max_per_ability", "max_per_ability=4 is below min_per_ability=8", ""),
    ("held-out-pool-too-small", edit("    total_samples: [10]\n", "    total_samples: [10]\n  held_out: {{count: 3, "
                                     "max_per_ability: 400, cap: false}} #<\n"),
     "sweep.held_out.max_per_ability", "400 samples per ability requested but these pools hold fewer", "cap: true"),
    ("list-expected", edit("    samples_per_ability: [1, 4]", "    samples_per_ability: {a: 1} #<"),
     "sweep.curated.samples_per_ability", "expected a list of integers, got a mapping", ""),
    ("unknown-ood-set", edit("training:", "evaluation:\n  out_of_domain: [ceval_physican] #<\ntraining:"),
     "evaluation.out_of_domain[0]", "unknown out-of-domain set 'ceval_physican'", "did you mean 'ceval_physician'?"),
]


@pytest.mark.parametrize("text,key,message,suggestion", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_recipe_gives_one_actionable_line(write_recipe, tmp_path, capsys, text, key, message, suggestion):
    path = write_recipe(text)
    lines = path.read_text().splitlines()
    marked = [i + 1 for i, line in enumerate(lines) if "#<" in line]
    with pytest.raises(RecipeError) as err:
        load_study(path)
    assert len(err.value.problems) == 1, err.value
    problem = err.value.problems[0]
    line = str(problem)
    assert "\n" not in line
    assert problem.key == key
    assert message in problem.message, line
    assert suggestion in problem.suggestion, line
    if marked:
        assert problem.location is not None and problem.location.file.endswith("r.yaml")
        assert problem.location.line == marked[0], line
    # The CLI: exit code 2, the same line on stderr, no traceback, nothing written.
    assert main(["validate", str(path)]) == 2
    assert main(["plan", str(path)]) == 2
    err_text = capsys.readouterr().err
    assert line in err_text and "Traceback" not in err_text
    assert not (tmp_path / "studies").exists()


def test_cases_are_distinct():
    assert len(CASES) >= 20
    assert len({(c[2], c[3]) for c in CASES}) == len(CASES)


def test_every_problem_is_reported_at_once(write_recipe):
    text = edit("  epochs: 2", "  epoch: 2\n  lr: fast").replace("  lr: 1.0e-3\n", "").replace("size: tiny", "size: tinny")
    with pytest.raises(RecipeError) as err:
        load_study(write_recipe(text))
    keys = {p.key for p in err.value.problems}
    assert {"training.epoch", "training.lr"} <= keys


def test_override_errors_name_the_override(write_recipe):
    with pytest.raises(RecipeError) as err:
        load_study(write_recipe(), ("training.lrr=0.1",))
    (problem,) = err.value.problems
    assert str(problem.location) == "<override 1: training.lrr=0.1>"
    assert "did you mean 'lr'?" in str(problem)


def test_include_problems(write_recipe):
    with pytest.raises(RecipeError, match="included file nope.yaml does not exist"):
        load_study(write_recipe("include: nope.yaml\n" + BASE))
    write_recipe("include: b.yaml\n", "a.yaml")
    with pytest.raises(RecipeError, match="include cycle"):
        load_study(write_recipe("include: a.yaml\n", "b.yaml"))


def test_cap_takes_what_the_pool_has(write_recipe):
    study = load_study(write_recipe(edit("    samples_per_ability: [1, 4]", "    samples_per_ability: [1, 400]\n    cap: true")))
    big = [t for t in study.expand(with_eval=False).trials if t.label.startswith("curated-400")]
    assert big and all(set(t.samples_per_ability.values()) == {50} for t in big)


def test_exit_code_from_the_installed_command(write_recipe):
    path = write_recipe(edit("  epochs: 2", "  epoch: 2"))
    hpci = Path(sys.executable).with_name("hpci")
    proc = subprocess.run([str(hpci), "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "training.epoch: unknown key (did you mean 'epochs'?)" in proc.stderr
