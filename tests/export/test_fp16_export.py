"""FP32 ONNX -> mixed FP16 ONNX: accuracy, extremes, what stays FP32, and the range rules."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedepth.agreement import compare_depth
from edgedepth.errors import ExportError
from edgedepth.export import onnx_info
from edgedepth.export.fp16 import convert_to_fp16
from edgedepth.export.fp16_converters import CONVERTERS, converter_available
from edgedepth.io import sha256_file
from edgedepth.onnxrt import cpu_session, run_session
from edgedepth.probes import probe_batches
from edgedepth.spec import ModelSpec

from export_testing import SPEC

HEAD = {"/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul"}


def test_fp16_within_budget_and_finite_on_extreme_inputs(static_onnx, fp16_onnx):
    fp32, fp16 = cpu_session(static_onnx), cpu_session(fp16_onnx)
    for name, batch in probe_batches(SPEC, seed=4242):  # includes saturated white/black, high contrast
        half = run_session(fp16, batch)
        assert np.isfinite(half).all(), name
        assert compare_depth(run_session(fp32, batch), half, min_depth=SPEC.min_depth)["abs_rel"] <= 1e-3, name


def test_fp16_graph_keeps_fp32_io_and_really_computes_in_fp16(fp16_onnx):
    model = onnx.load(str(fp16_onnx))
    assert onnx_info.onnx_precision(model) == "fp16"
    assert [i.dtype for i in onnx_info.graph_inputs(model) + onnx_info.graph_outputs(model)] == ["float", "float"]
    weights = {i.name: i.data_type for i in model.graph.initializer}
    conv_types = [weights[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]
    assert conv_types.count(TensorProto.FLOAT16) >= len(conv_types) - 1  # all but the head conv


def test_output_head_stays_fp32_end_to_end(fp16_onnx):
    model = onnx.load(str(fp16_onnx))
    nodes = {n.name: n for n in model.graph.node}
    producers = {out: n for n in model.graph.node for out in n.output}
    weights = {i.name: i.data_type for i in model.graph.initializer}
    head_conv = nodes["/head/conv/Conv"]
    assert weights[head_conv.input[1]] == TensorProto.FLOAT
    feeding = producers[head_conv.input[0]]
    assert feeding.op_type == "Cast" and feeding.attribute[0].i == TensorProto.FLOAT
    assert producers["depth"].name == "/head/Mul"  # no Cast rounds the depth to FP16 after the head
    assert HEAD <= set(onnx_info.read_spec(str(fp16_onnx)).provenance["fp32_nodes"])


def test_fp16_onnx_carries_spec_with_fp16_provenance(static_onnx, fp16_onnx):
    spec = onnx_info.read_spec(str(fp16_onnx))
    assert (spec.height, spec.width, spec.max_depth) == (SPEC.height, SPEC.width, SPEC.max_depth)
    assert spec.provenance["precision"] == "fp16"
    assert spec.provenance["source_onnx_sha256"] == sha256_file(static_onnx)
    assert spec.provenance["checkpoint_sha256"] == onnx_info.read_spec(str(static_onnx)).provenance["checkpoint_sha256"]


def test_fp16_source_is_refused(fp16_onnx, tmp_path):
    with pytest.raises(ExportError, match="already an FP16 graph"):
        convert_to_fp16(fp16_onnx, tmp_path / "again.onnx", log=lambda _: None)
    assert not (tmp_path / "again.onnx").exists()


def test_unknown_keep_fp32_node_is_named(static_onnx, tmp_path):
    with pytest.raises(ExportError, match="no_such_node"):
        convert_to_fp16(static_onnx, tmp_path / "x.onnx", keep_fp32=["no_such_node"], log=lambda _: None)


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _range_stress_model() -> onnx.ModelProto:
    """conv -> x3000 -> x3000 (|x| ~ 1e7: FP16 overflow) -> /9e6 -> x1e-9 (below FP16's normal
    range) -> x1e9 (weight beyond FP16) -> head conv (channels of opposite sign) -> sigmoid x 10."""
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1"),
        helper.make_node("Mul", ["c1", "k3000"], ["m1"], name="scale_up_1"),
        helper.make_node("Mul", ["m1", "k3000"], ["m2"], name="scale_up_2"),
        helper.make_node("Div", ["m2", "k9e6"], ["d1"], name="scale_down"),
        helper.make_node("Mul", ["d1", "k1e-9"], ["tiny"], name="to_tiny"),
        helper.make_node("Mul", ["tiny", "k1e9"], ["back"], name="from_tiny"),
        helper.make_node("Conv", ["back", "w_head"], ["logits"], name="head_conv"),
        helper.make_node("Sigmoid", ["logits"], ["sig"], name="head_sigmoid"),
        helper.make_node("Mul", ["sig", "k10"], ["depth"], name="head_mul"),
    ]
    inits = [
        _const("w1", np.ones((4, 3, 1, 1)) / 3), _const("k3000", 3000.0), _const("k9e6", 9e6),
        _const("k1e-9", 1e-9), _const("k1e9", 1e9), _const("w_head", np.array([1, -1, 1, -0.5]).reshape(1, 4, 1, 1)),
        _const("k10", 10.0),
    ]
    graph = helper.make_graph(
        nodes, "stress", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, 32, 32])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_info.set_spec(model, ModelSpec(32, 32))
    return model


@pytest.mark.parametrize("converter", CONVERTERS)
def test_overflowing_and_tiny_nodes_are_kept_fp32(tmp_path, converter):
    if not converter_available(converter):
        pytest.skip(f"{converter} is not installed")
    source = tmp_path / "stress.onnx"
    onnx.save(_range_stress_model(), str(source))
    result = convert_to_fp16(source, tmp_path / "stress.fp16.onnx", converter=converter, log=lambda _: None)
    kept = result.fp32_nodes
    assert {"head_conv", "head_sigmoid", "head_mul"} <= set(kept)
    assert {"scale_up_1", "scale_up_2", "scale_down", "to_tiny", "from_tiny"} <= set(kept)
    assert "weights" in kept["from_tiny"] and "normal range" in kept["to_tiny"] and "reaches" in kept["scale_up_2"]
    assert "conv1" not in kept  # in range: converted


@pytest.mark.parametrize("converter", CONVERTERS)
def test_without_range_rules_the_check_fails_loudly(tmp_path, converter):
    if not converter_available(converter):
        pytest.skip(f"{converter} is not installed")
    source, target = tmp_path / "stress.onnx", tmp_path / "stress.fp16.onnx"
    onnx.save(_range_stress_model(), str(source))
    with pytest.raises(ExportError, match="NaN/Inf|abs_rel"):
        convert_to_fp16(source, target, data_max=float("inf"), converter=converter, log=lambda _: None)
    assert not target.exists()
