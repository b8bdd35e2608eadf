"""The vLLM engine: its requests (prompt ids, stop tokens, sampling parameters) and reading its outputs on the
CPU without vLLM; the engine itself against the native loop where vLLM and a GPU are present (marked `gpu`).

vLLM cannot be installed here, so `assemble` is fed objects with the two attributes of vLLM's `RequestOutput` it
reads (`outputs[0].token_ids`, `prompt_logprobs[-1][id].logprob`); that is the only stand-in in these tests.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hpc_instruct.data.template import ChatTemplate, TemplateConfig
from hpc_instruct.data.tokenizer import load_tokenizer
from hpc_instruct.evaluate.engines import (
    AUTO,
    NATIVE,
    VLLM,
    EngineUnavailable,
    require_vllm,
    resolve_engine,
    vllm_importable,
)
from hpc_instruct.evaluate.inference import letter_token_ids
from hpc_instruct.evaluate.sets import load_eval_set
from hpc_instruct.evaluate.vllm_engine import assemble, generation_requests, letter_requests


@pytest.fixture(scope="module")
def template() -> ChatTemplate:
    return ChatTemplate(load_tokenizer("builtin"), TemplateConfig("doit"))


def test_auto_resolves_from_the_recipe_not_the_machine():
    assert resolve_engine(AUTO, "cuda") == VLLM and resolve_engine(AUTO, "cpu") == NATIVE
    assert resolve_engine(NATIVE, "cuda") == NATIVE and resolve_engine(VLLM, "cpu") == VLLM
    with pytest.raises(ValueError, match="auto, native or vllm"):
        resolve_engine("sglang", "cuda")


@pytest.mark.skipif(vllm_importable(), reason="vLLM is installed here")
def test_a_vllm_task_without_vllm_names_both_fixes():
    with pytest.raises(EngineUnavailable, match=r"install it .* or set evaluation.engine=native"):
        require_vllm("llama-7b", AUTO)


def test_requests_use_our_prompt_ids_stop_tokens_and_greedy_sampling(demo_root, template):
    items = load_eval_set(demo_root, "understanding", "valid").items[:5]
    encoded = [template.encode_prompt(it.prompt) for it in items]
    gen = generation_requests(encoded, template.stop_token_ids(), 64)
    assert [list(r.prompt_token_ids) for r in gen] == encoded  # the native loop's rendering, token for token
    for r in gen:
        assert r.sampling["temperature"] == 0.0 and r.sampling["max_tokens"] == 64
        assert set(r.sampling["stop_token_ids"]) == set(template.stop_token_ids()) >= {
            template.eot_id, template.user_id, template.assistant_id}
        assert r.sampling["detokenize"] is False  # replies are decoded by our tokenizer
    letters = [letter_token_ids(template, it.option_letters) for it in items]
    asked = letter_requests(encoded, letters)
    assert len(asked) == sum(it.n_options for it in items)
    for r in asked:  # prompt + the letter: its prompt log-prob is the letter's at the answer position
        assert r.prompt_token_ids == tuple(encoded[r.item]) + (r.letter,)
        assert r.sampling == {"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 0, "detokenize": False}


def test_outputs_become_native_evidence(template):
    stops = template.stop_token_ids()
    hello = template.tokenizer.encode("你好", add_special_tokens=False)
    encoded = [[5, 6, 7], [8, 9]]
    generations = [SimpleNamespace(outputs=[SimpleNamespace(token_ids=hello + [template.eot_id])]),
                   SimpleNamespace(outputs=[SimpleNamespace(token_ids=hello * 2)])]
    asked = letter_requests(encoded, [[11, 12], []])
    outs = [SimpleNamespace(prompt_logprobs=[None, {}, {}, {r.letter: SimpleNamespace(logprob=-0.5 - i)}])
            for i, r in enumerate(asked)]
    decode = lambda ids: template.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    got = assemble(encoded, generations, asked, outs, stops, decode, 0.25)
    assert (got[0].text, got[0].response_tokens, got[0].stopped) == ("你好", len(hello), True)
    assert (got[1].response_tokens, got[1].stopped) == (2 * len(hello), False)  # cut at max_tokens
    assert got[0].letter_logprobs == (-0.5, -1.5) and got[1].letter_logprobs == ()
    assert got[0].prompt_tokens == 3 and got[0].latency_s == 0.25


@pytest.mark.gpu
def test_vllm_engine_agrees_with_the_native_loop(demo_root, template, tmp_path):
    """Where vLLM and a GPU are present: the same replies (or few, bf16-explained differences) and letter
    log-probs within bf16 tolerance, on a small random Llama."""
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from transformers import LlamaConfig, LlamaForCausalLM

    from hpc_instruct.evaluate.inference import Inference, InferenceConfig
    from hpc_instruct.evaluate.vllm_engine import VllmEngine

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(template.tokenizer), hidden_size=256, intermediate_size=688,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(str(tmp_path))
    template.tokenizer.save_pretrained(str(tmp_path))
    items = load_eval_set(demo_root, "understanding", "valid").items[:16]
    prompts, letters = [it.prompt for it in items], [it.option_letters for it in items]
    model = LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.bfloat16).cuda()
    native = Inference(model, template, InferenceConfig(batch_size=8, max_new_tokens=16)).generate(prompts, letters)
    del model
    fast = VllmEngine(tmp_path, template, 16, max_model_len=2048, gpu_memory_utilization=0.5).generate(prompts, letters)
    same = sum(a.text == b.text for a, b in zip(native, fast, strict=True))
    assert same >= 0.8 * len(items)
    for a, b in zip(native, fast, strict=True):
        assert a.letter_logprobs == pytest.approx(b.letter_logprobs, abs=0.05)
