"""Candidate-vs-reference figures on maps whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from edgedepth.agreement import FIGURES, ComparisonAccumulator, ErrorHistogram, compare_depth
from edgedepth.budget import Budget


def _reference(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 8.0, (32, 48)).astype(np.float32)


def test_identical_maps_agree_exactly():
    reference = _reference()
    figures = compare_depth(reference, reference, min_depth=0.1)
    assert list(figures.figures) == list(FIGURES) and figures, "no budget: only NaN/Inf is judged"
    assert figures["max_abs_error"] == figures["p99_rel_error"] == figures["abs_rel"] == 0.0
    assert figures["d1_agreement"] == 1.0 and figures["nonfinite"] == 0


def test_a_one_percent_scale_error_reads_as_one_percent():
    reference = _reference()
    figures = compare_depth(reference, reference * 1.01, min_depth=0.1)
    for name in ("max_rel_error", "mean_rel_error", "p99_rel_error", "abs_rel"):
        assert figures[name] == pytest.approx(0.01, rel=1e-4)
    assert figures["max_abs_error"] == pytest.approx(0.01 * reference.max(), rel=1e-4)
    assert figures["d1_agreement"] == 1.0


def test_half_the_pixels_off_by_a_factor_two_halves_d1_agreement():
    reference = _reference()
    candidate = reference.copy()
    candidate[:16] *= 2.0
    assert compare_depth(reference, candidate, min_depth=0.1)["d1_agreement"] == pytest.approx(0.5)


def test_nan_and_inf_are_counted_and_make_errors_infinite():
    reference = _reference()
    candidate = reference.copy()
    candidate[0, 0], candidate[1, 1] = np.nan, np.inf
    figures = compare_depth(reference, candidate, min_depth=0.1)
    assert figures["nonfinite"] == 2
    assert figures["max_abs_error"] == np.inf
    assert np.isnan(figures["abs_rel"]), "a NaN prediction must never look good"


def test_set_figures_pool_every_pixel_of_every_input():
    references = [_reference(seed) for seed in range(3)]
    candidates = [ref + np.float32(0.001 * (i + 1)) for i, ref in enumerate(references)]
    accumulator = ComparisonAccumulator(min_depth=0.1)
    for index, (cand, ref) in enumerate(zip(candidates, references)):
        accumulator.add(f"input{index}", ref, cand)
    figures = accumulator.compute()
    errors = np.abs(np.stack(candidates).astype(np.float64) - np.stack(references))
    assert figures["max_abs_error"] == pytest.approx(errors.max())
    assert figures["mean_abs_error"] == pytest.approx(errors.mean())
    assert figures["p99_abs_error"] == pytest.approx(np.percentile(errors, 99), rel=0.03)
    assert accumulator.worst_input("max_abs_error")["name"] == "input2"
    assert accumulator.worst_input("d1_agreement") is not None


def test_histogram_quantiles_track_exact_percentiles():
    values = np.random.default_rng(3).lognormal(-8, 2, 200_000)
    histogram = ErrorHistogram()
    histogram.add(values)
    for q in (0.5, 0.9, 0.99):
        assert histogram.quantile(q) == pytest.approx(np.quantile(values, q), rel=0.025)
    histogram.add(np.zeros(10_000_000 // 10))
    assert histogram.exact == 1_000_000 and histogram.quantile(0.5) == 0.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        compare_depth(np.ones((4, 4)), np.ones((4, 5)), min_depth=0.1)


def test_an_agreement_is_truthy_exactly_when_every_limit_holds():
    reference = _reference()
    budget = Budget({"max_abs_error_fraction": 1e-3, "d1_agreement": 0.99})  # 8 mm for an 8 m model
    close = compare_depth(reference, reference + 0.005, min_depth=0.1, budget=budget, max_depth=8.0)
    far = compare_depth(reference, reference + 0.02, min_depth=0.1, budget=budget, max_depth=8.0)
    assert close and not far
    assert far.failures == ["max_abs_error 0.02 m > 0.008 m"]
    assert far.deciding.key == "max_abs_error_fraction" and far.deciding.usage == pytest.approx(2.5, rel=1e-3)
    assert [check.key for check in close.checks] == ["nonfinite", "max_abs_error_fraction", "d1_agreement"]


def test_nan_in_the_candidate_fails_whatever_the_budget():
    reference = _reference()
    candidate = reference.copy()
    candidate[0, 0] = np.nan
    agreement = compare_depth(reference, candidate, min_depth=0.1, budget=Budget({}))
    assert not agreement and agreement.failures == ["1 NaN/Inf depth values (any fails)"]
