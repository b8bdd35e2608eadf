"""The aggregate stage analyses against the same plan as `hpci report` (plan.json): same data facts, same ids.

Covers: hpc_instruct.stages.aggregate."""

from __future__ import annotations

import json

from hpc_instruct.analyze.expected import plan_from_dict
from hpc_instruct.launch.plan import plan_dict
from hpc_instruct.recipe.study import load_study
from hpc_instruct.stages.aggregate import stage_plan


def test_the_stage_aggregates_against_the_plan_that_plan_json_holds(write_recipe):
    """The stage used the bare expansion: its report printed an empty data fingerprint and another inputs id
    than `hpci report` on the same study."""
    study = load_study(write_recipe())
    expansion = study.expand()
    stored = plan_from_dict(json.loads(json.dumps(plan_dict(study, expansion))),
                            out_of_domain=tuple(study.recipe.evaluation.out_of_domain))
    in_job = stage_plan(study, expansion)
    assert in_job.fingerprint == stored.fingerprint and in_job.fingerprint.startswith("generated:")
    assert dict(in_job.pool_sizes) == dict(stored.pool_sizes) and in_job.synthetic_pool == stored.synthetic_pool > 0
    assert (in_job.study, in_job.abilities, in_job.out_of_domain) == (stored.study, stored.abilities,
                                                                      stored.out_of_domain)
    assert [t.id for t in in_job.trials] == [t.id for t in stored.trials]
