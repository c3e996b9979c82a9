"""depth-calib end to end on a trained model: Q/DQ INT8 that ONNX Runtime runs, meets the budget
against FP32 on held-out images, keeps the head in higher precision, and falls back when it must."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgedepth.calib import qdq, quantizers
from edgedepth.calib.calibration_set import build_calibration_set
from edgedepth.calib.cli import main
from edgedepth.calib.errors import CalibrationError
from edgedepth.export import onnx_info
from edgedepth.io import sha256_file
from edgedepth.metrics import compute_depth_metrics
from edgedepth.onnxrt import cpu_session, run_session

HAS_MODELOPT = importlib.util.find_spec("modelopt") is not None


def _args(model, output: Path, *extra: str) -> list:
    return ["--onnx", str(model.onnx), "--data", str(model.images), "--num-images", "32", "--num-eval", "16",
            "--output", str(output), *extra]


def _report(output: Path) -> dict:
    return json.loads(output.with_name(output.name.replace(".onnx", ".report.json")).read_text())


def _assert_float_inputs(graph, nodes) -> None:
    """No QuantizeLinear/DequantizeLinear writes any input of ``nodes``."""
    for name in nodes:
        assert qdq.dq_fed_inputs(graph, name) == [], f"{name} still reads a Q/DQ tensor"


def _independent_abs_rel(fp32: Path, int8: Path, images: Path) -> float:
    """AbsRel of INT8 vs FP32 on images the calibration held out, computed here from scratch."""
    spec = onnx_info.read_spec(fp32)
    held_out = build_calibration_set(spec, [str(images)], num_images=32, num_eval=16).held_out
    ref, test = cpu_session(fp32), cpu_session(int8)
    fp32_out = np.concatenate([run_session(ref, held_out[i:i + 1]) for i in range(len(held_out))])
    int8_out = np.concatenate([run_session(test, held_out[i:i + 1]) for i in range(len(held_out))])
    return compute_depth_metrics(int8_out, fp32_out, min_depth=spec.min_depth, reduction="pixels")["abs_rel"]


def _check_published(model, output: Path, quantizer: str) -> dict:
    graph = onnx.load(str(output))
    assert onnx_info.onnx_precision(graph) == "int8"
    head = onnx_info.find_output_head(str(model.onnx))  # found from the FP32 graph, not by name
    assert len(head) == 3
    _assert_float_inputs(graph, head)
    report = _report(output)
    assert report["status"] == "passed" and report["quantizer"] == quantizer
    assert report["figures"]["abs_rel"] <= 0.01 and report["figures"]["d1_agreement"] >= 0.995
    assert {item["node"] for item in report["kept_in_higher_precision"]} >= set(head)
    provenance = onnx_info.read_spec(graph).provenance
    assert provenance["precision"] == "int8" and provenance["quantizer"].startswith(quantizer)
    assert provenance["source_onnx_sha256"] == sha256_file(model.onnx)
    assert provenance["int8_figures"]["abs_rel"] == report["figures"]["abs_rel"]
    assert _independent_abs_rel(model.onnx, output, model.images) <= 0.01
    markdown = output.with_name(output.name.replace(".onnx", ".report.md")).read_text()
    assert markdown.startswith("# INT8 calibration report: PASSED")
    return report


def test_ort_qdq_meets_the_default_budget_with_the_head_in_higher_precision(trained_model, tmp_path, capsys):
    output = tmp_path / "model.int8.onnx"
    assert main(_args(trained_model, output, "--quantizer", "ort", "--trt-version", "10.3")) == 0
    report = _check_published(trained_model, output, "ort")
    # opset 17, symmetric INT8, float biases: every generation parses it
    assert report["trt_version"] == "10.3" and all(v == [] for v in report["tensorrt_compatibility"].values())
    assert set(report["tensorrt_compatibility"]) == {"8.5", "8.6", "10.3", "10.16", "11"}
    assert report["images"]["calibration_images"] == 32 and report["images"]["held_out_images"] == 16
    assert "passed" in capsys.readouterr().out


@pytest.mark.skipif(not HAS_MODELOPT, reason="nvidia-modelopt is not installed")
def test_modelopt_qdq_meets_the_default_budget_with_the_head_in_higher_precision(trained_model, tmp_path):
    output = tmp_path / "model.int8.onnx"
    assert main(_args(trained_model, output, "--quantizer", "modelopt")) == 0
    report = _check_published(trained_model, output, "modelopt")
    compatibility = report["tensorrt_compatibility"]  # ModelOpt writes opset 19+: TensorRT 10+ only
    assert compatibility["10"] == [] and "opset 19" in compatibility["8.6"][0]


def test_cpu_target_graph_meets_the_budget_and_is_flagged_for_tensorrt(trained_model, tmp_path):
    output = tmp_path / "model.int8.cpu.onnx"
    assert main(_args(trained_model, output, "--quantizer", "ort", "--target", "cpu")) == 0
    report = _check_published(trained_model, output, "ort")
    assert report["target"] == "cpu" and report["trt_version"] is None
    assert any("UINT8" in violation for violation in report["tensorrt_compatibility"]["10.3"])
    assert onnx_info.read_spec(str(output)).provenance["int8_target"] == "cpu"


def _qdq_facts(path: Path) -> dict:
    """Opset, the element types DequantizeLinear reads and its scales have, the zero points."""
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    inits = {init.name: init for init in model.graph.initializer}
    types.update({name: init.data_type for name, init in inits.items()})
    dequantize = [node for node in model.graph.node if node.op_type == "DequantizeLinear"]
    name = onnx.TensorProto.DataType.Name
    return {
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "dq_inputs": {name(types[node.input[0]]) for node in dequantize},
        "dq_scales": {name(types[node.input[1]]) for node in dequantize},
        "explicit_zero_points": all(len(node.input) == 3 and node.input[2] for node in dequantize),
        "zero_points": {int(v) for node in dequantize for v in np.ravel(numpy_helper.to_array(inits[node.input[2]]))},
        "model": model, "types": types,
    }


def test_for_tensorrt_8_6_the_graph_is_opset_17_with_int8_dequantize_and_zero_points_0(trained_model, tmp_path):
    """JetPack 6.0: ModelOpt's opset 19 and ORT's INT32 biases are both out; auto picks ORT with float biases."""
    output = tmp_path / "model.jp6.int8.onnx"
    assert main(_args(trained_model, output, "--trt-version", "8.6")) == 0
    report = _check_published(trained_model, output, "ort")
    assert report["trt_version"] == "8.6" and report["tensorrt_compatibility"]["8.6"] == []
    facts = _qdq_facts(output)
    assert facts["opset"] <= 17 and facts["dq_inputs"] == {"INT8"} and facts["explicit_zero_points"]
    assert facts["zero_points"] == {0}
    assert onnx_info.read_spec(str(output)).provenance["trt_version"] == "8.6"


def test_for_tensorrt_11_the_unquantized_layers_are_fp16_and_the_head_fp32(trained_model, tmp_path):
    """11.x takes precision from tensor types alone: DequantizeLinear outputs FP16 (FP16 scales),
    the head reads and computes FP32, graph I/O stays FP32; the budget is checked on this graph."""
    output = tmp_path / "model.trt11.int8.onnx"
    assert main(_args(trained_model, output, "--trt-version", "11")) == 0
    report = _check_published(trained_model, output, "modelopt" if HAS_MODELOPT else "ort")
    assert report["unquantized_precision"] == "fp16" and report["tensorrt_compatibility"]["11"] == []
    facts = _qdq_facts(output)
    assert facts["dq_inputs"] == {"INT8"} and facts["dq_scales"] == {"FLOAT16"} and facts["zero_points"] == {0}
    head = onnx_info.find_output_head(str(trained_model.onnx))
    FLOAT = onnx.TensorProto.FLOAT
    for node in facts["model"].graph.node:
        if node.name in head:
            assert all(facts["types"][name] == FLOAT for name in node.input if name), node.name
    assert [i.type.tensor_type.elem_type for i in facts["model"].graph.input] == [FLOAT]


def test_modelopt_for_tensorrt_8_is_refused_before_any_work(trained_model, tmp_path, capsys):
    output = tmp_path / "model.int8.onnx"
    assert main(_args(trained_model, output, "--quantizer", "modelopt", "--trt-version", "8.5")) == 1
    assert "opset 19 or newer" in capsys.readouterr().err and not output.exists()


def _modelopt_missing(monkeypatch):
    def missing():
        raise CalibrationError("NVIDIA ModelOpt is not installed (No module named 'modelopt'): "
                               "`pip install nvidia-modelopt onnx-graphsurgeon polygraphy`, or use --quantizer ort")
    monkeypatch.setattr(quantizers, "import_modelopt_quantize", missing)


def test_modelopt_requested_but_absent_is_a_clear_error(trained_model, tmp_path, monkeypatch, capsys):
    _modelopt_missing(monkeypatch)
    output = tmp_path / "model.int8.onnx"
    assert main(_args(trained_model, output, "--quantizer", "modelopt")) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("depth-calib: error: NVIDIA ModelOpt is not installed") and "--quantizer ort" in error
    assert not output.exists()


def test_auto_falls_back_to_onnxruntime_when_modelopt_is_absent(trained_model, tmp_path, monkeypatch):
    _modelopt_missing(monkeypatch)
    output = tmp_path / "model.int8.onnx"
    assert main(_args(trained_model, output)) == 0
    report = _report(output)
    assert report["quantizer"] == "ort" and "ModelOpt is not installed" in report["quantizer_note"]


def test_user_excluded_nodes_stay_in_higher_precision(trained_model, tmp_path):
    output = tmp_path / "model.int8.onnx"
    assert main(_args(trained_model, output, "--quantizer", "ort", "--exclude", "^/encoder/conv1/")) == 0
    kept = {item["node"]: item["reason"] for item in _report(output)["kept_in_higher_precision"]}
    assert kept["/encoder/conv1/Conv"] == "--exclude ^/encoder/conv1/"
    _assert_float_inputs(onnx.load(str(output)), ["/encoder/conv1/Conv"])


@pytest.mark.slow
def test_a_budget_plain_quantization_misses_is_met_by_the_fallback(trained_model, tmp_path, capsys):
    saved = tmp_path / "calib.npy"
    plain = tmp_path / "plain.int8.onnx"
    (tmp_path / "impossible.yaml").write_text("int8:\n  abs_rel: 0.000001\n")
    args = _args(trained_model, plain, "--quantizer", "ort", "--budget", str(tmp_path / "impossible.yaml"),
                 "--max-fallback", "0", "--save-set", str(saved))
    assert main(args) == 1 and not plain.exists()
    initial = _report(plain)["initial_figures"]["abs_rel"]
    budget = tmp_path / "tight.yaml"
    budget.write_text(f"int8:\n  abs_rel: {initial * 0.85}\n")
    output = tmp_path / "model.int8.onnx"
    args = ["--onnx", str(trained_model.onnx), "--load-set", str(saved), "--output", str(output), "--quantizer", "ort",
            "--budget", str(budget), "--sensitivity-top-k", "6"]
    assert main(args) == 0, capsys.readouterr().err
    report = _report(output)
    assert report["status"] == "passed" and report["figures"]["abs_rel"] <= initial * 0.85
    fallback_nodes = [item["node"] for item in report["kept_in_higher_precision"]
                      if item["reason"].startswith("fallback")]
    assert 1 <= len(fallback_nodes) == len(report["fallback"]["steps"])
    assert report["fallback"]["steps"][-1]["passed"] and report["initial_figures"]["abs_rel"] == pytest.approx(initial)
    _assert_float_inputs(onnx.load(str(output)), fallback_nodes)
    assert _independent_abs_rel(trained_model.onnx, output, trained_model.images) <= initial * 0.85 * 1.0001


def test_an_unreachable_budget_exits_nonzero_says_what_it_tried_and_writes_no_output(trained_model, tmp_path, capsys):
    budget = tmp_path / "impossible.yaml"
    budget.write_text("int8:\n  abs_rel: 0.000001\n  d1_agreement: 0.999\n")
    output = tmp_path / "model.int8.onnx"
    args = _args(trained_model, output, "--quantizer", "ort", "--budget", str(budget), "--max-fallback", "2",
                 "--sensitivity-top-k", "2", "--keep-failed")
    assert main(args) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "misses the budget after keeping 2 more node(s)" in error and "--max-fallback 2 reached" in error
    assert not output.exists()
    report = _report(output)
    assert report["status"] == "failed" and len(report["fallback"]["steps"]) == 2
    assert report["failures"][0].startswith("abs_rel")
    failed = tmp_path / "model.int8.over-budget.onnx"
    assert report["over_budget_output"] == str(failed)
    provenance = onnx_info.read_spec(str(failed)).provenance
    assert provenance["precision"] == "int8" and provenance["int8_budget_passed"] is False
