"""The result row: one row per (checkpoint, eval item). Versioned; aggregation never needs the model.

Every shard of an eval task is one Parquet file with exactly these columns (in this order). Provenance columns
repeat per row (dictionary-encoded by Parquet, so they cost almost nothing) so any number in a plot can be
traced to the exact run: study, trial and eval ids, data pin, template and tokenizer hashes, scorer and code
versions, library versions, and the generation engine (`hpc_instruct.evaluate.engines`).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 2  # 2: `engine` (which generation engine produced the row)

RESULT_SCHEMA = pa.schema([
    # identity
    pa.field("schema_version", pa.int16()),
    pa.field("study", pa.string()),
    pa.field("trial_id", pa.string()),  # trial id, or base-model id for untrained models
    pa.field("eval_task_id", pa.string()),
    pa.field("label", pa.string()),  # e.g. curated-64/llama-7b/seed0, base/llama-7b
    # what was trained
    pa.field("model", pa.string()),
    pa.field("size", pa.string()),
    pa.field("num_parameters", pa.int64()),
    pa.field("source", pa.string()),  # curated | synthetic | mix | single | base
    pa.field("mixture", pa.string()),  # JSON of the mixture request
    pa.field("samples_per_ability", pa.string()),  # JSON ability -> count actually taken
    pa.field("total_samples", pa.int64()),
    pa.field("synthetic_samples", pa.int64()),
    pa.field("seed", pa.int64()),
    # which checkpoint
    pa.field("checkpoint", pa.string()),  # epoch-003 | base | (the chosen epoch for test_on: selected)
    pa.field("epoch", pa.int32()),
    pa.field("step", pa.int64()),
    pa.field("selection_rule", pa.string()),  # "" or e.g. "max mean valid accuracy (ties: later epoch)"
    # which item
    pa.field("split", pa.string()),
    pa.field("eval_set", pa.string()),  # <ability>/<split>
    pa.field("ability", pa.string()),
    pa.field("item_id", pa.string()),  # stable content-derived uid of the item
    pa.field("item_index", pa.int64()),  # position in the eval set file
    pa.field("format", pa.string()),  # mc | true_false | cloze | multi_select | math | rank3 | code
    pa.field("question_format", pa.int8()),  # DoIT: 0 generate then parse, 1 rank candidates
    # what the model did and how it was scored
    pa.field("response", pa.string()),
    pa.field("parsed", pa.string()),
    pa.field("reference", pa.string()),
    pa.field("correct", pa.bool_()),
    pa.field("chance", pa.float64()),
    pa.field("parse_mode", pa.string()),  # one_char | logits | boxed | rank | ...
    pa.field("candidate_ppl", pa.list_(pa.float64())),  # rank formats: perplexity per candidate (reference first)
    pa.field("letter_logprobs", pa.list_(pa.float64())),  # MC: log-prob of A, B, C, ... at the answer position
    pa.field("prompt_tokens", pa.int32()),
    pa.field("response_tokens", pa.int32()),
    pa.field("latency_s", pa.float64()),
    # provenance
    pa.field("data_fingerprint", pa.string()),
    pa.field("template_hash", pa.string()),
    pa.field("tokenizer_hash", pa.string()),
    pa.field("scorer_version", pa.string()),
    pa.field("code_version", pa.string()),  # package version + git revision
    pa.field("library_versions", pa.string()),  # JSON {torch, transformers, megatron-core, ...}
    pa.field("engine", pa.string()),  # native | vllm: what generated the response (ranking is always native)
])

COLUMNS = tuple(RESULT_SCHEMA.names)
