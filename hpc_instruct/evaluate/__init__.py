"""The eval stage: one Parquet shard per (checkpoint, eval set, item range), and rescoring without a model.

Modules (importing this package imports none of them; torch only where marked):
- `sets`: eval sets in the DoIT record format -> `EvalItem`s (format, reference, options, few-shot prompts).
- `partition`: shard ranges per set sized by cost, and packing of small shards into array elements.
- `inference` (torch): batched greedy generation with answer-position letter log-probs; candidate ranking;
  `generation`: its decode loop (host checks every k tokens, static KV cache, batch size from memory).
- `engines`: `evaluation.engine` (auto | native | vllm) resolved from the recipe; `vllm_engine`: generation
  with vLLM (requests built and outputs read without vLLM); `sharded` (torch): a model split over the task's
  GPUs by tensor parallelism; `throughput`: the per-shard time model behind the plan's eval bill.
- `checkpoints` (torch when loading): which weights a task evaluates (`epoch-NNN`, `base`, `selected`).
- `results`: scoring from stored evidence, the exact-schema Parquet writer and reader.
- `task`: `run_eval(ctx)`, the stage function behind `python -m hpc_instruct.launch.entry eval STUDY TASK`.
- `rescore`: `rescore_study(study_dir)` recomputes scores from stored predictions (login node, no torch).
- `result_schema`: the versioned row schema; `scoring/`: the per-format scorers.
"""
