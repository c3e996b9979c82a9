"""depth-parity end to end: a trained checkpoint's FP32/FP16/INT8 exports pass every budget with
ONNX Runtime on the CPU, damaged artifacts fail naming the budget, the report is complete."""
from __future__ import annotations

import json
import math

import cv2
import pytest

from edgedepth.budget import load_budgets


def test_fp32_fp16_int8_exports_pass_every_budget(full_run):
    for label, precision in (("model.onnx", "fp32"), ("model.fp16.onnx", "fp16"), ("model.int8.onnx", "int8")):
        candidate = full_run.candidate(label)
        assert candidate["precision"] == precision
        assert candidate["passed"], candidate["verdict"]
        checked = {check["key"] for check in candidate["checks"]}
        assert set(load_budgets()[precision].limits) | {"nonfinite", "spec"} == checked
        assert all(check["passed"] for check in candidate["checks"])
        assert full_run.verdict_line(label).startswith("PASS")


def test_budget_figures_are_what_the_issue_promises(full_run):
    """fp32 max abs <= 1e-4 x max_depth; fp16 AbsRel <= 0.1 %; int8 AbsRel <= 1 %, d1 agreement >= 0.995."""
    max_depth = full_run.report["reference"]["spec"]["max_depth"]
    fp32 = full_run.candidate("model.onnx")["figures"]
    fp16 = full_run.candidate("model.fp16.onnx")["figures"]
    int8 = full_run.candidate("model.int8.onnx")["figures"]
    assert fp32["max_abs_error"] <= 1e-4 * max_depth
    assert fp16["abs_rel"] <= 1e-3
    assert int8["abs_rel"] <= 1e-2 and int8["d1_agreement"] >= 0.995
    for figures in (fp32, fp16, int8):
        assert figures["nonfinite"] == 0
    # Reduced precision really differs from the reference: the suite measures, it does not echo.
    assert fp32["max_abs_error"] < fp16["max_abs_error"] < int8["max_abs_error"]


def test_perturbed_weights_fail_the_fp32_budget(full_run):
    candidate = full_run.candidate("perturbed.onnx")
    assert not candidate["passed"]
    failing = [check["key"] for check in candidate["checks"] if not check["passed"]]
    assert failing == ["max_abs_error_fraction"]
    line = full_run.verdict_line("perturbed.onnx")
    assert line.startswith("FAIL") and "max_abs_error" in line and "worst input:" in line


def test_wrong_normalisation_in_metadata_fails_and_is_named(full_run):
    candidate = full_run.candidate("wrong_norm.onnx")
    assert not candidate["passed"]
    failing = {check["key"] for check in candidate["checks"] if not check["passed"]}
    # Fed with its own (wrong) spec as the device would feed it, its depth is wrong ...
    assert "max_abs_error_fraction" in failing
    # ... and the spec difference itself is reported and fails.
    assert "spec" in failing
    errors = [finding for finding in candidate["findings"] if finding["severity"] == "error"]
    assert {finding["field"] for finding in errors} == {"mean", "std"}
    line = full_run.verdict_line("wrong_norm.onnx")
    assert line.startswith("FAIL") and "mean, std" in line and "max_abs_error" in line


def test_any_failure_exits_1_and_says_how_many(full_run):
    assert full_run.code == 1
    assert "FAIL (2 of 5 candidates failed)" in full_run.stdout.splitlines()[-1]


def test_report_json_is_complete_and_comparable_across_devices(full_run):
    report = full_run.report
    assert report["format"] == "edgedepth-parity" and report["verdict"] == "FAIL"
    assert report["host"]["machine"] and report["versions"]["onnxruntime"]
    assert report["reference"]["backend"].startswith("pytorch") and len(report["reference"]["sha256"]) == 64
    assert report["inputs"]["kind"] == "built-in" and report["inputs"]["count"] == len(report["inputs"]["names"]) >= 10
    for candidate in report["candidates"]:
        assert len(candidate["sha256"]) == 64 and candidate["spec"]["height"] == 64
        assert len(candidate["per_input"]) == report["inputs"]["count"]
        assert {"max_abs_error", "mean_abs_error", "p99_abs_error", "max_rel_error", "mean_rel_error", "p99_rel_error",
                "nonfinite", "abs_rel", "rmse", "d1_agreement"} <= set(candidate["figures"])
    # Strict JSON: no NaN/Infinity tokens a JavaScript or Go reader would reject.
    json.loads((full_run.report_dir / "report.json").read_text(), parse_constant=pytest.fail)


def test_int8_is_judged_on_scenes_but_reported_on_every_input(full_run):
    int8 = full_run.candidate("model.int8.onnx")
    judged = [row for row in int8["per_input"] if row["judged"]]
    assert {row["group"] for row in judged} == {"scene"} and len(judged) < len(int8["per_input"])
    abs_rel = next(check for check in int8["checks"] if check["key"] == "abs_rel")
    assert abs_rel["worst_input"] in {row["name"] for row in judged}
    fp16 = full_run.candidate("model.fp16.onnx")
    assert all(row["judged"] for row in fp16["per_input"])


def test_markdown_summary_and_pictures_are_written_and_readable(full_run):
    markdown = (full_run.report_dir / "report.md").read_text()
    assert markdown.startswith("# Parity report: FAIL")
    assert "| candidate | precision | backend | verdict |" in markdown
    for candidate in full_run.report["candidates"]:
        assert f"`{candidate['label']}`" in markdown
        assert set(candidate["pictures"]) == {"worst", "histogram", "side_by_side"}
        for path in candidate["pictures"].values():
            image = cv2.imread(path)
            assert image is not None and image.shape[0] > 150 and image.shape[1] > 300
            assert image.std() > 10, f"{path} is blank"
    assert not list(full_run.report_dir.rglob("*.tmp")), "temporary files were left behind"


def test_deciding_figure_names_the_worst_input(full_run):
    perturbed = full_run.candidate("perturbed.onnx")
    check = perturbed["deciding_check"]
    worst = max(perturbed["per_input"], key=lambda row: row["max_abs_error"])
    assert check["worst_input"] == worst["name"]
    assert math.isclose(check["worst_value"], worst["max_abs_error"])
    assert check["value"] == perturbed["figures"]["max_abs_error"]


def test_ground_truth_adds_task_metrics_and_their_change(parity_cli, tiny_checkpoint, artifacts, tmp_path):
    config = tmp_path / "gt.yaml"
    config.write_text("data: {dataset: synthetic, height: 64, width: 96,"
                      " synthetic: {num_train: 4, num_val: 6, cache_dir: ''}}\n")
    run = parity_cli(["--checkpoint", str(tiny_checkpoint), "--candidates", str(artifacts["int8"]),
                      "--gt-data", str(config)], tmp_path / "report")
    assert run.code == 0, run.stderr + run.stdout
    report = run.report
    assert report["inputs"]["ground_truth"] and report["inputs"]["count"] == 6
    task = report["candidates"][0]["task_metrics"]
    assert set(task) == {"reference", "candidate", "change"}
    assert math.isclose(task["change"]["abs_rel"], task["candidate"]["abs_rel"] - task["reference"]["abs_rel"])
    assert "Task metrics against ground truth" in (run.report_dir / "report.md").read_text()


def test_images_from_a_glob_are_sampled_evenly(parity_cli, tiny_checkpoint, artifacts, room_renderer, tmp_path):
    frames = room_renderer(tmp_path / "frames", 5, first_seed=9000)
    run = parity_cli(["--checkpoint", str(tiny_checkpoint), "--candidates", str(artifacts["fp32"]),
                      "--images", str(frames / "*.png"), "--max-images", "3"], tmp_path / "report")
    assert run.code == 0, run.stderr
    names = [row["name"] for row in run.report["candidates"][0]["per_input"]]
    assert names == ["room_000.png", "room_002.png", "room_004.png"]


@pytest.mark.parametrize("case", ["missing_candidate", "unknown_budget_key", "other_input_size"])
def test_usage_errors_exit_2_with_one_line(case, parity_cli, tiny_checkpoint, artifacts, spec_rewriter, tmp_path):
    candidate, extra = str(artifacts["fp32"]), []
    if case == "missing_candidate":
        candidate = str(tmp_path / "nope.onnx")
    if case == "unknown_budget_key":
        (tmp_path / "budget.yaml").write_text("fp16:\n  abs_rell: 0.002\n")
        extra = ["--budget", str(tmp_path / "budget.yaml")]
    if case == "other_input_size":
        candidate = str(spec_rewriter(artifacts["fp32"], tmp_path / "big.onnx", height=128, width=160))
    run = parity_cli(["--checkpoint", str(tiny_checkpoint), "--candidates", candidate, *extra], tmp_path / "report")
    assert run.code == 2
    message = run.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("depth-parity: error:")
    expected = {"missing_candidate": "nope.onnx", "unknown_budget_key": "'abs_rell'",
                "other_input_size": "128x160"}[case]
    assert expected in message
    assert not (tmp_path / "report" / "report.json").exists()


@pytest.mark.tensorrt
def test_tensorrt_engines_pass_their_budgets(parity_cli, tiny_checkpoint, artifacts, tmp_path):
    """FP32, FP16 and INT8 (Q/DQ) engines built by depth-export's own builder, run by the runtime's TensorRT backend."""
    from edgedepth.export.trt_build import build_engine

    quiet = lambda message: None  # noqa: E731
    engines = [build_engine(str(artifacts[precision]), str(tmp_path / f"model.{precision}.engine"),
                            precision=precision, log=quiet).path
               for precision in ("fp32", "fp16", "int8")]
    run = parity_cli(["--checkpoint", str(tiny_checkpoint), "--candidates", *map(str, engines)], tmp_path / "report")
    assert run.code == 0, run.stdout + run.stderr
    precisions = [candidate["precision"] for candidate in run.report["candidates"]]
    assert precisions == ["fp32", "fp16", "int8"]
    assert all(candidate["backend"].startswith("tensorrt") for candidate in run.report["candidates"])


def test_nan_output_fails_whatever_the_budget(parity_cli, tiny_checkpoint, artifacts, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(artifacts["fp16"]))
    output_node = next(node for node in model.graph.node if "depth" in node.output)
    scale = next(init for init in model.graph.initializer if init.name in output_node.input)  # x max_depth
    scale.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(scale), np.nan), scale.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    (tmp_path / "loose.yaml").write_text("fp16:\n  abs_rel: null\n")  # no figure budget left: NaN still fails
    run = parity_cli(["--checkpoint", str(tiny_checkpoint), "--candidates", str(tmp_path / "nan.onnx"),
                      "--budget", str(tmp_path / "loose.yaml")], tmp_path / "report")
    assert run.code == 1
    candidate = run.report["candidates"][0]
    assert candidate["deciding_check"]["key"] == "nonfinite"
    assert candidate["figures"]["nonfinite"] == 64 * 96 * run.report["inputs"]["count"]
    assert "NaN/Inf depth values" in run.verdict_line("nan.onnx")
    assert cv2.imread(candidate["pictures"]["worst"]) is not None
