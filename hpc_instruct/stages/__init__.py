"""The stages of a study: the only glue between a study (recipe + study directory) and the libraries.

    prepare    one mixture sampled, tokenized and packed          hpc_instruct.stages.prepare
    base       one size preset pretrained on a plain-text corpus  hpc_instruct.stages.base
    train      one trial trained and exported                     hpc_instruct.stages.train
    eval       one shard of one eval set on one checkpoint        hpc_instruct.stages.eval
    aggregate  scores, analysis and report of the whole study     hpc_instruct.stages.aggregate

Each stage module has a typed context (built from the launcher's `TaskContext` by `context`) and `run`.
`STAGES` is the explicit registry the launcher dispatches through. Importing it imports no torch: the stage
modules import their libraries inside `run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpc_instruct.stages import aggregate, base, eval, prepare, train
from hpc_instruct.stages.context import TaskContext


@dataclass(frozen=True)
class Stage:
    name: str
    context: Callable[[TaskContext], Any]  # TaskContext -> the stage's own typed context
    run: Callable[[Any], Any]

    def __call__(self, ctx: TaskContext) -> Any:
        return self.run(self.context(ctx))


STAGES: dict[str, Stage] = {
    "prepare": Stage("prepare", prepare.context, prepare.run),
    "base": Stage("base", base.context, base.run),
    "train": Stage("train", train.context, train.run),
    "eval": Stage("eval", eval.context, eval.run),
    "aggregate": Stage("aggregate", aggregate.context, aggregate.run),
}
ORDER = tuple(STAGES)  # prepare -> base -> train -> eval -> aggregate
