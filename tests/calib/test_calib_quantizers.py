"""The Q/DQ back ends: method mapping, back-end choice, TensorRT-friendly output."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgedepth.calib import quantizers
from edgedepth.calib.errors import CalibrationError
from edgedepth.calib.quantizers import OrtQuantizer, choose_quantizer, make_reader

from calib_helpers import build_small_depth_onnx

HEAD = ["/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantizers")
    data = np.random.default_rng(2).normal(0, 1, (6, 3, 32, 32)).astype(np.float32)
    data[0, :, :2, :2] = 40.0  # one outlier: minmax must cover it, entropy/percentile may clip it
    return build_small_depth_onnx(root / "small.onnx"), data, root


def _input_scale(path) -> float:
    """The scale of the QuantizeLinear on the graph input."""
    model = onnx.load(str(path))
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    quantize = next(node for node in model.graph.node if node.op_type == "QuantizeLinear" and node.input[0] == "input")
    return float(inits[quantize.input[1]])


def test_methods_give_different_activation_ranges(small):
    fp32, data, root = small
    scales = {}
    for method in ("minmax", "entropy", "percentile"):
        output = root / f"{method}.onnx"
        OrtQuantizer(fp32, data, method, root, "input").quantize(output, HEAD)
        scales[method] = _input_scale(output)
    assert scales["minmax"] == pytest.approx(40.0 / 127, rel=1e-3)  # symmetric: max |x| / 127
    assert scales["entropy"] < scales["minmax"] and scales["percentile"] < scales["minmax"]


def test_ort_output_has_explicit_symmetric_int8_zero_points(small):
    fp32, data, root = small
    output = root / "q.onnx"
    OrtQuantizer(fp32, data, "minmax", root, "input").quantize(output, HEAD)
    model = onnx.load(str(output))
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    qdq_nodes = [node for node in model.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq_nodes and all(len(node.input) == 3 for node in qdq_nodes)
    zero_points = [inits[node.input[2]] for node in qdq_nodes if inits[node.input[2]].dtype == np.int8]
    assert zero_points and all(np.all(z == 0) for z in zero_points)


def test_tensorrt_target_keeps_biases_float_and_weights_float_behind_a_qdq_pair(small):
    """ORT's defaults quantize biases to INT32 (a DequantizeLinear of INT32, which no TensorRT
    parses) and store weights as INT8 initializers; for TensorRT neither."""
    fp32, data, root = small
    output = root / "trt.onnx"
    OrtQuantizer(fp32, data, "minmax", root, "input").quantize(output, HEAD)
    model = onnx.load(str(output))
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    writers = {out: node for node in model.graph.node for out in node.output}
    dequantized = [node.input[0] for node in model.graph.node if node.op_type == "DequantizeLinear"]
    # No INT8/INT32 constants: every DequantizeLinear reads a QuantizeLinear.
    assert dequantized and all(writers[name].op_type == "QuantizeLinear" for name in dequantized)
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert all(inits[node.input[2]].dtype == np.float32 for node in convs)  # biases stay float
    weights = [writers[writers[node.input[1]].input[0]].input[0] for node in convs if node.input[1] in writers]
    assert weights and all(inits[name].dtype == np.float32 for name in weights)


def test_cpu_target_uses_uint8_activations_that_tensorrt_would_reject(small):
    from edgedepth.export.conformance import check_graph
    from edgedepth.trt.generation import parse_target

    fp32, data, root = small
    output = root / "cpu.onnx"
    OrtQuantizer(fp32, data, "minmax", root, "input", target="cpu").quantize(output, HEAD)
    model = onnx.load(str(output))
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    quantize = next(node for node in model.graph.node if node.op_type == "QuantizeLinear" and node.input[0] == "input")
    assert inits[quantize.input[2]].dtype == np.uint8
    assert any("UINT8" in violation.rule for violation in check_graph(model, parse_target("10.3")))


def test_auto_picks_onnxruntime_for_tensorrt_8_and_modelopt_is_refused_there():
    from edgedepth.trt.generation import parse_target

    backend, note = choose_quantizer("auto", "minmax", "tensorrt", parse_target("8.6"))
    assert backend == "ort" and "opset 17" in note
    with pytest.raises(CalibrationError, match="opset 19 or newer.*TensorRT 8.5 cannot parse.*--quantizer ort"):
        choose_quantizer("modelopt", "minmax", "tensorrt", parse_target("8.5"))


def test_older_onnxruntime_without_range_cache_still_quantizes(small, monkeypatch):
    fp32, data, root = small
    monkeypatch.setattr(quantizers, "supports_range_cache", lambda: False)
    output = root / "old_ort.onnx"
    OrtQuantizer(fp32, data, "minmax", root, "input").quantize(output, HEAD)
    assert _input_scale(output) == pytest.approx(40.0 / 127, rel=1e-3)


def test_reader_serves_every_batch_once():
    data = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    reader = make_reader("input", data, 2)
    batches = [reader.get_next() for _ in range(3)]
    assert [b["input"].shape for b in batches[:2]] == [(2, 3, 2, 2)] * 2 and batches[2] is None
    assert np.array_equal(batches[1]["input"], data[2:4])


def test_backend_choice():
    assert choose_quantizer("ort", "entropy") == ("ort", None)
    backend, note = choose_quantizer("auto", "percentile")
    assert backend == "ort" and "no percentile calibration" in note
    assert choose_quantizer("auto", "minmax", "cpu")[0] == "ort"
    with pytest.raises(CalibrationError, match="--target"):
        choose_quantizer("ort", "minmax", "gpu")
    with pytest.raises(CalibrationError, match="unknown"):
        choose_quantizer("trt", "minmax")


def test_modelopt_has_no_percentile(small, monkeypatch):
    fp32, data, root = small
    monkeypatch.setattr(quantizers, "import_modelopt_quantize", lambda: None)
    with pytest.raises(CalibrationError, match="supports minmax, entropy, not 'percentile'"):
        quantizers.ModelOptQuantizer(fp32, data, "percentile", root, "input")
    with pytest.raises(CalibrationError, match="use --quantizer ort for --target cpu"):
        quantizers.ModelOptQuantizer(fp32, data, "minmax", root, "input", target="cpu")
