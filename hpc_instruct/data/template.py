"""Chat templates with loss masks: the DoIT template exactly, or a tokenizer's own chat template.

DoIT (../shared/study/DOIT.md): every message becomes `[<user>|<assistant>] + tokens(content.strip()) + <eot>`,
with no system prompt and no BOS. The loss is on assistant content tokens and their `<eot>`, never on the
`<assistant>` role token, and on every assistant turn of a multi-turn sample. Inference prompts are the
dialogue followed by `<assistant>`, left padded in batches. Each message is tokenised on its own, so token
merges never cross a message boundary and the mask is exact by construction.

The "native" kind renders with `tokenizer.apply_chat_template` (modern base models ship one), contents
stripped as in DoIT. The assistant mask comes from rendering growing prefixes of the conversation: turn i
spans the characters between render(messages[:i], add_generation_prompt=True) and render(messages[:i+1])
(trailing whitespace after the end-of-turn marker excluded); tokens of the full rendering are labelled
through their character offsets, so merges at span edges cannot shift the mask.

No torch here: the template is also used on login nodes (hashing) and in data workers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

USER_TOKEN = "<user>"
ASSISTANT_TOKEN = "<assistant>"
EOT_TOKEN = "<eot>"
DOIT_SPECIAL_TOKENS: tuple[str, str, str] = (USER_TOKEN, ASSISTANT_TOKEN, EOT_TOKEN)
IGNORE_INDEX = -100  # label of tokens without loss (the value torch's cross_entropy ignores)
# Bump when the token layout produced for the same config changes: it is part of every template hash.
TEMPLATE_FORMAT_VERSION = 1

Message = tuple[str, str]


class TemplateError(ValueError):
    """A conversation or tokenizer the template cannot encode; the message says what to change."""


@dataclass(frozen=True)
class TemplateConfig:
    """Which chat template a study uses.

    Attributes:
        kind: "doit" (the paper's `<user>/<assistant>/<eot>` template) or "native" (the tokenizer's own
            `chat_template`, for modern base models that ship one).
        train_on: which assistant turns carry loss in training samples: "all" (DoIT) or "last".
    """

    kind: Literal["doit", "native"] = "doit"
    train_on: Literal["all", "last"] = "all"

    def __post_init__(self) -> None:
        if self.kind not in ("doit", "native"):
            raise TemplateError(f"template kind must be 'doit' or 'native', got {self.kind!r}")
        if self.train_on not in ("all", "last"):
            raise TemplateError(f"train_on must be 'all' or 'last', got {self.train_on!r}")


@dataclass(frozen=True)
class EncodedSample:
    """Token ids of one conversation and its labels (IGNORE_INDEX where there is no loss)."""

    input_ids: list[int]
    labels: list[int]
    num_trained: int  # tokens with a label (the loss is taken on them)


def normalize_messages(messages: Any) -> tuple[Message, ...]:
    """(role, content) pairs from a record: pairs, role/content dicts or objects, or anything with `messages`.

    Accepts a `records.Sample` (its `messages` attribute), a DoIT JSON record (a dict with "messages"),
    a sequence of `{"role", "content"}` dicts, or a sequence of (role, content) pairs.
    """
    if isinstance(messages, dict) and "messages" in messages:
        messages = messages["messages"]
    elif hasattr(messages, "messages"):
        messages = messages.messages
    out: list[Message] = []
    for i, m in enumerate(messages):
        if isinstance(m, dict):
            role, content = m.get("role"), m.get("content")
        elif hasattr(m, "role") and hasattr(m, "content"):
            role, content = m.role, m.content
        elif isinstance(m, Sequence) and not isinstance(m, str) and len(m) == 2:
            role, content = m
        else:
            raise TemplateError(
                f"message {i} is neither a (role, content) pair nor a role/content dict: {m!r}"
            )
        if not isinstance(role, str) or not isinstance(content, str):
            raise TemplateError(f"message {i} needs a string role and content, got {role!r}, {content!r}")
        out.append((role, content))
    return tuple(out)


def add_doit_tokens(tokenizer: Any) -> int:
    """Add `<user>`, `<assistant>`, `<eot>` as special tokens (idempotent); give the tokenizer a pad token.

    Returns how many tokens were added: a model trained with this tokenizer must resize its embeddings to
    `len(tokenizer)`. A missing pad token becomes the eos token (or `<eot>`): pads are masked, never trained.
    """
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    missing = [t for t in DOIT_SPECIAL_TOKENS if t not in vocab]
    added = 0
    if missing:
        added = tokenizer.add_tokens(
            [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in missing],
            special_tokens=True,
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else EOT_TOKEN
    return added


class ChatTemplate:
    """Encodes conversations for training (ids + labels) and inference (prompts) with one tokenizer.

    Build with `ChatTemplate(tokenizer, config)`; for the DoIT kind the tokenizer gains the three special
    tokens (in place), so build the template before sizing a model's embeddings.
    """

    def __init__(self, tokenizer: Any, config: TemplateConfig = TemplateConfig()) -> None:
        self.tokenizer = tokenizer
        self.config = config
        if config.kind == "doit":
            add_doit_tokens(tokenizer)
            ids = tokenizer.convert_tokens_to_ids(list(DOIT_SPECIAL_TOKENS))
            self.user_id, self.assistant_id, self.eot_id = ids
        else:
            if not getattr(tokenizer, "chat_template", None):
                raise TemplateError(
                    f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat_template; "
                    "use the 'doit' template kind for base models without one"
                )
            if not getattr(tokenizer, "is_fast", False):
                raise TemplateError("the 'native' template needs a fast tokenizer (character offsets)")
            if tokenizer.pad_token is None and tokenizer.eos_token is not None:
                tokenizer.pad_token = tokenizer.eos_token

    @property
    def template_hash(self) -> str:
        return template_hash(self.config, self.tokenizer)

    # ----------------------------------------------------------------------------------------- training
    def encode(self, messages: Any, train_on: Literal["all", "last"] | None = None) -> EncodedSample:
        """Token ids and labels of one conversation (loss on assistant turns as `train_on` says)."""
        return self.encode_batch([messages], train_on)[0]

    def encode_batch(
        self, conversations: Iterable[Any], train_on: Literal["all", "last"] | None = None
    ) -> list[EncodedSample]:
        """`encode` for many conversations; DoIT contents go through the tokenizer in one batched call."""
        train_on = train_on or self.config.train_on
        convs = [self._checked(normalize_messages(c)) for c in conversations]
        if self.config.kind == "native":
            return [self._encode_native(c, train_on) for c in convs]
        contents = [content for conv in convs for _, content in conv]
        token_lists = self._tokenize(contents) if contents else []
        out, k = [], 0
        for conv in convs:
            out.append(self._assemble_doit(conv, token_lists[k : k + len(conv)], train_on))
            k += len(conv)
        return out

    def _assemble_doit(
        self, conv: tuple[Message, ...], token_lists: list[list[int]], train_on: str
    ) -> EncodedSample:
        last_assistant = max((i for i, (r, _) in enumerate(conv) if r == "assistant"), default=-1)
        ids: list[int] = []
        labels: list[int] = []
        num_trained = 0
        for i, ((role, _), tokens) in enumerate(zip(conv, token_lists, strict=True)):
            ids.append(self.user_id if role == "user" else self.assistant_id)
            ids.extend(tokens)
            ids.append(self.eot_id)
            trained = role == "assistant" and (train_on == "all" or i == last_assistant)
            labels.append(IGNORE_INDEX)  # the role token itself is never trained
            labels.extend(tokens if trained else [IGNORE_INDEX] * len(tokens))
            labels.append(self.eot_id if trained else IGNORE_INDEX)
            num_trained += len(tokens) + 1 if trained else 0
        return EncodedSample(ids, labels, num_trained)

    def _encode_native(self, conv: tuple[Message, ...], train_on: str) -> EncodedSample:
        full = self._render(conv, generation_prompt=False)
        spans = []
        turns = [i for i, (r, _) in enumerate(conv) if r == "assistant"]
        for i in turns if train_on == "all" else turns[-1:]:
            if i == 0:
                raise TemplateError(
                    "a conversation must start with a user (or system) message, not the assistant"
                )
            start = self._render(conv[:i], generation_prompt=True)
            end = self._render(conv[: i + 1], generation_prompt=False)
            if not (full.startswith(start) and full.startswith(end) and len(start) <= len(end)):
                raise TemplateError(
                    "the tokenizer's chat template renders a prefix of the conversation differently from the "
                    "whole (it depends on later turns), so the assistant loss mask cannot be derived; "
                    "use the 'doit' template kind"
                )
            spans.append((len(start), len(end.rstrip())))
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [IGNORE_INDEX] * len(ids)
        for t, (a, b) in enumerate(enc["offset_mapping"]):
            if b > a and any(s <= a < e for s, e in spans):
                labels[t] = ids[t]
        return EncodedSample(ids, labels, sum(label != IGNORE_INDEX for label in labels))

    # ---------------------------------------------------------------------------------------- inference
    def encode_prompt(self, messages: Any) -> list[int]:
        """Prompt ids for generation or scoring: the dialogue followed by the assistant role (`<assistant>`)."""
        conv = self._checked(normalize_messages(messages))
        if conv and conv[-1][0] == "assistant":
            raise TemplateError("a prompt must end with a user message (the model writes the assistant turn)")
        if self.config.kind == "native":
            return self._tokenize([self._render(conv, generation_prompt=True)])[0]
        ids = self.encode_batch([conv])[0].input_ids if conv else []
        return ids + [self.assistant_id]

    def batch_prompts(
        self, conversations: Iterable[Any], return_tensors: str | None = None
    ) -> dict[str, Any]:
        """Left-padded prompts for batched generation: `input_ids` and `attention_mask` (lists, or torch "pt")."""
        prompts = [self.encode_prompt(c) for c in conversations]
        width = max((len(p) for p in prompts), default=0)
        pad = self.tokenizer.pad_token_id
        input_ids = [[pad] * (width - len(p)) + p for p in prompts]
        attention_mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        if return_tensors == "pt":
            import torch

            return {
                "input_ids": torch.tensor(input_ids, dtype=torch.long),
                "attention_mask": torch.tensor(attention_mask, dtype=torch.long),
            }
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def stop_token_ids(self) -> list[int]:
        """Ids that end generation: eos, and `<eot>`/`<user>`/`<assistant>` (DoIT) or the turn end (native)."""
        stops = {self.tokenizer.eos_token_id} - {None}
        if self.config.kind == "doit":
            stops |= {self.eot_id, self.user_id, self.assistant_id}
        else:  # the last trained token of a probe turn is the end-of-turn marker, when it is a special token
            probe = self.encode([("user", "1"), ("assistant", "2")])
            last = [
                t for t, label in zip(probe.input_ids, probe.labels, strict=True) if label != IGNORE_INDEX
            ]
            if last and last[-1] in set(self.tokenizer.all_special_ids) | set(self._added_special_ids()):
                stops.add(last[-1])
        return sorted(stops)

    # ------------------------------------------------------------------------------------------ internals
    def _checked(self, conv: tuple[Message, ...]) -> tuple[Message, ...]:
        """The conversation with stripped contents (DoIT's `content.strip()`, kept for "native" too)."""
        allowed = ("user", "assistant") if self.config.kind == "doit" else ("system", "user", "assistant")
        for i, (role, _) in enumerate(conv):
            if role not in allowed:
                hint = " (the DoIT template has no system prompt)" if role == "system" else ""
                raise TemplateError(f"message {i} has role {role!r}; allowed: {', '.join(allowed)}{hint}")
        return tuple((role, content.strip()) for role, content in conv)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text, no special tokens added. A fast tokenizer's Rust backend is called directly
        (much less Python work: no attention masks, no padding logic) unless its saved state pads or
        truncates, which only the transformers wrapper knows to switch off."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and backend.padding is None and backend.truncation is None:
            encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # _fast: no char offsets
            return [e.ids for e in encode(texts, add_special_tokens=False)]
        return [list(x) for x in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _render(self, conv: Sequence[Message], generation_prompt: bool) -> str:
        msgs = [{"role": r, "content": c} for r, c in conv]
        return self.tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=generation_prompt
        )

    def _added_special_ids(self) -> list[int]:
        decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        return [i for i, tok in decoder.items() if getattr(tok, "special", False)]


def template_hash(config: TemplateConfig, tokenizer: Any = None) -> str:
    """Content hash of a template: its config, the format version and, for "native", the template text."""
    payload: dict[str, Any] = {"version": TEMPLATE_FORMAT_VERSION, **asdict(config)}
    if config.kind == "doit":
        payload["special_tokens"] = list(DOIT_SPECIAL_TOKENS)
        payload["strip_content"] = True
    else:
        if tokenizer is None:
            raise TemplateError(
                "the hash of a 'native' template needs the tokenizer (its chat_template text)"
            )
        payload["chat_template"] = tokenizer.chat_template
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()
