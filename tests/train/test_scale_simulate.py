"""True-size megatron-core models on the meta device in a fake process group (hpc_instruct.train.scale)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from hpc_instruct.train.presets import PRESETS, ModelShape  # noqa: E402
from hpc_instruct.train.scale import cache  # noqa: E402
from hpc_instruct.train.scale.ranks import SIMULATION_VERSION, LayoutKey, closed_form  # noqa: E402
from hpc_instruct.train.scale.simulate import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# (preset, tp, pp, vpp, dp): every world size <= 64, TP/PP/VPP mixed; qwen2-1.5b has tied embeddings.
LAYOUTS = [
    ("7b", 1, 1, 1, 8), ("7b", 2, 4, 2, 8), ("7b", 8, 2, 1, 4),
    ("13b", 2, 1, 1, 4), ("13b", 4, 4, 5, 4), ("13b", 8, 8, 1, 1),
    ("33b", 4, 2, 1, 2), ("33b", 2, 4, 3, 8),
    ("70b", 8, 4, 1, 2), ("70b", 8, 8, 1, 1), ("70b", 4, 2, 5, 8),
    ("qwen2-7b", 4, 2, 7, 4), ("qwen2-1.5b", 2, 4, 1, 8),
]


@pytest.mark.parametrize("name,tp,pp,vpp,dp", LAYOUTS)
def test_every_rank_matches_the_closed_form_and_sums_to_the_model(name, tp, pp, vpp, dp):
    shape = PRESETS[name]
    key = LayoutKey(shape, tp, pp, vpp)
    ranks = simulate(key, dp=dp)
    assert len(ranks) == tp * pp and [(r.pp_rank, r.tp_rank) for r in ranks] == [(p, t) for p in range(pp) for t in range(tp)]
    assert ranks == closed_form(key)  # megatron-core's own shapes, count by count
    padding = (key.padded_vocab - shape.vocab_size) * shape.hidden_size * (1 if shape.tie_embeddings else 2)
    # Norm weights are replicated on every TP rank (not split): count them once per pipeline stage.
    replicated = sum(2 * shape.hidden_size * r.layers + r.final_norm for r in ranks if r.tp_rank > 0)
    assert sum(r.params - r.tied_copy for r in ranks) - replicated == shape.num_parameters + padding
    assert all(r.layers == shape.num_layers // pp for r in ranks)
    assert not torch.distributed.is_initialized()  # the fake groups are gone again


def test_tied_embeddings_over_a_pipeline_keep_a_copy_on_the_last_stage():
    ranks = simulate(LayoutKey(PRESETS["qwen2-1.5b"], 1, 2))
    assert ranks[0].embedding and not ranks[0].output_layer
    assert ranks[1].output_layer == ranks[1].tied_copy == ranks[0].embedding


def test_sampled_tensor_ranks_and_data_parallel_size_change_nothing():
    key = LayoutKey(PRESETS["13b"], 4, 2, 1)
    full = simulate(key, dp=1)
    assert simulate(key, dp=8, every_tensor_rank=False) == full


def test_impossible_layout_is_refused_before_building():
    with pytest.raises(ValueError, match="tp=3"):
        simulate(LayoutKey(PRESETS["7b"], 3, 1))


def test_simulation_allocates_nothing_and_touches_no_cuda():
    """A 70B model on one rank would be 138 GB in bf16: resident memory must not grow by even 1 GiB."""
    code = (
        "import resource, torch\n"
        "from hpc_instruct.train.presets import PRESETS\n"
        "from hpc_instruct.train.scale.ranks import LayoutKey\n"
        "from hpc_instruct.train.scale.simulate import simulate\n"
        "simulate(LayoutKey(PRESETS['7b'], 1, 1))\n"  # warm-up: imports, megatron's module caches
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "(rank,) = simulate(LayoutKey(PRESETS['70b'], 1, 1))\n"
        "grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(rank.params, grew, torch.cuda.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    params, grew_kib, cuda = out.stdout.split()
    assert int(params) == closed_form(LayoutKey(PRESETS["70b"], 1, 1))[0].params > 68e9
    assert int(grew_kib) < 2**20 and cuda == "False"


def test_shipped_layouts_equal_a_fresh_simulation():
    shipped = json.loads(cache.SHIPPED.read_text())
    assert shipped
    for entry in shipped.values():
        key = LayoutKey(**(entry["key"] | {"shape": ModelShape(**entry["key"]["shape"])}))
        assert entry["key"] == asdict(key) and entry["version"] == SIMULATION_VERSION
        assert cache._decode(entry) == simulate(key)
