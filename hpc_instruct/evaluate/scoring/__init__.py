"""Model-free scoring of evaluation items: one scorer per DoIT format and mode, perplexity ranking, sandboxed code.

Torch-free (numpy for the official logit rule; sympy only for the optional symbolic check), so results can be
rescored on a login node from stored predictions. Modules: `modes` (doit, doit-text, corrected; `ItemError`),
`official` and `official_math` (the official DoIT rules, verdict for verdict), `normalize` (full-width and CJK
text), the corrected readers `letters` (MC and multi-select), `true_false`, `cloze`, `math_answer` (answer
extraction), `math_equiv` (equivalence) and `symbolic` (sympy), `perplexity` (candidate perplexity, rank3 rule),
`scorers` (the `Score` result, chance values, `score` dispatch), `sandbox` (+ `sandbox_launcher`, which runs
inside it) and `pass_at_k` (executed tests).
"""

from hpc_instruct.evaluate.scoring.math_equiv import is_equivalent, normalize_math
from hpc_instruct.evaluate.scoring.modes import CORRECTED, DOIT, DOIT_TEXT, MODES, ItemError
from hpc_instruct.evaluate.scoring.pass_at_k import CodeScore, pass_at_k, score_code_samples
from hpc_instruct.evaluate.scoring.perplexity import perplexity, rank_reference_first
from hpc_instruct.evaluate.scoring.sandbox import (
    SandboxConfig,
    SandboxResult,
    SandboxUnavailable,
    namespaces_available,
    process_isolation_available,
    run_python,
)
from hpc_instruct.evaluate.scoring.scorers import (
    SCORER_VERSION,
    Score,
    chance,
    score,
    score_cloze,
    score_math,
    score_mc,
    score_multi_select,
    score_or_error,
    score_rank3,
    score_true_false,
)

__all__ = [
    "CORRECTED",
    "DOIT",
    "DOIT_TEXT",
    "MODES",
    "ItemError",
    "SCORER_VERSION",
    "CodeScore",
    "SandboxConfig",
    "SandboxResult",
    "SandboxUnavailable",
    "Score",
    "chance",
    "is_equivalent",
    "namespaces_available",
    "process_isolation_available",
    "normalize_math",
    "pass_at_k",
    "perplexity",
    "rank_reference_first",
    "run_python",
    "score",
    "score_cloze",
    "score_code_samples",
    "score_math",
    "score_mc",
    "score_multi_select",
    "score_or_error",
    "score_rank3",
    "score_true_false",
]
