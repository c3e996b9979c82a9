"""Q/DQ surgery and inspection: nodes kept in higher precision really read float tensors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgedepth.calib import qdq
from edgedepth.calib.errors import CalibrationError
from edgedepth.calib.quantizers import OrtQuantizer
from edgedepth.onnxrt import cpu_session, run_session

from calib_helpers import build_small_depth_onnx

HEAD = ["/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(fp32 path, fully quantized ORT model with only the head excluded, calibration data)."""
    root = tmp_path_factory.mktemp("qdq")
    fp32 = build_small_depth_onnx(root / "small.onnx")
    data = np.random.default_rng(1).normal(0, 1, (8, 3, 32, 32)).astype(np.float32)
    OrtQuantizer(fp32, data, "minmax", root, "input").quantize(root / "q.onnx", HEAD)
    return fp32, onnx.load(str(root / "q.onnx")), data


def _copy(model):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def test_quantizers_leave_a_qdq_pair_in_front_of_an_excluded_node(small):
    _, quantized, _ = small
    # ORT quantizes the residual Add's output for its consumer: the excluded head conv still reads INT8.
    assert qdq.dq_fed_inputs(quantized, "/head/conv/Conv")


def test_keep_float_inputs_feeds_the_head_float_tensors_and_the_graph_still_runs(small):
    fp32, quantized, data = small
    model = _copy(quantized)
    assert qdq.keep_float_inputs(model, HEAD, reference=onnx.load(str(fp32))) >= 1
    assert all(qdq.dq_fed_inputs(model, name) == [] for name in HEAD)
    assert "/block/Add" in qdq.quantized_nodes(model)  # the rest stays INT8
    onnx.checker.check_model(model)
    out = run_session(cpu_session(model.SerializeToString()), data[:1])
    assert out.shape == (1, 1, 32, 32) and np.isfinite(out).all()


def test_keeping_a_conv_restores_its_exact_fp32_weights(small):
    fp32, quantized, _ = small
    reference = onnx.load(str(fp32))
    model = _copy(quantized)
    qdq.keep_float_inputs(model, ["/stem/Conv"], reference=reference)
    conv = next(node for node in model.graph.node if node.name == "/stem/Conv")
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    original = {init.name: numpy_helper.to_array(init) for init in reference.graph.initializer}
    assert np.array_equal(weights[conv.input[1]], original["stem.weight"])
    assert np.array_equal(weights[conv.input[2]], original["stem.bias"])
    assert "/stem/Conv" not in qdq.quantized_nodes(model)


def test_without_reference_a_quantized_weight_is_dequantized(small):
    _, quantized, _ = small
    model = _copy(quantized)
    qdq.keep_float_inputs(model, ["/stem/Conv"])
    conv = next(node for node in model.graph.node if node.name == "/stem/Conv")
    weight = {init.name: init for init in model.graph.initializer}[conv.input[1]]
    assert weight.data_type == onnx.TensorProto.FLOAT and qdq.dq_fed_inputs(model, "/stem/Conv") == []


def test_the_head_is_found_from_the_graph_not_from_names(small):
    fp32, _, _ = small
    model = onnx.load(str(fp32))
    for index, node in enumerate(model.graph.node):
        node.name = f"node{index}"
    head = qdq.head_exclusions(model, "depth")
    assert sorted(node.op_type for node in model.graph.node if node.name in head) == ["Conv", "Mul", "Sigmoid"]


def test_exclude_patterns_resolve_to_nodes_and_a_typo_is_an_error(small):
    fp32, _, _ = small
    model = onnx.load(str(fp32))
    kept = qdq.resolve_exclusions(model, ["/block/conv"])
    assert set(kept) == {"/block/conv1/Conv", "/block/conv2/Conv"}
    assert all("--exclude /block/conv" in reason for reason in kept.values())
    with pytest.raises(CalibrationError, match="matches no node"):
        qdq.resolve_exclusions(model, ["/blok/"])
    with pytest.raises(CalibrationError, match="not a valid regular expression"):
        qdq.resolve_exclusions(model, ["(["])


@pytest.mark.parametrize("version", ["8.5", "8.6", "10.3", "10.16", "11"])
def test_the_graph_ort_writes_for_tensorrt_parses_on_every_generation(small, version):
    from edgedepth.export.conformance import check_graph
    from edgedepth.trt.generation import parse_target

    _, quantized, _ = small
    assert check_graph(quantized, parse_target(version)) == []
    model = _copy(quantized)
    qdq.keep_float_inputs(model, ["/block/conv2/Conv"])  # the fallback's surgery keeps it parsable
    assert check_graph(model, parse_target(version)) == []
