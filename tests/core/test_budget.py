"""The one budget file: defaults, overrides, and usage errors that name the bad key; checks and verdicts."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgedepth.agreement import Check, deciding_check
from edgedepth.budget import PRECISIONS, load_budget, load_budgets
from edgedepth.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "budgets" / "default.yaml"


def test_the_defaults_are_the_repository_file_and_nothing_else():
    """One budget file: what the package reads is configs/budget.yaml, and passing it changes nothing."""
    assert load_budgets(SHIPPED) == load_budgets(None)
    assert set(load_budgets(None)) == set(PRECISIONS)


def test_defaults_are_the_product_promise():
    defaults = load_budgets(None)
    assert defaults["fp32"].limit("max_abs_error_fraction", 10.0) == pytest.approx(1e-3)
    assert defaults["fp16"].limits == {"abs_rel": 1e-3} and defaults["fp16"].judged_inputs == "all"
    assert defaults["int8"].limits == {"abs_rel": 1e-2, "d1_agreement": 0.995}
    assert defaults["int8"].judged_inputs == "scenes"


def test_every_stage_reads_its_row_of_the_one_file(tmp_path, monkeypatch):
    """Export's self-check, depth-calib and depth-parity take their limits from the same loader."""
    from edgedepth.calib.budget import int8_budget
    from edgedepth.export.verify import export_budget

    defaults = load_budgets(None)
    assert export_budget("fp32") == defaults["fp32"] and export_budget("fp16") == defaults["fp16"]
    assert int8_budget() == defaults["int8"] == load_budget("int8")
    path = tmp_path / "b.yaml"
    path.write_text("int8:\n  abs_rel: 0.03\n")
    assert int8_budget(path).limits["abs_rel"] == load_budgets(path)["int8"].limits["abs_rel"] == 0.03


def test_override_keeps_other_keys_and_null_drops_a_check(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("int8:\n  abs_rel: 0.02\n  judged_inputs: all\nfp16:\n  abs_rel: null\n  p99_abs_error: 0.005\n")
    budgets = load_budgets(path)
    assert budgets["int8"].limits == {"abs_rel": 0.02, "d1_agreement": 0.995}
    assert budgets["int8"].judged_inputs == "all"
    assert budgets["fp16"].limits == {"p99_abs_error": 0.005}
    assert budgets["fp32"] == load_budgets(None)["fp32"]
    assert load_budgets(None)["int8"].limits["abs_rel"] == 0.01, "loading a file must not change the defaults"


@pytest.mark.parametrize("text, named", [
    ("fp16:\n  absrel: 0.1\n", "'absrel'"),
    ("bf16:\n  abs_rel: 0.1\n", "'bf16'"),
    ("fp16:\n  abs_rel: -1\n", "fp16.abs_rel"),
    ("fp16:\n  abs_rel: lots\n", "fp16.abs_rel"),
    ("int8:\n  d1_agreement: 99.5\n", "[0, 1]"),
    ("int8:\n  judged_inputs: some\n", "judged_inputs"),
    ("fp32:\n  nonfinite: 3\n", "always fails"),
    ("fp16: [1, 2]\n", "fp16"),
    ("fp16: {abs_rel: 0.1\n", "not valid YAML"),
])
def test_bad_budget_files_are_refused_naming_the_problem(tmp_path, text, named):
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_budgets(path)
    assert named in str(caught.value) and str(path) in str(caught.value)


def test_missing_budget_file_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_budgets(tmp_path / "absent.yaml")


def test_check_bounds_usage_and_verdict():
    at_limit = Check("abs_rel", "abs_rel", "max", 0.01, 0.01)
    over = Check("abs_rel", "abs_rel", "max", 0.01, 0.023)
    d1 = Check("d1_agreement", "d1_agreement", "min", 0.995, 0.999)
    assert at_limit.passed and not over.passed and d1.passed
    assert over.usage == pytest.approx(2.3) and d1.usage == pytest.approx(0.2)
    assert over.sentence() == "abs_rel 0.023 > 0.01" and "2.3x budget" == over.usage_text()
    assert not Check("rmse", "rmse", "max", 1.0, float("nan")).passed


def test_deciding_check_is_the_failure_furthest_over_budget_else_the_closest_to_its_limit():
    nan = Check("nonfinite", "nonfinite", "max", 0.0, 4.0)
    abs_rel = Check("abs_rel", "abs_rel", "max", 0.01, float("nan"))
    d1 = Check("d1_agreement", "d1_agreement", "min", 0.995, 0.99)
    assert deciding_check([abs_rel, d1, nan]) is nan  # NaN output explains the NaN AbsRel
    passing = [Check("nonfinite", "nonfinite", "max", 0.0, 0.0), Check("abs_rel", "abs_rel", "max", 0.01, 0.004),
               Check("d1_agreement", "d1_agreement", "min", 0.995, 0.997)]
    assert deciding_check(passing).key == "d1_agreement"  # 60 % of its shortfall budget used, AbsRel 40 %
