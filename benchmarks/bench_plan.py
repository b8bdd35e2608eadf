"""Planning speed: expanding a generated 100,000-trial study, and `hpci plan` start-up vs `import torch`.

    .venv/bin/python benchmarks/bench_plan.py

Both start-up timings are measured side by side in this run (alternating, best of N), because absolute times
drift on a shared machine; the ratio is the figure to compare across machines.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpc_instruct.recipe.study import load_study

ROOT = Path(__file__).resolve().parents[1]
N_MODELS, N_VOLUMES, N_SEEDS = 10, 1000, 10  # 100,000 trials

RECIPE = """\
study: {{name: bench, output_root: {out}}}
models:
{models}
data:
  generate: {{pool_size: 100000, synthetic_size: 100000}}
sweep:
  seeds: {seeds}
  curated:
    samples_per_ability: {volumes}
training: {{epochs: 3, max_length: 256, precision: fp32}}
evaluation: {{splits: [valid], checkpoints: last, test_on: all, include_base: false, items_per_shard: 100}}
"""


def write_recipe(folder: Path) -> Path:
    models = "\n".join(f"  - {{name: m{i}, size: tiny, device: cpu, global_batch: 8, micro_batch: 8}}"
                       for i in range(N_MODELS))
    text = RECIPE.format(out=folder / "studies", models=models, seeds=list(range(N_SEEDS)),
                         volumes=list(range(1, N_VOLUMES + 1)))
    path = folder / "bench.yaml"
    path.write_text(text)
    return path


def best_of(n: int, cmds: list[list[str]]) -> list[float]:
    """Best wall time of each command over n alternating rounds."""
    best = [float("inf")] * len(cmds)
    for _ in range(n):
        for i, cmd in enumerate(cmds):
            t = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_recipe(Path(tmp))
        t0 = time.perf_counter()
        study = load_study(path)
        t1 = time.perf_counter()
        ex = study.expand(with_eval=False)
        t2 = time.perf_counter()
        ex_eval = study.expand(with_eval=True)
        t3 = time.perf_counter()
        assert len(ex.trials) == N_MODELS * N_VOLUMES * N_SEEDS
        print(f"load+validate: {t1 - t0:.2f} s; expand {len(ex.trials)} trials: {t2 - t1:.2f} s; "
              f"with {len(ex_eval.eval_tasks)} eval tasks: {t3 - t2:.2f} s")
    hpci = str(Path(sys.executable).with_name("hpci"))
    plan_s, torch_s = best_of(5, [[hpci, "plan", "recipes/demo.yaml", "--format", "json"],
                                  [sys.executable, "-c", "import torch"]])
    print(f"start-up, best of 5: hpci plan recipes/demo.yaml {plan_s:.3f} s; python -c 'import torch' {torch_s:.3f} s")
    print(f"RESULT bench_plan trials={len(ex.trials)} expand_s={t2 - t1:.2f} startup_ratio={plan_s / torch_s:.2f}")


if __name__ == "__main__":
    main()
