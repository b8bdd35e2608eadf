"""GPU check, eval part: the same items through the native loop and vLLM on one GPU, verdicts compared, speeds.

    python tools/gpu_check_eval.py                # on a GPU node with vLLM (called by tools/gpu-check.sh)
    python tools/gpu_check_eval.py --dry-run      # anywhere: CPU, no vLLM (vLLM's requests are built, not run)

A random-init Llama of a size preset (default `small`) with the built-in tokenizer and the DoIT template is
written as a bf16 HF folder; items are MC (biology, reasoning: generation + answer-letter log-probs) and math
(chain of thought) from a generated demo study. Each engine answers every item; each item is scored by the
study's rules (`results.score_evidence`, mode doit) and the verdicts (correct, parsed answer) are compared.
Every item whose verdict differs is listed with both replies and the largest letter log-prob gap (bf16 kernels
of the two engines differ in summation order, so a near-tie between two letters can flip).
Speeds: items/s of native, of vLLM, and of the DoIT-style loop (one item at a time, `model.generate`).
In a dry run vLLM's requests are built and checked against the native prompts, and its speed is reported as 0;
`agree` then compares native with the DoIT-style loop. The last line is machine-readable:
    RESULT gpu_eval native_items_s=<x> vllm_items_s=<y> doit_items_s=<z> agree=<fraction>
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import torch  # noqa: E402

from hpc_instruct.data.demo import write_demo_study  # noqa: E402
from hpc_instruct.data.template import ChatTemplate, TemplateConfig  # noqa: E402
from hpc_instruct.data.tokenizer import load_tokenizer  # noqa: E402
from hpc_instruct.evaluate.inference import Generated, Inference, InferenceConfig, letter_token_ids  # noqa: E402
from hpc_instruct.evaluate.results import score_evidence  # noqa: E402
from hpc_instruct.evaluate.sets import LETTER_FORMATS, load_eval_set  # noqa: E402
from hpc_instruct.train.presets import preset  # noqa: E402


def model_folder(name: str, folder: Path, template: ChatTemplate) -> Path:
    from transformers import AutoModelForCausalLM

    from hpc_instruct.train.megatron.convert import hf_config

    torch.manual_seed(0)
    shape = replace(preset(name), vocab_size=len(template.tokenizer))
    AutoModelForCausalLM.from_config(hf_config(shape)).to(torch.bfloat16).save_pretrained(str(folder))
    template.tokenizer.save_pretrained(str(folder))
    return folder


def verdicts(items, answers: list[Generated]) -> list[tuple[bool, str]]:
    out = []
    for it, g in zip(items, answers, strict=True):
        s = score_evidence(it.format, g.text, it.reference, letter_logprobs=g.letter_logprobs or None, mode="doit")
        out.append((s.correct, s.parsed))
    return out


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, no vLLM: build vLLM's requests, do not run them")
    parser.add_argument("--model", default=None, help="size preset (default: small on a GPU, tiny in a dry run)")
    parser.add_argument("--items", type=int, default=None, help="default: 256 on a GPU, 12 in a dry run")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: 128 on a GPU, 6 in a dry run")
    args = parser.parse_args()
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    if not dry and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run", file=sys.stderr)
        return 2
    name, n, new = args.model or ("tiny" if dry else "small"), args.items or (12 if dry else 256), \
        args.max_new_tokens or (6 if dry else 128)
    if dry:
        torch.set_num_threads(1)
    template = ChatTemplate(load_tokenizer("builtin"), TemplateConfig("doit"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_demo_study(root / "data", seed=0, pool_size=8, synthetic_size=8)
        per = math.ceil(n / 3)
        items = [it for s in ("biology", "reasoning", "math") for it in load_eval_set(root / "data", s, "valid").items[:per]][:n]
        prompts = [it.prompt for it in items]
        letters = [it.option_letters if it.format in LETTER_FORMATS else "" for it in items]
        folder = model_folder(name, root / "model", template)
        from transformers import AutoModelForCausalLM

        dtype = torch.float32 if dry else torch.bfloat16
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device).eval()
        engine = Inference(model, template, InferenceConfig(batch_size=None, max_new_tokens=new))
        engine.generate(prompts[:2], letters[:2])  # warm-up (kernels, allocator)
        native, t_native = timed(lambda: engine.generate(prompts, letters))
        from bench_eval import doit_generate

        doit_n = min(len(items), 8 if dry else 32)  # one item at a time is slow: time a subset
        doit_texts, t_doit = timed(lambda: doit_generate(model, template, items[:doit_n], new))
        if dry:
            from hpc_instruct.evaluate.vllm_engine import generation_requests, letter_requests

            encoded = [template.encode_prompt(p) for p in prompts]
            gen = generation_requests(encoded, template.stop_token_ids(), new)
            asked = letter_requests(encoded, [letter_token_ids(template, s) if s else [] for s in letters])
            assert [list(r.prompt_token_ids) for r in gen] == encoded
            print(f"dry run: {len(gen)} vLLM generation requests and {len(asked)} letter requests built; not run")
            same = sum(g.text == t for g, t in zip(native[:doit_n], doit_texts, strict=True))
            agree, t_vllm, differences = same / doit_n, math.inf, []
        else:
            from hpc_instruct.evaluate.vllm_engine import VllmEngine

            del model, engine
            torch.cuda.empty_cache()
            fast = VllmEngine(folder, template, new, gpu_memory_utilization=0.6)
            fast.generate(prompts[:2], letters[:2])
            answers, t_vllm = timed(lambda: fast.generate(prompts, letters))
            a, b = verdicts(items, native), verdicts(items, answers)
            differences = [(it, x, y, g, h) for it, x, y, g, h in zip(items, a, b, native, answers, strict=True) if x != y]
            agree = 1 - len(differences) / len(items)
            same_text = sum(g.text == h.text for g, h in zip(native, answers, strict=True))
            print(f"identical replies {same_text}/{len(items)}; identical verdicts {len(items) - len(differences)}/{len(items)}")
        for it, x, y, g, h in differences:
            gap = max((abs(p - q) for p, q in zip(g.letter_logprobs, h.letter_logprobs, strict=False)), default=0.0)
            print(f"  differs {it.uid} ({it.format}): native {x} {g.text[:40]!r} | vllm {y} {h.text[:40]!r} | "
                  f"max letter log-prob gap {gap:.3f}")
    native_s, vllm_s, doit_s = len(items) / t_native, (0.0 if dry else len(items) / t_vllm), doit_n / t_doit
    print(f"model {name} on {device}: {len(items)} items, max_new_tokens {new}")
    print(f"{'engine':8} {'items/s':>9} {'vs DoIT':>8}")
    for label, rate in (("native", native_s), ("vllm", vllm_s), ("doit", doit_s)):
        print(f"{label:8} {rate:9.2f} {rate / doit_s:7.1f}x")
    print(f"RESULT gpu_eval native_items_s={native_s:.2f} vllm_items_s={vllm_s:.2f} doit_items_s={doit_s:.2f} "
          f"agree={agree:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
