"""`depth-export check`: every rule catches a planted violation for the generations it applies to,
and every artifact edgedepth writes passes for the TensorRT it is made for."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedepth.export.cli import main as export_main
from edgedepth.export.conformance import check_graph, table_for
from edgedepth.trt.generation import parse_target

ALL = ("8.5", "8.6", "10.3", "10.16", "11")


def _model(nodes, inputs, outputs, initializers=(), opset: int = 17):
    graph = helper.make_graph(nodes, "planted", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _value(name: str, elem: int = TensorProto.FLOAT, shape=(1, 8, 4, 4)):
    return helper.make_tensor_value_info(name, elem, list(shape))


INT8_ZERO = np.int8(0)


def qdq_conv(weight_axis: int = 0, zero: Optional[np.ndarray] = INT8_ZERO, zero_in_q: bool = True, act_scale=(0.05,),
             weight_scales: int = 8, opset: int = 17, bias_int32: bool = False, weight_type=TensorProto.INT8):
    """input -> Q -> DQ -> Conv(DQ(INT8 weight), bias) -> depth: a per-channel weight Q/DQ graph with
    every quantity a rule looks at exposed as a parameter."""
    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(
            np.array(act_scale, np.float32).reshape(-1) if len(act_scale) > 1 else np.float32(act_scale[0]), "a_scale"
        ),
        numpy_helper.from_array(rng.integers(-127, 127, (8, 8, 3, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.full(weight_scales, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
        numpy_helper.from_array(np.zeros(8, np.float32), "bias"),
    ]
    if weight_type != TensorProto.INT8:
        init[1] = helper.make_tensor("w_q", weight_type, (8, 8, 3, 3), np.zeros(8 * 8 * 9, np.int32).tolist())
    act_inputs = ["input", "a_scale"]
    if zero is not None:
        init.append(numpy_helper.from_array(np.asarray(zero), "a_zero"))
        act_inputs.append("a_zero")
    nodes = [
        helper.make_node("QuantizeLinear", act_inputs if zero_in_q else act_inputs[:2], ["x_q"], name="input_Q"),
        helper.make_node("DequantizeLinear", ["x_q", *act_inputs[1:]], ["x"], name="input_DQ"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="weight_DQ", axis=weight_axis),
    ]
    bias = "bias"
    if bias_int32:
        init += [numpy_helper.from_array(np.zeros(8, np.int32), "b_q"),
                 numpy_helper.from_array(np.full(8, 5e-4, np.float32), "b_scale"),
                 numpy_helper.from_array(np.zeros(8, np.int32), "b_zero")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zero"], ["b"], name="bias_DQ", axis=0))
        bias = "b"
    nodes.append(helper.make_node("Conv", ["x", "w", bias], ["depth"], name="conv", pads=[1, 1, 1, 1]))
    return _model(nodes, [_value("input")], [_value("depth")], init, opset)


def rules(model, version: str) -> List[str]:
    return [f"{violation.node}: {violation.rule}" for violation in check_graph(model, parse_target(version))]


@pytest.mark.parametrize("version", ALL)
def test_a_clean_symmetric_int8_graph_passes_everywhere(version):
    assert rules(qdq_conv(), version) == []


@pytest.mark.parametrize("version, opset, refused", [("8.6", 19, True), ("8.6", 17, False), ("10.3", 19, False),
                                                     ("10.3", 21, True), ("11", 21, False)])
def test_opset_limit_of_each_generation(version, opset, refused):
    found = [rule for rule in rules(qdq_conv(opset=opset), version) if "opset" in rule]
    assert bool(found) is refused


@pytest.mark.parametrize("version", ALL)
def test_an_int32_bias_dequantize_is_refused_everywhere(version):
    found = rules(qdq_conv(bias_int32=True), version)
    assert found == ["bias_DQ: DequantizeLinear of an INT32 tensor (a quantized bias)"]


@pytest.mark.parametrize("version, refused", [("8.6", True), ("10.3", False), ("11", False)])
def test_fp8_dequantize_only_from_10(version, refused):
    found = rules(qdq_conv(weight_type=TensorProto.FLOAT8E4M3FN, opset=19), version)
    assert any("DequantizeLinear of FP8" in rule for rule in found) is refused


@pytest.mark.parametrize("version, refused", [("8.5", True), ("8.6", True), ("10.3", False), ("11", False)])
def test_missing_zero_points_are_refused_on_8x_only(version, refused):
    found = rules(qdq_conv(zero=None), version)
    missing = ["input_Q: QuantizeLinear without a zero point", "input_DQ: DequantizeLinear without a zero point"]
    assert (found == missing) is refused
    assert (found == []) is not refused


@pytest.mark.parametrize("version", ALL)
def test_nonzero_and_uint8_zero_points_are_refused_everywhere(version):
    assert rules(qdq_conv(zero=np.int8(3)), version) == [
        "input_Q: QuantizeLinear zero point 3", "input_DQ: DequantizeLinear zero point 3"
    ]
    uint8 = rules(qdq_conv(zero=np.uint8(128)), version)
    assert uint8 and all("UINT8" in rule for rule in uint8)


def test_per_channel_scales_must_sit_on_weights_along_the_output_channel():
    assert rules(qdq_conv(weight_axis=1), "8.6") == ["weight_DQ: per-channel axis 1 on Conv weights"]
    assert rules(qdq_conv(weight_scales=3, weight_axis=0), "10.3") == ["weight_DQ: 3 per-channel scales for 8 channels"]
    per_channel_activation = rules(qdq_conv(act_scale=(0.05,) * 8, zero=np.zeros(8, np.int8)), "10.16")
    assert "input_DQ: per-channel scale on an activation" in per_channel_activation


def test_nonpositive_and_computed_scales_or_zero_points_are_refused():
    model = qdq_conv(act_scale=(0.0,))
    assert "input_Q: QuantizeLinear scale 0" in rules(model, "8.6")
    computed = qdq_conv()
    computed.graph.initializer.remove(next(i for i in computed.graph.initializer if i.name == "a_zero"))
    computed.graph.input.append(helper.make_tensor_value_info("a_zero", TensorProto.INT8, []))
    assert "input_Q: QuantizeLinear zero point 'a_zero' is computed" in rules(computed, "10.3")


def _single(op: str, elem=TensorProto.FLOAT, domain: str = "", opset: int = 17, **attributes):
    node = helper.make_node(op, ["input"], ["depth"], name=f"the_{op}", domain=domain, **attributes)
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    graph = helper.make_graph([node], "one", [_value("input", elem)], [_value("depth", elem)])
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    return model


def test_operators_a_parser_does_not_support_are_named():
    assert rules(_single("Bernoulli"), "10.3") == ["the_Bernoulli: operator Bernoulli"]
    assert rules(_single("Gelu", opset=20), "8.6")[-1] == "the_Gelu: operator Gelu"  # no Gelu row before 10
    assert rules(_single("Gelu", opset=20), "10.16") == []
    assert rules(_single("QLinearSigmoid", domain="com.microsoft"), "11") == [
        "the_QLinearSigmoid: operator com.microsoft::QLinearSigmoid"
    ]


def test_type_limits_come_from_the_generations_table():
    assert rules(_single("Relu", TensorProto.BFLOAT16), "8.6") == ["the_Relu: Relu on BF16"]
    assert rules(_single("Relu", TensorProto.BFLOAT16), "10.3") == []
    assert rules(_single("Relu", TensorProto.DOUBLE), "8.6") == []  # the parser casts DOUBLE down to FLOAT


def test_resize_modes_tensorrt_cannot_do_are_named():
    def resize(**attributes):
        model = _single("Resize", **attributes)
        model.graph.node[0].input.extend(["", "scales"])
        model.graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        return model

    assert rules(resize(mode="linear"), "8.6") == []
    assert rules(resize(mode="cubic"), "10.3") == ["the_Resize: Resize mode 'cubic'"]
    found = rules(resize(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"), "11")
    assert found == ["the_Resize: Resize coordinate_transformation_mode 'tf_crop_and_resize'"]


def test_versions_map_to_the_newest_table_at_or_below_them():
    assert table_for(parse_target("10.3")).key == "10.1"
    assert table_for(parse_target("10.16")).key == "10.16"
    assert table_for(parse_target("8")).key == "8.5" and table_for(parse_target("11.4")).key == "11.1"
    assert "onnx/onnx-tensorrt" in table_for(parse_target("8.6")).source


# --- the command ----------------------------------------------------------------------------------------------------


def test_check_prints_one_line_per_violation_and_exits_1(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    onnx.save(qdq_conv(bias_int32=True, zero=np.int8(2), opset=19), str(path))
    assert export_main(["check", str(path), "--trt-version", "8.6"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith(f"{path}: TensorRT 8.6: ") for line in lines)
    expected = "(model): opset 19: TensorRT 8.6 parses up to opset 17; fix: re-run `depth-calib --trt-version 8.6`"
    assert expected in lines[0]
    assert all("; fix: " in line for line in lines)


def test_check_exits_0_for_a_conforming_graph_and_2_for_a_bad_version(tmp_path, capsys):
    path = tmp_path / "good.onnx"
    onnx.save(qdq_conv(), str(path))
    assert export_main(["check", str(path), "--trt-version", "8.5", "10.3", "11"]) == 0
    assert capsys.readouterr().out.count("conforms to TensorRT") == 3
    assert export_main(["check", str(path), "--trt-version", "7.1"]) == 2


# --- every artifact edgedepth writes, for its target ----------------------------------------------------------------


def test_fp32_and_fp16_exports_conform_to_every_generation(static_onnx, dynamic_onnx, fp16_onnx):
    for path in (static_onnx, dynamic_onnx, fp16_onnx):
        for version in ALL:
            assert check_graph(path, parse_target(version)) == [], (path, version)


@pytest.fixture(scope="module")
def calibration_images(tmp_path_factory) -> Path:
    import cv2

    from edgedepth.probes import scene_image

    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(3)
    for index in range(24):
        cv2.imwrite(str(folder / f"{index:02d}.png"), scene_image(64, 96, rng))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("version", ALL)
def test_depth_calib_writes_what_its_target_parses(version, static_onnx, calibration_images, tmp_path):
    from edgedepth.calib.cli import main as calib_main

    output = tmp_path / f"model.{version}.int8.onnx"
    unchecked = tmp_path / "unchecked.yaml"  # accuracy is depth-calib's own tests' business; here: the graph
    unchecked.write_text("int8:\n  abs_rel: null\n  d1_agreement: null\n")
    args = ["--onnx", str(static_onnx), "--data", str(calibration_images), "--num-images", "16", "--num-eval", "8",
            "--output", str(output), "--trt-version", version, "--budget", str(unchecked), "--max-fallback", "0"]
    assert calib_main(args) == 0
    assert check_graph(output, parse_target(version)) == []
    assert export_main(["check", str(output), "--trt-version", version]) == 0
