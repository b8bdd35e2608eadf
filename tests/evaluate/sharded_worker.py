"""One eval process of the tensor-parallel test: load the model (split over the process group when torchrun
started several ranks), answer MC items by generation with letter log-probs and rank3 items by perplexity, and
write what rank 0 computed as JSON. Usage: sharded_worker.py MODEL_FOLDER DATA_ROOT OUT_JSON."""

from __future__ import annotations

import json
import sys

import torch

from hpc_instruct.evaluate.checkpoints import Checkpoint, load_checkpoint
from hpc_instruct.evaluate.inference import Inference, InferenceConfig
from hpc_instruct.evaluate.sets import load_eval_set
from hpc_instruct.evaluate.sharded import load_tensor_parallel, world


def main(folder: str, data_root: str, out: str) -> None:
    torch.set_num_threads(1)
    ckpt = Checkpoint("epoch-001", 1, 1, "", "export", folder, folder)
    rank, size = world()
    loaded = load_tensor_parallel(ckpt, "doit", None, "cpu") if size > 1 else load_checkpoint(ckpt, "doit", None, "cpu")
    q = loaded.model.model.layers[0].self_attn.q_proj.weight
    local_rows = (q.to_local() if hasattr(q, "to_local") else q).shape[0]
    mc = load_eval_set(data_root, "understanding", "valid").items[:6]
    ranked = load_eval_set(data_root, "code", "test").items[:4]
    engine = Inference(loaded.model, loaded.template, InferenceConfig(batch_size=4, max_new_tokens=8))
    gen = engine.generate([it.prompt for it in mc], [it.option_letters for it in mc])
    ppl = engine.rank([it.prompt for it in ranked], [it.candidates for it in ranked])
    if rank == 0:
        result = {"world": size, "local_q_rows": local_rows, "full_q_rows": q.shape[0],
                  "texts": [g.text for g in gen], "tokens": [g.response_tokens for g in gen],
                  "stopped": [g.stopped for g in gen], "letter_logprobs": [list(g.letter_logprobs) for g in gen],
                  "perplexities": [list(r.perplexities) for r in ppl]}
        with open(out, "w") as fh:
            json.dump(result, fh)


if __name__ == "__main__":
    main(*sys.argv[1:4])
