"""Candidate perplexity, the rank3 rule and the pass@k estimator (pure functions, no sandbox)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpc_instruct.evaluate.scoring import pass_at_k, perplexity, rank_reference_first


def test_perplexity_is_exp_of_mean_cross_entropy():
    # tokens of the candidate plus the <eot> token: mean of (1, 2, 3) nats = 2
    assert perplexity([1.0, 2.0, 3.0]) == pytest.approx(math.exp(2.0))
    assert perplexity(np.array([0.0, 0.0])) == 1.0
    assert perplexity(x for x in [math.log(4.0)]) == pytest.approx(4.0)


def test_perplexity_overflow_and_empty():
    assert perplexity([1e6]) == math.inf
    with pytest.raises(ValueError, match="eot"):
        perplexity([])


def test_rank_reference_first():
    assert rank_reference_first([1.5, 2.0, 3.0]) == (True, 0)
    assert rank_reference_first(np.array([3.0, 2.0, 1.0])) == (False, 2)
    assert rank_reference_first([1.0, 1.0, 3.0]) == (False, 0)  # tie: incorrect
    assert rank_reference_first([1.0, 3.0, math.nan]) == (False, None)
    assert rank_reference_first([math.inf, math.inf, 1.0]) == (False, 2)
    with pytest.raises(ValueError):
        rank_reference_first([1.0])


def test_pass_at_k_known_values():
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(5, 4, 2) == 1.0
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_enumeration(nck):
    """The estimator equals the fraction of k-subsets of n samples that contain a passing one."""
    n, c, k = nck
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(samples, k))
    expected = sum(any(s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
