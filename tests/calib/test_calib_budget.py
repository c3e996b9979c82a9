"""The accuracy budget, the INT8-vs-FP32 figures, and the fallback search logic (no quantizer needed)."""
from __future__ import annotations

import numpy as np
import pytest

from edgedepth.calib.budget import Agreement, Budget, compare_outputs, load_budget
from edgedepth.calib.errors import CalibrationError
from edgedepth.calib.sensitivity import greedy_fallback, group_scores, rank_nodes, relative_noise
from edgedepth.spec import ModelSpec

SPEC = ModelSpec(height=32, width=32, min_depth=0.1, max_depth=10.0)


def _figures(abs_rel: float, d1: float = 1.0) -> Agreement:
    return Agreement(abs_rel, d1, 0.01, 0.1, 0.01, 0.05, 0, 4)


def test_default_budget_is_one_percent_absrel_and_995_d1_agreement():
    budget = Budget()
    assert budget.failures(_figures(0.0099, 0.996)) == []
    assert budget.failures(_figures(0.0101, 0.996)) == ["abs_rel 0.0101 > 0.01"]
    assert budget.failures(_figures(0.005, 0.99)) == ["d1_agreement 0.9900 < 0.9950"]


def test_nan_outputs_never_pass():
    figures = Agreement(float("nan"), float("nan"), float("nan"), float("inf"), float("inf"), float("inf"), 7, 1)
    failures = Budget().failures(figures)
    assert failures[0] == "7 NaN/Inf output values" and len(failures) == 3


def test_budget_file_overrides_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "budget.yaml"
    path.write_text("abs_rel: 0.002\nrmse: 0.05\nd1_agreement: null\n")
    budget = load_budget(path)
    assert budget == Budget(abs_rel=0.002, d1_agreement=None, rmse=0.05)
    assert budget.failures(_figures(0.001, 0.5)) == []
    path.write_text("absrel: 0.002\n")
    with pytest.raises(CalibrationError, match="unknown keys \\['absrel'\\]"):
        load_budget(path)
    path.write_text("abs_rel: -1\n")
    with pytest.raises(CalibrationError, match="must be a number"):
        load_budget(path)


def test_compare_outputs_measures_int8_against_fp32_as_ground_truth():
    rng = np.random.default_rng(0)
    fp32 = rng.uniform(1.0, 9.0, (2, 1, 32, 32)).astype(np.float32)
    same = compare_outputs(fp32.copy(), fp32, SPEC)
    assert same.abs_rel == 0 and same.d1_agreement == 1 and same.max_abs == 0 and same.images == 2
    off = compare_outputs(fp32 * 1.02, fp32, SPEC)
    assert off.abs_rel == pytest.approx(0.02, rel=1e-4)
    assert off.max_abs == pytest.approx(float((fp32 * 0.02).max()), rel=1e-4)
    broken = fp32.copy()
    broken[0, 0, 0, :4] = np.nan
    assert compare_outputs(broken, fp32, SPEC).nonfinite == 4


def test_relative_noise_is_zero_on_the_grid_and_grows_with_the_step():
    grid = np.arange(-127, 128, dtype=np.float32) * 0.1
    assert relative_noise(grid, 0.1, 0.0, (-128, 127)) == pytest.approx(0.0, abs=1e-6)
    values = np.random.default_rng(0).normal(0, 1, 10000).astype(np.float32)
    assert relative_noise(values, 0.2, 0.0, (-128, 127)) > relative_noise(values, 0.02, 0.0, (-128, 127)) > 0


ERRORS = {"a": 0.001, "b": 0.004, "c": 0.002, "d": 0.0005}  # AbsRel each node adds, additive toy model


def _model_abs_rel(int8_nodes) -> float:
    return sum(ERRORS[name] for name in int8_nodes)


def test_rank_nodes_orders_by_the_error_each_node_adds_alone():
    ranking = rank_nodes(list(ERRORS), {n: "Conv" for n in ERRORS}, {}, lambda n: _figures(_model_abs_rel([n])))
    assert [item.node for item in ranking] == ["b", "c", "a", "d"]
    assert ranking[0].abs_rel_alone == 0.004 and "adds AbsRel 0.400%" in ranking[0].reason()


def test_rank_nodes_with_top_k_measures_only_the_preranked_nodes():
    measured = []

    def measure(node):
        measured.append(node)
        return _figures(_model_abs_rel([node]))

    prerank = group_scores(list(ERRORS), lambda group: _figures(_model_abs_rel(group)))
    assert prerank == {"a": 0.005, "b": 0.005, "c": 0.0025, "d": 0.0025}
    ranking = rank_nodes(list(ERRORS), {}, {"a": 0.1}, measure, top_k=2, prerank=prerank)
    assert measured == ["a", "b"]
    assert [item.node for item in ranking] == ["b", "a", "c", "d"] and ranking[2].abs_rel_alone is None


def _trial(kept):
    """Figures after keeping ``kept``; 0.0002 of the error is not from quantization and never goes away."""
    return _figures(0.0002 + _model_abs_rel([name for name in ERRORS if name not in kept]))


def test_greedy_fallback_keeps_the_worst_nodes_until_the_budget_passes():
    ranking = rank_nodes(list(ERRORS), {}, {}, lambda n: _figures(_model_abs_rel([n])))
    result = greedy_fallback(ranking, {"head": "output head"}, Budget(abs_rel=0.0022), _trial, max_fallback=8)
    assert result.passed and [step.node for step in result.steps] == ["b", "c"]
    assert list(result.kept) == ["head", "b", "c"] and "budget met after keeping 2" in result.stopped
    assert [step.passed for step in result.steps] == [False, True]


def test_greedy_fallback_stops_at_the_limit_and_says_so():
    ranking = rank_nodes(list(ERRORS), {}, {}, lambda n: _figures(_model_abs_rel([n])))
    result = greedy_fallback(ranking, {}, Budget(abs_rel=0.0001), _trial, max_fallback=2)
    assert not result.passed and len(result.steps) == 2 and result.stopped == "--max-fallback 2 reached"
    exhausted = greedy_fallback(ranking, {}, Budget(abs_rel=0.0001), _trial, max_fallback=10)
    assert not exhausted.passed and len(exhausted.steps) == 4 and exhausted.stopped == "no INT8 node left to keep"
    assert exhausted.to_dict()["steps"][-1]["figures"]["abs_rel"] == pytest.approx(0.0002)
