"""The accuracy budget, the INT8-vs-FP32 figures, and the fallback search logic (no quantizer needed)."""
from __future__ import annotations

import numpy as np
import pytest

from edgedepth.agreement import Agreement, compare_depth, judge
from edgedepth.budget import Budget
from edgedepth.calib.budget import int8_budget
from edgedepth.calib.sensitivity import greedy_fallback, group_scores, rank_nodes, relative_noise
from edgedepth.errors import ConfigError
from edgedepth.spec import ModelSpec

SPEC = ModelSpec(height=32, width=32, min_depth=0.1, max_depth=10.0)


def _figures(abs_rel: float, d1: float = 1.0, budget: Budget | None = None) -> Agreement:
    figures = {"abs_rel": abs_rel, "d1_agreement": d1, "rmse": 0.01, "max_abs_error": 0.1, "mean_abs_error": 0.01,
               "p99_abs_error": 0.05, "nonfinite": 0}
    return Agreement(figures, judge(figures, budget or int8_budget(), SPEC.max_depth))


def test_default_budget_is_one_percent_absrel_and_995_d1_agreement():
    assert _figures(0.0099, 0.996).failures == []
    assert _figures(0.0101, 0.996).failures == ["abs_rel 0.0101 > 0.01"]
    assert _figures(0.005, 0.99).failures == ["d1_agreement 0.99000 < 0.99500"]
    assert _figures(0.0099, 0.996) and not _figures(0.0101, 0.996)


def test_nan_outputs_never_pass():
    nan = float("nan")
    figures = {"abs_rel": nan, "d1_agreement": nan, "rmse": nan, "max_abs_error": float("inf"), "nonfinite": 7}
    failures = Agreement(figures, judge(figures, int8_budget(), SPEC.max_depth)).failures
    assert failures[0] == "7 NaN/Inf depth values (any fails)" and len(failures) == 3


def test_budget_file_overrides_the_int8_row_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "budget.yaml"
    path.write_text("int8:\n  abs_rel: 0.002\n  rmse: 0.05\n  d1_agreement: null\n")
    budget = int8_budget(path)
    assert dict(budget.limits) == {"abs_rel": 0.002, "rmse": 0.05}
    assert _figures(0.001, 0.5, budget).failures == []
    path.write_text("int8:\n  absrel: 0.002\n")
    with pytest.raises(ConfigError, match="unknown budget key 'absrel' under int8"):
        int8_budget(path)
    path.write_text("int8:\n  max_abs: 0.1\n")
    with pytest.raises(ConfigError, match="the figure is called 'max_abs_error'"):
        int8_budget(path)
    path.write_text("int8:\n  abs_rel: -1\n")
    with pytest.raises(ConfigError, match="not a finite number >= 0"):
        int8_budget(path)


def test_compare_depth_measures_int8_against_fp32_as_ground_truth():
    rng = np.random.default_rng(0)
    fp32 = rng.uniform(1.0, 9.0, (2, 1, 32, 32)).astype(np.float32)
    same = compare_depth(fp32, fp32.copy(), min_depth=SPEC.min_depth, budget=int8_budget())
    assert same["abs_rel"] == 0 and same["d1_agreement"] == 1 and same["max_abs_error"] == 0 and same
    off = compare_depth(fp32, fp32 * 1.02, min_depth=SPEC.min_depth, budget=int8_budget())
    assert off["abs_rel"] == pytest.approx(0.02, rel=1e-4) and not off
    assert off["max_abs_error"] == pytest.approx(float((fp32 * 0.02).max()), rel=1e-4)
    broken = fp32.copy()
    broken[0, 0, 0, :4] = np.nan
    assert compare_depth(fp32, broken, min_depth=SPEC.min_depth)["nonfinite"] == 4


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


def _trial(abs_rel_limit: float):
    """Figures after keeping ``kept``; 0.0002 of the error is not from quantization and never goes away."""
    budget = Budget({"abs_rel": abs_rel_limit})
    return lambda kept: _figures(0.0002 + _model_abs_rel([name for name in ERRORS if name not in kept]), budget=budget)


def test_greedy_fallback_keeps_the_worst_nodes_until_the_budget_passes():
    ranking = rank_nodes(list(ERRORS), {}, {}, lambda n: _figures(_model_abs_rel([n])))
    result = greedy_fallback(ranking, {"head": "output head"}, _trial(0.0022), max_fallback=8)
    assert result.passed and [step.node for step in result.steps] == ["b", "c"]
    assert list(result.kept) == ["head", "b", "c"] and "budget met after keeping 2" in result.stopped
    assert [step.passed for step in result.steps] == [False, True]


def test_greedy_fallback_stops_at_the_limit_and_says_so():
    ranking = rank_nodes(list(ERRORS), {}, {}, lambda n: _figures(_model_abs_rel([n])))
    result = greedy_fallback(ranking, {}, _trial(0.0001), max_fallback=2)
    assert not result.passed and len(result.steps) == 2 and result.stopped == "--max-fallback 2 reached"
    exhausted = greedy_fallback(ranking, {}, _trial(0.0001), max_fallback=10)
    assert not exhausted.passed and len(exhausted.steps) == 4 and exhausted.stopped == "no INT8 node left to keep"
    assert exhausted.to_dict()["steps"][-1]["figures"]["abs_rel"] == pytest.approx(0.0002)
