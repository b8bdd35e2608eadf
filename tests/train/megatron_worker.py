"""Multi-process scenarios for the Megatron backend tests, launched by test_megatron.py under torchrun.

    python -m torch.distributed.run --standalone --nproc_per_node=N tests/train/megatron_worker.py \
        SCENARIO OUT.json [ARGS...]

Each scenario runs one or more parallel layouts in the same process group (re-creating megatron's groups per
layout) and rank 0 writes a JSON report. Layout names: dash-joined parts `tpN`, `ppN`, `vppN`, `sp`
(sequence parallel), `dist` (distributed optimizer), `full`/`selective` (recompute), `overlap` (DP
communication overlapped with compute, as on GPUs); the rest of the world is
DP. `tp1` is the single-process reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from megatron.core import parallel_state

from hpc_instruct.train.megatron import checkpoint, convert, parallel
from hpc_instruct.train.megatron.model import ModelOptions, ParallelLayout, build_model
from hpc_instruct.train.presets import ModelShape

# Tiny shapes: GQA llama with a vocabulary that needs padding (250 -> 256), tied-embedding qwen2 with biases.
LLAMA = ModelShape("llama", 4, 64, 4, 2, 176, 250, 128, rotary_base=50000.0, norm_epsilon=1e-5)
QWEN2 = ModelShape(
    "qwen2", 4, 64, 4, 2, 176, 256, 128, rotary_base=1e6, norm_epsilon=1e-6, tie_embeddings=True
)
SEQ = 32


def parse_layout(name: str) -> tuple[ParallelLayout, ModelOptions, parallel.OptimizerSettings]:
    parts = name.split("-")
    number = {p.rstrip("0123456789"): int(p[len(p.rstrip("0123456789")) :]) for p in parts if p[-1].isdigit()}
    layout = ParallelLayout(
        tensor=number.get("tp", 1),
        pipeline=number.get("pp", 1),
        virtual_pipeline=number.get("vpp"),
        sequence_parallel="sp" in parts,
    )
    recompute = "full" if "full" in parts else "selective" if "selective" in parts else None
    settings = parallel.OptimizerSettings(
        lr=3e-3,
        weight_decay=0.01,
        distributed_optimizer="dist" in parts,
        overlap_communication=True if "overlap" in parts else None,  # forced on: GPU-only by default
    )
    return layout, ModelOptions(recompute=recompute), settings


def reference_hf(shape: ModelShape, seed: int = 0) -> torch.nn.Module:
    """A random HF model of `shape`; norms and biases randomised too, so a mix-up in their mapping shows."""
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = (Qwen2ForCausalLM if shape.family == "qwen2" else LlamaForCausalLM)(
        convert.hf_config(shape)
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    return model


def training_batch(vocab: int) -> list[parallel.MicroBatch]:
    """4 rows of SEQ tokens (collate_packed's format): two plain rows, two packed with 2-3 samples.

    Each sample's first 3 tokens are its "prompt" (label -100), so no target crosses a sample boundary.
    """
    g = torch.Generator().manual_seed(1234)
    rows = []
    for r, lengths in enumerate([[SEQ], [SEQ], [10, 12, 10], [7, 25]]):
        input_ids = torch.randint(0, vocab, (1, SEQ), generator=g)
        labels = input_ids.clone()
        starts = torch.tensor([0, *lengths[:-1]]).cumsum(0)
        for start in starts:
            labels[0, start : start + 3] = -100
        batch = {"input_ids": input_ids, "labels": labels}
        if r >= 2:
            batch["segment_ids"] = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
        rows.append(batch)
    return rows


def _all_ok(flag: bool) -> bool:
    t = torch.tensor([0 if flag else 1])
    torch.distributed.all_reduce(t)
    return int(t) == 0


def _gathered_keys(state: dict) -> set[str]:
    keys: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(keys, sorted(state))
    return {k for part in keys for k in part}


def _max_over_ranks(value: float) -> float:
    t = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t)


def scenario_parity(layouts: list[str], out_dir: Path) -> dict:
    """Logits and loss vs HF for both families and each layout; exact round trip through an HF folder."""
    from transformers import AutoModelForCausalLM

    report = {}
    for shape in (LLAMA, QWEN2):
        hf = reference_hf(shape)
        hf_state = hf.state_dict()
        batches = training_batch(shape.vocab_size)[:2]  # the unpacked rows: HF needs no mask for them
        tokens = torch.cat([b["input_ids"] for b in batches])
        with torch.no_grad():
            out = hf(tokens, labels=torch.cat([b["labels"] for b in batches]))
            ref, ref_loss = out.logits, float(out.loss)
        for name in layouts:
            layout, options, settings = parse_layout(name)
            parallel.initialize(layout, seed=7)
            chunks = build_model(shape, layout, options)
            convert.load_hf_weights(chunks, shape, hf_state)
            logits = parallel.forward_logits(chunks, batches)
            diff = 0.0
            if logits is not None:
                diff = float((torch.cat(logits)[..., : shape.vocab_size] - ref).abs().max())
            state = convert.gather_hf_state(chunks, shape)
            exact = all(torch.equal(v, hf_state[k]) for k, v in state.items())
            keys = _gathered_keys(state)
            folder = out_dir / f"{shape.family}-{name}"
            convert.save_hf_folder(chunks, shape, folder)
            loss = parallel.Trainer(chunks, settings).eval_loss(batches)
            parallel.teardown(keep_process_group=True)
            exported_diff = None
            if torch.distributed.get_rank() == 0:
                again = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
                with torch.no_grad():
                    exported_diff = float((again(tokens).logits - ref).abs().max())
                exact = exact and all(torch.equal(v, hf_state[k]) for k, v in again.state_dict().items())
            expected = set(hf_state) - ({"lm_head.weight"} if shape.tie_embeddings else set())
            report[f"{shape.family}/{name}"] = {
                "max_logit_diff": _max_over_ranks(diff),
                "loss_diff": abs(loss - ref_loss),
                "round_trip_exact": _all_ok(exact) and keys == expected,
                "exported_logit_diff": exported_diff,
            }
    return report


def scenario_packing() -> dict:
    """A packed row (block-diagonal mask) gives each sample the logits it gets alone in HF."""
    hf = reference_hf(LLAMA)
    layout = ParallelLayout()
    parallel.initialize(layout, seed=7)
    chunks = build_model(LLAMA, layout)
    convert.load_hf_weights(chunks, LLAMA, hf.state_dict())
    packed = training_batch(LLAMA.vocab_size)[2]
    (logits,) = parallel.forward_logits(chunks, [packed])
    diff = 0.0
    for segment in packed["segment_ids"].unique():
        keep = packed["segment_ids"][0] == segment
        with torch.no_grad():
            alone = hf(packed["input_ids"][:, keep]).logits
        diff = max(diff, float((logits[:, keep, : LLAMA.vocab_size] - alone).abs().max()))
    parallel.teardown(keep_process_group=True)
    return {"packed_vs_alone_max_diff": diff}


def scenario_train(layouts: list[str], steps: int = 3) -> dict:
    """Loss per step (and eval loss after) for each layout, from the same converted init and data."""
    hf_state = reference_hf(LLAMA).state_dict()
    report = {}
    for name in layouts:
        layout, options, settings = parse_layout(name)
        parallel.initialize(layout, seed=7)
        chunks = build_model(LLAMA, layout, options)
        convert.load_hf_weights(chunks, LLAMA, hf_state)  # before wrapping: DDP/optimizer copy the params
        trainer = parallel.Trainer(chunks, settings)
        # Each DP rank takes its share of the global batch's micro-batches.
        mine = training_batch(LLAMA.vocab_size)[
            parallel_state.get_data_parallel_rank() :: parallel_state.get_data_parallel_world_size()
        ]
        losses = [trainer.train_step(mine)[0] for _ in range(steps)]
        report[name] = {"losses": losses, "eval": trainer.eval_loss(mine)}
        parallel.teardown(keep_process_group=True)
    return report


def scenario_checkpoint_save(ckpt: Path, ref: Path) -> dict:
    """Train one step at TP=2, save (dist checkpoint + HF reference), reload under other layouts and compare.

    `tp1` on these 2 ranks is TP=1 x DP=2: every rank loads the whole unsharded model.
    """
    layout, options, settings = parse_layout("tp2")
    parallel.initialize(layout, seed=7)
    chunks = build_model(LLAMA, layout, options)
    convert.load_hf_weights(chunks, LLAMA, reference_hf(LLAMA).state_dict())
    trainer = parallel.Trainer(chunks, settings)
    trainer.train_step(training_batch(LLAMA.vocab_size))
    checkpoint.save_model(trainer.chunks, ckpt)
    convert.save_hf_folder(trainer.chunks, LLAMA, ref)
    parallel.teardown(keep_process_group=True)
    return {name: _load_and_compare(name, ckpt, ref) for name in ("pp2", "pp2-vpp2", "tp1")}


def _load_and_compare(name: str, ckpt: Path, ref: Path) -> dict:
    layout, options, _ = parse_layout(name)
    parallel.initialize(layout, seed=99)  # a different random init, overwritten by the load
    chunks = build_model(LLAMA, layout, options)
    checkpoint.load_model(chunks, ckpt)
    state = convert.gather_hf_state(chunks, LLAMA)
    expected = convert.HFWeights(ref)
    identical = all(torch.equal(v, expected[k]) for k, v in state.items())
    keys = _gathered_keys(state)
    parallel.teardown(keep_process_group=True)
    return {"identical": _all_ok(identical) and keys == set(expected), "tensors": len(keys)}


def scenario_smollm2(gguf: Path, layouts: list[str], work: Path) -> dict:
    """The real SmolLM2-135M-Instruct: HF (from GGUF) vs Megatron logits per layout, and the round trip."""
    from transformers import AutoModelForCausalLM

    folder, prompt = (
        work / "hf",
        torch.tensor([[1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 30, 2, 198, 1, 4093]]),
    )
    if torch.distributed.get_rank() == 0:
        hf = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        ).eval()
        # A GGUF-loaded model refuses save_pretrained: write its (dequantised) tensors and config directly.
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tied = hf.config.tie_word_embeddings
        state = {
            k: v.contiguous() for k, v in hf.state_dict().items() if not (tied and k == "lm_head.weight")
        }
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(hf.config.to_json_string())
        with torch.no_grad():
            torch.save(hf(prompt).logits, work / "ref.pt")
    torch.distributed.barrier()
    ref = torch.load(work / "ref.pt")
    shape = convert.shape_from_hf_config(json.loads((folder / "config.json").read_text()))
    weights = convert.HFWeights(folder)
    batch = [{"input_ids": prompt}]
    report = {"shape": repr(shape)}
    for name in layouts:
        layout, options, _ = parse_layout(name)
        parallel.initialize(layout, seed=7)
        chunks = build_model(shape, layout, options)
        convert.load_hf_weights(chunks, shape, weights)
        logits = parallel.forward_logits(chunks, batch)
        diff = float((logits[0][..., : shape.vocab_size] - ref).abs().max()) if logits is not None else 0.0
        state = convert.gather_hf_state(chunks, shape)
        exact = all(torch.equal(v, weights[k]) for k, v in state.items())
        keys = _gathered_keys(state)
        parallel.teardown(keep_process_group=True)
        report[name] = {
            "max_logit_diff": _max_over_ranks(diff),
            "round_trip_exact": _all_ok(exact) and keys == set(weights),
        }
    return report


def main(argv: list[str]) -> None:
    scenario, out = argv[0], Path(argv[1])
    parallel.initialize(ParallelLayout(), seed=0)  # starts the process group; each scenario re-lays out
    parallel.teardown(keep_process_group=True)
    if scenario == "parity":
        report = scenario_parity(argv[2:], out.parent)
        report.update(scenario_packing() if torch.distributed.get_world_size() == 1 else {})
    elif scenario == "train":
        report = scenario_train(argv[2:])
    elif scenario == "checkpoint-save":
        report = scenario_checkpoint_save(Path(argv[2]), Path(argv[3]))
    elif scenario == "smollm2":
        report = scenario_smollm2(Path(argv[2]), argv[3:], out.parent)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    if torch.distributed.get_rank() == 0:
        out.write_text(json.dumps(report, indent=2))
    parallel.teardown()


if __name__ == "__main__":  # the guard dist_checkpointing.save needs (it spawns a Manager process)
    main(sys.argv[1:])
