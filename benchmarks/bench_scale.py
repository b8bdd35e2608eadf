"""True-size simulation speed and memory-model accuracy (hpc_instruct.train.scale).

    .venv/bin/python benchmarks/bench_scale.py             # measured figures from benchmarks/scale_measured.json
    .venv/bin/python benchmarks/bench_scale.py --measure   # re-measure them first (~2 min, torchrun on CPU)

Side by side in one run: (1) every megatron layout of recipes/doit.yaml simulated afresh (megatron-core's
per-rank models on the meta device in a fake process group of the real world size, every tensor rank) with its
memory verdict; (2) a generated sweep of 200 distinct layouts (Llama 7B-70B and Qwen2 shapes, TP/PP/VPP/DP, world
size up to 64), simulated as `hpci plan` does on a cache miss (TP ranks 0 and tp-1 of each stage), against the
closed-form counts of the same layouts (the baseline: same answer, no megatron). (3) The model against the
measurement of tests/train/test_scale_measure.py: static bytes (weights + gradient buffers + optimizer state)
of every rank of a real TP2 x PP2 x DP2 step, and activations saved by one forward at three shapes x three
recompute modes. The measured figures are stored in benchmarks/scale_measured.json (written by `--measure`,
which runs tests/train/memory_worker.py); the model side is recomputed here, so a model change shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "train")]

from hpc_instruct.recipe.memory_checks import train_setup  # noqa: E402
from hpc_instruct.recipe.study import load_study  # noqa: E402
from hpc_instruct.train.presets import PRESETS  # noqa: E402
from hpc_instruct.train.scale.fit import check_train  # noqa: E402
from hpc_instruct.train.scale.gpu import GPU_PRESETS  # noqa: E402
from hpc_instruct.train.scale.memory import TrainSetup  # noqa: E402
from hpc_instruct.train.scale.ranks import LayoutKey, closed_form  # noqa: E402

MEASURED = Path(__file__).with_name("scale_measured.json")
SWEEP_SHAPES = ["7b", "13b", "33b", "70b", "qwen2-7b", "qwen2-1.5b"]
N_SWEEP = 200


def sweep_layouts() -> list[tuple[str, int, int, int, int]]:
    """200 distinct (preset, tp, pp, vpp, dp) with world <= 64, spread evenly over every valid combination."""
    every = []
    for name in SWEEP_SHAPES:
        s = PRESETS[name]
        for tp in (1, 2, 4, 8):
            for pp in (1, 2, 4, 8):
                for vpp in (1, 2, 5) if pp > 1 else (1,):
                    key = LayoutKey(s, tp, pp, vpp)
                    for dp in (1, 2, 4, 8):
                        if not key.problems() and tp * pp * dp <= 64:
                            every.append((name, tp, pp, vpp, dp))
    step = len(every) / N_SWEEP
    chosen = [every[int(i * step)] for i in range(N_SWEEP)]
    assert len(set(chosen)) == N_SWEEP, len(every)
    return chosen


def sweep_setup(name: str, tp: int, pp: int, vpp: int, dp: int) -> TrainSetup:
    return TrainSetup(LayoutKey(PRESETS[name], tp, pp, vpp), dp=dp, nodes=max(1, tp * pp * dp // 8), micro_batch=1,
                      global_batch=64, seq_len=2048, precision="bf16", recompute="full",
                      sequence_parallel=tp > 1, distributed_optimizer=True)


def run_sweep(layouts: list, simulated: bool) -> tuple[float, int]:
    """Seconds for every layout's per-rank parameters plus memory verdict; how many fit an H100."""
    from hpc_instruct.train.scale.simulate import simulate

    gpu, fits = GPU_PRESETS["h100-80g"], 0
    start = time.perf_counter()
    for layout in layouts:
        setup = sweep_setup(*layout)
        ranks = simulate(setup.key, setup.dp, every_tensor_rank=False) if simulated else closed_form(setup.key)
        fits += check_train(setup, gpu, 2048, lambda _key, r=ranks: r).gpu_ok
    return time.perf_counter() - start, fits


def run_doit() -> tuple[float, list[str]]:
    """Every megatron layout of recipes/doit.yaml simulated afresh (every tensor rank), with its verdict."""
    from hpc_instruct.train.scale.simulate import simulate

    study = load_study(ROOT / "recipes" / "doit.yaml", env={})
    ex, rows = study.recipe.execution, []
    start = time.perf_counter()
    for m in study.recipe.models:
        if m.device != "cuda" or m.backend != "megatron":
            continue
        setup = train_setup(m, study.shapes[m.name], study.recipe)
        ranks = simulate(setup.key, setup.dp)
        assert ranks == closed_form(setup.key)
        fit = check_train(setup, ex.gpu_spec(), ex.train.mem_gb, lambda _key, r=ranks: r)
        stage, worst = fit.fullest
        rows.append(f"  {m.name:<10} tp{m.tp} pp{m.pp} vpp{m.vpp} dp{m.dp} (world {setup.world:>2}): {len(ranks)} "
                    f"ranks, fullest pp rank {stage}: {worst.gib:5.1f} of {fit.gpu.memory_gib:.0f} GiB "
                    f"{'fits' if fit.ok else 'DOES NOT FIT'}")
    return time.perf_counter() - start, rows


def measure() -> None:
    """Run the measurements of tests/train/test_scale_measure.py and store their reports in MEASURED."""
    from test_scale_measure import ACTIVATION_SPECS, STATIC_LAYOUTS

    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scenario, nproc, args in (("static", 8, STATIC_LAYOUTS), ("activations", 1, ACTIVATION_SPECS)):
            out = Path(tmp) / f"{scenario}.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   str(ROOT / "tests" / "train" / "memory_worker.py"), scenario, str(out), *args]
            env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
            subprocess.run(cmd, cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            report[scenario] = json.loads(out.read_text())
    MEASURED.write_text(json.dumps(report, indent=1) + "\n")


def errors() -> tuple[float, float, list[str]]:
    """Max relative error of the model's static bytes and activations against the stored measurement."""
    from test_scale_measure import modelled_activations, modelled_static

    data = json.loads(MEASURED.read_text())
    rows, static_err = [], 0.0
    for e in data["static"]:
        model = sum(modelled_static(e))
        measured = e["weights"] + e["grads"] + e["optimizer"]
        static_err = max(static_err, abs(model - measured) / measured)
        if (e["dp_rank"], e["tp_rank"]) == (0, 0) or e["pp_rank"] == 1 and e["tp_rank"] == 0:
            rows.append(f"  static {e['layout']:<18} {e['shape']:<10} pp{e['pp_rank']} tp{e['tp_rank']} "
                        f"dp{e['dp_rank']}: model {model:>9,} B  measured {measured:>9,} B")
    act_err = 0.0
    for e in data["activations"]:
        _, model = modelled_activations(e)
        measured = sum(e["regions"].values())
        act_err = max(act_err, abs(model - measured) / measured)
        rows.append(f"  activations {e['spec']:<26} model {model:>11,} B  measured {measured:>11,} B  "
                    f"{model / measured - 1:+.2%}")
    return static_err, act_err, rows


def main() -> None:
    warnings.simplefilter("ignore")
    if "--measure" in sys.argv:
        measure()
    from hpc_instruct.train.scale.simulate import simulate

    simulate(LayoutKey(PRESETS["7b"]))  # imports and megatron's first-build caches, outside the timings
    layouts = sweep_layouts()
    doit_s, doit_rows = run_doit()
    print(f"recipes/doit.yaml: {len(doit_rows)} megatron layouts simulated in {doit_s:.2f} s")
    print("\n".join(doit_rows))
    closed_s, closed_fits = run_sweep(layouts, simulated=False)
    sim_s, sim_fits = run_sweep(layouts, simulated=True)
    assert sim_fits == closed_fits
    worlds = [tp * pp * dp for _, tp, pp, _, dp in layouts]
    print(f"sweep: {len(layouts)} distinct layouts ({len(SWEEP_SHAPES)} shapes up to 70B, world {min(worlds)}-"
          f"{max(worlds)}), {sim_fits} fit an h100-80g")
    print(f"  simulated (megatron-core on meta) {sim_s:7.2f} s  {sim_s / len(layouts) * 1000:6.1f} ms/layout")
    print(f"  closed form (baseline)            {closed_s:7.2f} s  {closed_s / len(layouts) * 1000:6.1f} ms/layout"
          f"  -> simulation costs x{sim_s / closed_s:.0f}")
    static_err, act_err, rows = errors()
    print(f"model vs measurement ({MEASURED.name}):")
    print("\n".join(rows))
    print(f"RESULT bench_scale layouts={len(layouts)} sim_s={sim_s:.2f} doit_s={doit_s:.2f} "
          f"static_err={static_err:.4g} act_err={act_err:.4g}")


if __name__ == "__main__":
    main()
