"""How often a generated reply yields no answer at all, per ability and model: why a score sits below chance.

Generation formats (DoIT question_format 0: multiple choice by text, true/false, cloze, multi-select, math) are
scored by parsing the reply; when the scorer finds nothing (`parsed` empty), the item is wrong whatever the
model knew, and chance is out of reach. Ranking formats (question_format 1) always yield an answer. The rate is
read from the reported rows' shards (the test split at the reported checkpoint), base models listed apart.
"""

from __future__ import annotations

import pandas as pd

from hpc_instruct.analyze.aggregate import AggregateResult
from hpc_instruct.analyze.selection import OVERALL
from hpc_instruct.study_dir import StudyDir

COLUMNS = ["ability", "model", "kind", "generated", "no_answer", "rate"]


def parse_failures(agg: AggregateResult) -> pd.DataFrame:
    """One row per (ability, model, kind: 'trained' | 'base'): generated items, those with no parsed answer, and
    their share in percent. Empty when no shard holds generation items."""
    import duckdb

    reported = agg.reported()
    reported = reported[reported["ability"] != OVERALL]
    if reported.empty:
        return pd.DataFrame(columns=COLUMNS)
    wanted = set(zip(reported["trial_id"], reported["split"], reported["ability"], strict=True))
    sdir = StudyDir(agg.study_dir)
    paths = sorted({str(p) for t in agg.plan.shards if (t.owner, t.split, t.ability) in wanted
                    and (p := sdir.eval_shard(t)).is_file()})
    if not paths:
        return pd.DataFrame(columns=COLUMNS)
    keys = reported[["trial_id", "checkpoint", "split", "ability", "model", "source"]].drop_duplicates()
    con = duckdb.connect()
    con.register("keys", keys)
    frame = con.execute(
        """
        select k.ability, k.model, case when k.source = 'base' then 'base' else 'trained' end as kind,
               count(*) as generated,
               sum(case when r.parsed is null or r.parsed = '' then 1 else 0 end) as no_answer
        from read_parquet(?) r
        join keys k on r.trial_id = k.trial_id and r.checkpoint = k.checkpoint and r.split = k.split
                    and r.ability = k.ability
        where r.question_format = 0
        group by 1, 2, 3
        """,
        [paths],
    ).df()
    con.close()
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    frame["rate"] = 100.0 * frame["no_answer"] / frame["generated"]
    order = {a: i for i, a in enumerate(agg.plan.abilities + agg.plan.out_of_domain)}
    frame["_order"] = frame["ability"].map(order)
    params = agg.num_parameters
    frame["_size"] = frame["model"].map(lambda m: params.get(m, 0))
    frame = frame.sort_values(["_order", "kind", "_size"]).drop(columns=["_order", "_size"])
    return frame[COLUMNS].reset_index(drop=True)
