"""Functional correctness of generated code: run each sample with its tests in the sandbox, report pass@k.

A sample passes when `program + tests` exits with status 0 inside the sandbox within its limits (the tests are
plain Python: asserts, or a `check(...)` call). pass@k is the unbiased estimator of Chen et al. (2021, the Codex
paper): with n samples of which c pass, the probability that at least one of k samples drawn without
replacement passes, 1 - C(n-c, k) / C(n, k), computed as a product so that large n does not overflow.

DoIT itself scores code by perplexity ranking (`rank3`); this scorer is for studies that add executable tests,
which reviewers of the paper asked for as a more trustworthy metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hpc_instruct.evaluate.scoring.sandbox import SandboxConfig, SandboxResult, run_python


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for `c` passing samples out of `n`; needs 0 <= c <= n and 1 <= k <= n."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k samples contains a passing one
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    fail_all = 1.0
    for i in range(n - c + 1, n + 1):
        fail_all *= 1.0 - k / i
    return 1.0 - fail_all


@dataclass(frozen=True)
class CodeScore:
    """The outcome of one coding problem: per-sample sandbox results and pass@k for each requested k."""

    results: tuple[SandboxResult, ...]
    n: int
    passed: int
    pass_at: tuple[tuple[int, float], ...]  # ((k, pass@k), ...), k ascending; k > n is left out

    def at(self, k: int) -> float:
        """pass@k for one k that was requested."""
        for key, value in self.pass_at:
            if key == k:
                return value
        raise KeyError(f"pass@{k} was not computed; available: {[key for key, _ in self.pass_at]}")


def program_with_tests(program: str, tests: str) -> str:
    """The program the sandbox runs: the sample, then its tests (kept apart so a sample cannot hide them)."""
    return f"{program.rstrip()}\n\n\n# ---- tests ----\n{tests}\n"


def score_code_samples(
    samples: Sequence[str],
    tests: str,
    ks: Iterable[int] = (1,),
    config: SandboxConfig | None = None,
    workers: int = 1,
) -> CodeScore:
    """Run every sample with `tests` in its own sandbox and compute pass@k.

    `workers` > 1 runs sandboxes concurrently (each is a separate process tree). When the caller is root, all
    sandboxes share the unprivileged uid and so one RLIMIT_NPROC budget: keep `SandboxConfig.processes` in mind.
    """
    if not samples:
        raise ValueError("no samples to score")
    programs = [program_with_tests(sample, tests) for sample in samples]
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = tuple(pool.map(lambda p: run_python(p, config), programs))
    else:
        results = tuple(run_python(p, config) for p in programs)
    n, c = len(results), sum(r.passed for r in results)
    pass_at = tuple((k, pass_at_k(n, c, k)) for k in sorted(set(ks)) if k <= n)
    return CodeScore(results, n, c, pass_at)
