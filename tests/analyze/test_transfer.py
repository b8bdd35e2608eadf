"""The transfer matrix recovers planted cross-ability effects from single-ability trials."""

from __future__ import annotations

import pytest
from analyze_studies import PLANTED_TRANSFER

from hpc_instruct.analyze.aggregate import aggregate_study
from hpc_instruct.analyze.transfer import transfer


@pytest.fixture(scope="module")
def moved(transfer_study):
    agg = aggregate_study(transfer_study.directory, write=False)
    return transfer(agg.reported(), agg.plan, agg.replicates_of)


def test_matrix_shape_and_order(moved, transfer_study):
    plan = transfer_study.plan
    assert moved.model == "mini" and moved.samples == 256
    assert list(moved.matrix.index) == list(plan.abilities)
    assert list(moved.matrix.columns) == list(plan.abilities) + ["ceval_physician"]
    assert (moved.cells["seeds"] == 2).all()


def test_planted_transfer_effects_are_recovered(moved):
    cells = moved.cells.set_index(["trained", "evaluated"])
    off_diagonal = [(src, dst, v) for src, row in PLANTED_TRANSFER.items() for dst, v in row.items()]
    inside = sum(
        cells.loc[(s, d), "delta_lo"] <= v <= cells.loc[(s, d), "delta_hi"] for s, d, v in off_diagonal
    )
    assert inside >= len(off_diagonal) - 1, cells
    for src, dst, v in off_diagonal:  # every planted effect of 6+ points is found with its sign
        if abs(v) >= 6:
            assert cells.loc[(src, dst), "delta"] * v > 0 and abs(cells.loc[(src, dst), "delta"]) > 2
        else:
            assert abs(cells.loc[(src, dst), "delta"] - v) < 4


def test_diagonal_is_the_gain_from_own_data(moved, transfer_study):
    truth = transfer_study.truth
    for ability in transfer_study.plan.abilities:
        planted = truth.abilities[ability]
        gain = planted.intercept + planted.slope * 2.408 - planted.base  # log10(256) = 2.408
        assert moved.matrix.loc[ability, ability] == pytest.approx(gain, abs=4)
