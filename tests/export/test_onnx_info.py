"""Graph facts other stages reuse: precision kind, output head, node names, the stored ModelSpec."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedepth.errors import ExportError, SpecError
from edgedepth.export import onnx_info
from edgedepth.spec import ModelSpec


def _qdq_model() -> onnx.ModelProto:
    scale = numpy_helper.from_array(np.array(0.02, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zero")
    weight = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"], name="dq"),
        helper.make_node("Conv", ["dq", "w"], ["depth"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, 32, 32])], [scale, zero, weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_precision_kind_is_read_from_graph_content(static_onnx, tmp_path):
    assert onnx_info.onnx_precision(static_onnx) == "fp32"
    assert onnx_info.onnx_precision(_qdq_model()) == "int8"
    renamed = tmp_path / "model.fp16.onnx"  # the name says fp16, the content does not
    renamed.write_bytes(static_onnx.read_bytes())
    assert onnx_info.onnx_precision(renamed) == "fp32"


def test_fp16_graph_is_recognised(fp16_onnx):
    assert onnx_info.onnx_precision(fp16_onnx) == "fp16"


def test_head_of_the_exported_network(static_onnx):
    head = onnx_info.find_output_head(static_onnx)
    kinds = onnx_info.node_op_types(static_onnx, head)
    assert set(head) == {"/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul"}
    assert sorted(kinds.values()) == ["Conv", "Mul", "Sigmoid"]


def test_head_search_needs_a_conv():
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["input"], ["depth"], name="s")], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    with pytest.raises(ExportError, match="no Conv feeds"):
        onnx_info.find_output_head(helper.make_model(graph))


def test_unnamed_and_duplicate_nodes_get_unique_names():
    model = _qdq_model()
    model.graph.node[0].name = ""
    model.graph.node[2].name = "dq"
    onnx_info.ensure_node_names(model)
    names = [node.name for node in model.graph.node]
    assert len(set(names)) == 3 and names[1] == "dq" and all(names)


def test_missing_or_damaged_file_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        onnx_info.onnx_precision(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ExportError, match="not a readable ONNX"):
        onnx_info.onnx_precision(tmp_path / "bad.onnx")


def test_read_spec_reads_the_metadata_of_a_file_or_a_model(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["depth"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    model = helper.make_model(graph)
    spec = ModelSpec(height=64, width=64)
    helper.set_model_props(model, spec.to_metadata_props())
    onnx.save(model, str(tmp_path / "with.onnx"))
    assert onnx_info.read_spec(str(tmp_path / "with.onnx")) == spec
    assert onnx_info.read_spec(model) == spec
    helper.set_model_props(model, {})
    onnx.save(model, str(tmp_path / "without.onnx"))
    with pytest.raises(SpecError, match="without.onnx"):
        onnx_info.read_spec(str(tmp_path / "without.onnx"))


def _identity_model(shape, input_name="input") -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], ["depth"])], "g",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, shape)],
    )
    return helper.make_model(graph)


@pytest.mark.parametrize("shape, input_name, match", [
    ([1, 3, 480, 640], "input", r"spec says 1x3x64x96 \(NCHW\).*graph input 'input' is 1x3x480x640"),
    ([1, 1, 64, 96], "input", "graph input 'input' is 1x1x64x96"),
    ([1, 3, 64, 96], "image", r"spec names the input 'input'.*graph's inputs are \['image'\]"),
])
def test_a_spec_that_disagrees_with_the_graph_input_is_refused(tmp_path, shape, input_name, match):
    """D5: a metadata spec of another size than the graph input made ONNX Runtime raise
    InvalidArgument deep inside depth-calib and depth-export fp16."""
    model = _identity_model(shape, input_name)
    helper.set_model_props(model, ModelSpec(height=64, width=96).to_metadata_props())
    onnx.save(model, str(tmp_path / "lie.onnx"))
    with pytest.raises(SpecError, match=match) as caught:
        onnx_info.read_spec(str(tmp_path / "lie.onnx"), against_graph=True)
    assert "lie.onnx" in str(caught.value) and "\n" not in str(caught.value)


def test_a_dynamic_graph_input_agrees_with_any_spec_size():
    model = _identity_model(["batch", 3, "height", "width"])
    spec = ModelSpec(height=64, width=96, dynamic=True)
    helper.set_model_props(model, spec.to_metadata_props())
    assert onnx_info.read_spec(model, against_graph=True) == spec
