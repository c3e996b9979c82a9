"""Checkpoint -> ONNX: accuracy against PyTorch (static and dynamic), metadata, failure modes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.budget import Budget
from edgedepth.errors import ExportError, SpecError
from edgedepth.export import onnx_export
from edgedepth.export.onnx_export import export_onnx, fp32_companion_path, trace_to_onnx, unsupported_op_from_error
from edgedepth.export.onnx_info import read_spec
from edgedepth.io import sha256_file
from edgedepth.onnxrt import cpu_session, run_session
from edgedepth.probes import probe_batch

from export_testing import SPEC

BUDGET = 1e-4 * SPEC.max_depth


def _torch(model, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()


@pytest.mark.parametrize("probe", ["random_normal", "scene", "checkerboard", "saturated_white"])
def test_static_onnx_matches_pytorch(static_onnx, torch_model, probe):
    batch = probe_batch(probe, SPEC, seed=123)  # not a seed the export's own check used
    got = run_session(cpu_session(static_onnx), batch)
    expected = _torch(torch_model, batch)
    assert got.shape == (1, 1, SPEC.height, SPEC.width)
    assert np.max(np.abs(got - expected)) <= BUDGET


@pytest.mark.parametrize("size", [(64, 96), (32, 160), (128, 128)])
def test_dynamic_onnx_matches_pytorch_at_other_sizes_and_batch_2(dynamic_onnx, torch_model, size):
    batch = probe_batch("scene", SPEC, batch=2, height=size[0], width=size[1], seed=7)
    got = run_session(cpu_session(dynamic_onnx), batch)
    expected = _torch(torch_model, batch)
    assert got.shape == (2, 1) + size
    assert np.max(np.abs(got - expected)) <= BUDGET


def test_spec_round_trips_through_onnx_metadata(static_onnx, checkpoint):
    spec = read_spec(str(static_onnx))
    assert (spec.height, spec.width, spec.max_depth, spec.mean) == (SPEC.height, SPEC.width, SPEC.max_depth, SPEC.mean)
    assert spec.dynamic is False and spec.intrinsics == SPEC.intrinsics and spec.depth_kind == "metric"
    assert spec.provenance["checkpoint_sha256"] == sha256_file(checkpoint)
    assert spec.provenance["opset"] == 17 and spec.provenance["precision"] == "fp32"
    model = onnx.load(str(static_onnx))
    assert [i.name for i in model.graph.input] == [spec.input_name]
    assert [o.name for o in model.graph.output] == [spec.output_name]
    assert all(init.data_location != onnx.TensorProto.EXTERNAL for init in model.graph.initializer)


def test_dynamic_export_marks_batch_height_width_symbolic(dynamic_onnx):
    spec = read_spec(str(dynamic_onnx))
    dims = onnx.load(str(dynamic_onnx)).graph.input[0].type.tensor_type.shape.dim
    assert spec.dynamic is True
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]


def test_export_at_a_size_other_than_training(checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    export_onnx(checkpoint, out, height=32, width=64, simplify=False, log=lambda _: None)
    spec = read_spec(str(out))
    assert (spec.height, spec.width) == (32, 64)
    assert spec.intrinsics == SPEC.intrinsics.scaled_to(64, 32)  # the training camera as seen at 64x32
    assert run_session(cpu_session(out), probe_batch("scene", spec)).shape == (1, 1, 32, 64)


def test_size_not_multiple_of_32_is_refused_before_writing(checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(SpecError, match="multiple of 32"):
        export_onnx(checkpoint, out, height=70, width=96, log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_failed_self_check_leaves_nothing_behind(checkpoint, tmp_path, monkeypatch):
    # No output can meet a negative limit (the file refuses one; the dataclass takes it).
    monkeypatch.setattr(onnx_export, "export_budget", lambda precision: Budget({"max_abs_error": -1.0}))
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="self-check failed"):
        export_onnx(checkpoint, out, simplify=False, log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


class _Histogram(torch.nn.Module):
    """aten::histc has no ONNX symbolic: the TorchScript exporter rejects it."""

    def forward(self, x):
        return x + torch.histc(x, bins=4).sum()


class _DataDependentBranch(torch.nn.Module):
    def forward(self, x):
        if x.mean() > 0:
            return x * 2
        return x - 1


def test_unsupported_op_is_named(tmp_path):
    with pytest.raises(ExportError, match=r"aten::histc"):
        trace_to_onnx(_Histogram().eval(), SPEC, tmp_path / "x.onnx", 1, False, 17)


def test_data_dependent_control_flow_is_refused_with_its_location(tmp_path):
    with pytest.raises(ExportError, match=r"control flow at .*test_onnx_export\.py:\d+ \('if x.mean\(\) > 0:'\)"):
        trace_to_onnx(_DataDependentBranch().eval(), SPEC, tmp_path / "x.onnx", 1, False, 17)


def test_op_name_extraction_from_torch_messages():
    message = "Exporting the operator 'aten::fft_fft2' to ONNX opset version 17 is not supported"
    assert unsupported_op_from_error(message) == "aten::fft_fft2"
    assert unsupported_op_from_error("Unsupported: ONNX export of operator aten::cummax, ...") == "aten::cummax"
    assert unsupported_op_from_error("something else went wrong") is None


def test_fp16_companion_names():
    assert fp32_companion_path("out/model.onnx").name == "model.fp32.onnx"
    assert fp32_companion_path("out/model.fp16.onnx").name == "model.onnx"
