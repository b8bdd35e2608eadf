"""Batched inference against one-item-at-a-time references on a tiny random Llama (CPU, fp32).

Generation must equal transformers' own greedy `generate` per item (left padding, KV cache, stop tokens,
dropping finished rows); letter log-probs must be those of the answer position; ranking perplexities must equal
exp(mean cross-entropy) from a full forward of each candidate, context masked.
"""

from __future__ import annotations

import math

import pytest
import torch

from hpc_instruct.data.template import IGNORE_INDEX, ChatTemplate, TemplateConfig
from hpc_instruct.data.tokenizer import load_tokenizer
from hpc_instruct.evaluate.inference import Inference, InferenceConfig
from hpc_instruct.evaluate.sets import load_eval_set

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, spinning OpenMP threads make tiny ops erratic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_llama(vocab: int, seed: int = 0) -> torch.nn.Module:
    """A random 2-layer Llama with grouped-query attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    return LlamaForCausalLM(config).eval()


def with_stop_bias(model: torch.nn.Module, token: int, bias: float) -> torch.nn.Module:
    """The same model with an output bias towards `token`, so some replies stop early and others do not."""
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[token] = bias
    model.lm_head = head
    return model


@pytest.fixture(scope="module")
def doit_template() -> ChatTemplate:
    return ChatTemplate(load_tokenizer("builtin"), TemplateConfig("doit"))


@pytest.fixture(scope="module")
def native_template() -> ChatTemplate:
    tokenizer = load_tokenizer("builtin")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    tokenizer.eos_token = "<|im_end|>"
    return ChatTemplate(tokenizer, TemplateConfig("native"))


def hf_greedy(model, template: ChatTemplate, prompt, max_new_tokens: int) -> tuple[list[int], bool]:
    stops = template.stop_token_ids()
    ids = torch.tensor([template.encode_prompt(prompt)])
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stops,
        pad_token_id=template.tokenizer.pad_token_id,
    )
    new = out[0, ids.shape[1] :].tolist()
    cut = next((i for i, t in enumerate(new) if t in stops), None)
    return (new, False) if cut is None else (new[:cut], True)


@pytest.mark.parametrize(
    "compact,sync_every,kv_cache",
    [(0.0, 1, "dynamic"), (2.0, 1, "dynamic"), (0.5, 5, "dynamic"), (0.0, 3, "static")],
)  # drop finished rows at once / never / when half; host checks every token or every k; static KV cache
def test_batched_greedy_equals_transformers_generate(demo_root, doit_template, compact, sync_every, kv_cache):
    tok = doit_template.tokenizer
    model = with_stop_bias(tiny_llama(len(tok)), doit_template.eot_id, 0.35)
    items = [
        it
        for s in ("biology", "understanding", "history")
        for it in load_eval_set(demo_root, s, "valid").items[:8]
    ]
    engine = Inference(
        model,
        doit_template,
        InferenceConfig(
            batch_size=7, max_new_tokens=12, compact_fraction=compact, sync_every=sync_every, kv_cache=kv_cache
        ),
    )
    got = engine.generate([it.prompt for it in items])
    stopped = 0
    for it, g in zip(items, got, strict=True):
        ids, did_stop = hf_greedy(model, doit_template, it.prompt, 12)
        assert g.text == tok.decode(ids, skip_special_tokens=True)
        assert (g.response_tokens, g.stopped) == (len(ids), did_stop)
        assert g.prompt_tokens == len(doit_template.encode_prompt(it.prompt))
        stopped += did_stop
    assert 0 < stopped < len(items)  # some rows stopped early, others ran to max_new_tokens


def test_letter_logprobs_are_read_at_the_answer_position(demo_root, doit_template):
    model = tiny_llama(len(doit_template.tokenizer))
    items = load_eval_set(demo_root, "understanding", "valid").items[:10]  # 3- and 4-way questions
    engine = Inference(model, doit_template, InferenceConfig(batch_size=4, max_new_tokens=3))
    got = engine.generate([it.prompt for it in items], [it.option_letters for it in items])
    for it, g in zip(items, got, strict=True):
        ids = torch.tensor([doit_template.encode_prompt(it.prompt)])
        with torch.no_grad():
            first = torch.log_softmax(model(ids).logits[0, -1].float(), -1)  # predicts the first reply token
        expected = first[engine.letter_ids(it.option_letters)].tolist()
        assert len(g.letter_logprobs) == it.n_options
        assert g.letter_logprobs == pytest.approx(expected, abs=1e-5)
    assert engine.letter_ids("AB") == [
        doit_template.tokenizer.encode("A", add_special_tokens=False)[0],
        doit_template.tokenizer.encode("B", add_special_tokens=False)[0],
    ]


def test_stop_tokens_end_generation(demo_root, doit_template):
    model = with_stop_bias(tiny_llama(len(doit_template.tokenizer)), doit_template.user_id, 50.0)
    items = load_eval_set(demo_root, "math", "valid").items[:3]
    got = Inference(model, doit_template, InferenceConfig(max_new_tokens=5)).generate(
        [it.prompt for it in items]
    )
    assert all(g.stopped and g.text == "" and g.response_tokens == 0 for g in got)
    assert set(doit_template.stop_token_ids()) >= {
        doit_template.eot_id,
        doit_template.user_id,
        doit_template.assistant_id,
    }


def reference_perplexity(model, template: ChatTemplate, prompt, candidate: str) -> float:
    enc = template.encode_batch([[*prompt, ("assistant", candidate)]], train_on="last")[0]
    ids, labels = torch.tensor([enc.input_ids]), torch.tensor([enc.labels])
    with torch.no_grad():
        logits = model(ids).logits
    ce = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=IGNORE_INDEX)
    return math.exp(ce.item())


@pytest.mark.parametrize("template_kind", ["doit", "native"])
def test_ranking_equals_a_full_forward_per_candidate(
    demo_root, doit_template, native_template, template_kind
):
    template = doit_template if template_kind == "doit" else native_template
    model = tiny_llama(len(template.tokenizer))
    items = [
        it
        for s in ("code", "creative_writing", "role_play")
        for it in load_eval_set(demo_root, s, "test").items[:6]
    ]
    prompts, candidates = [it.prompt for it in items], [it.candidates for it in items]
    # a candidate that is a prefix of another, and a 2-candidate item
    prompts.append(items[0].prompt)
    candidates.append(("好的", "好的，没问题", "不"))
    prompts.append(items[1].prompt)
    candidates.append(("甲", "乙"))
    engine = Inference(model, template, InferenceConfig(rank_batch_tokens=700))  # several chunks
    got = engine.rank(prompts, candidates)
    for prompt, cands, r in zip(prompts, candidates, got, strict=True):
        expected = [reference_perplexity(model, template, prompt, c) for c in cands]
        assert r.perplexities == pytest.approx(expected, rel=1e-4)
        enc = template.encode_batch([[*prompt, ("assistant", c)] for c in cands], train_on="last")
        assert r.candidate_tokens == tuple(e.num_trained for e in enc)  # content + end of turn
    # without prefix sharing (models whose logits are more than head(hidden)) the numbers are the same
    engine._shares_prefix = False
    plain = engine.rank(prompts, candidates)
    for a, b in zip(got, plain, strict=True):
        assert a.perplexities == pytest.approx(b.perplexities, rel=1e-5)


def test_native_template_generation_matches_transformers(demo_root, native_template):
    model = tiny_llama(len(native_template.tokenizer))
    items = load_eval_set(demo_root, "biology", "valid").items[:5]
    got = Inference(model, native_template, InferenceConfig(batch_size=5, max_new_tokens=6)).generate(
        [it.prompt for it in items], ["ABCD"] * 5
    )
    for it, g in zip(items, got, strict=True):
        ids, _ = hf_greedy(model, native_template, it.prompt, 6)
        assert g.text == native_template.tokenizer.decode(ids, skip_special_tokens=True)
        assert len(g.letter_logprobs) == 4


def test_batch_size_from_memory():
    from hpc_instruct.evaluate.generation import batch_for_memory, kv_bytes_per_token

    # the docstring's example: 40 GiB free, 13B Llama (800 KiB of keys and values per token), 3072 tokens per row
    assert batch_for_memory(40 * 2**30, 40 * 5120 * 2 * 2, 3072, 49953) == 13
    assert batch_for_memory(10, 1000, 100, 10) == 1  # never below one row
    assert batch_for_memory(2**50, 1, 1, 1, cap=64) == 64
    model = tiny_llama(300)  # 2 layers x 2 key/value heads x 16 dims x (keys, values) x 4 bytes (fp32)
    assert kv_bytes_per_token(model) == 2 * 2 * 2 * 16 * 4
    engine = Inference(model, ChatTemplate(load_tokenizer("builtin"), TemplateConfig("doit")),
                       InferenceConfig(batch_size=None))
    assert engine.batch_size(100) == 16  # CPU: the fixed default
