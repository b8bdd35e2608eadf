"""A model split over two ranks (transformers' tensor parallelism over gloo, two CPU processes) answers exactly
as the single-device model: the same greedy replies, letter log-probs and candidate perplexities."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from process_group import run_in_session

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("sharded_worker.py")


def _run(cmd: list[str], timeout: int = 240) -> None:
    run_in_session(cmd, REPO, timeout)  # its own session: a hung rank is killed with its group


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A random 2-layer Llama (4 heads, 2 key/value heads) with the DoIT tokenizer, as an HF export folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hpc_instruct.data.template import ChatTemplate, TemplateConfig
    from hpc_instruct.data.tokenizer import load_tokenizer

    folder = tmp_path_factory.mktemp("tp-model")
    template = ChatTemplate(load_tokenizer("builtin"), TemplateConfig("doit"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(template.tokenizer), hidden_size=64, intermediate_size=176,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    template.tokenizer.save_pretrained(str(folder))
    return folder


def test_tensor_parallel_two_ranks_equals_one_device(model_folder, demo_root, tmp_path):
    single, split = tmp_path / "single.json", tmp_path / "split.json"
    _run([sys.executable, str(WORKER), str(model_folder), str(demo_root), str(single)])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
          str(model_folder), str(demo_root), str(split)])
    one, two = json.loads(single.read_text()), json.loads(split.read_text())
    assert (one["world"], two["world"]) == (1, 2)
    assert two["local_q_rows"] * 2 == two["full_q_rows"] == one["local_q_rows"]  # the weights really are split
    assert any(one["texts"]) and not all(one["stopped"])  # replies of some length, not all cut at once
    assert two["texts"] == one["texts"] and two["tokens"] == one["tokens"] and two["stopped"] == one["stopped"]
    for a, b in zip(two["letter_logprobs"], one["letter_logprobs"], strict=True):
        assert len(a) == len(b) >= 3 and a == pytest.approx(b, abs=1e-5)
    for a, b in zip(two["perplexities"], one["perplexities"], strict=True):
        assert a == pytest.approx(b, rel=1e-5)


def test_a_preset_base_model_is_written_to_a_folder_that_loads_the_same_model(tmp_path):
    """Weights that are not an HF folder of the study's vocabulary (a preset init here) are written once, so
    tensor-parallel ranks and vLLM can read them; the folder holds exactly the model the eval loads."""
    import torch
    from transformers import AutoModelForCausalLM

    from hpc_instruct.evaluate.checkpoints import Checkpoint, clear_cache, load_checkpoint
    from hpc_instruct.evaluate.sharded import materialized_folder, needs_folder
    from hpc_instruct.train.presets import preset

    ckpt = Checkpoint("base", 0, 0, "", "preset", "", "builtin", seed=3)
    assert needs_folder(ckpt, "doit")
    folder = materialized_folder(ckpt, "doit", preset("tiny"), root=str(tmp_path), dtype="fp32")
    reference = load_checkpoint(ckpt, "doit", preset("tiny"), "cpu")
    written = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ids = torch.tensor([reference.template.encode_prompt([("user", "你好")])])
    with torch.no_grad():
        assert torch.equal(written(ids).logits, reference.model(ids).logits)
    assert materialized_folder(ckpt, "doit", preset("tiny"), root=str(tmp_path), dtype="fp32") == folder  # once
    clear_cache()
