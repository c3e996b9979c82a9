"""What each TensorRT generation builds from which ONNX, against recorded facts of every generation
(tests/trt_facts.py: the names and enum integers each ``tensorrt`` module has)."""
from __future__ import annotations

import pytest

from edgedepth.errors import ExportError
from edgedepth.export.trt_build import HELPERS, Trt8Helper, Trt10Helper, Trt11Helper
from edgedepth.export.trt_compat import BuildRequest, parse_calibration_cache_header, plan_build
from edgedepth.trt.generation import probe_api

from trt_facts import fake_tensorrt

TRT85, TRT86, TRT90, TRT103, TRT1016, TRT11 = (
    fake_tensorrt(key) for key in ("8.5", "8.6", "9.0", "10.3", "10.16", "11.1")
)


def _plan(trt, precision, onnx_kind="fp32", **kwargs):
    return plan_build(probe_api(trt), BuildRequest(precision, onnx_kind, **kwargs))


@pytest.mark.parametrize("trt, helper", [(TRT85, Trt8Helper), (TRT86, Trt8Helper), (TRT90, Trt10Helper),
                                         (TRT103, Trt10Helper), (TRT1016, Trt10Helper), (TRT11, Trt11Helper)])
def test_each_generation_gets_its_helper(trt, helper):
    assert type(HELPERS[probe_api(trt).generation](trt, probe_api(trt), None)) is helper


# ----------------------------------------------------------------------------- network flags


@pytest.mark.parametrize("trt, onnx_kind, flags", [
    (TRT85, "fp32", ("EXPLICIT_BATCH",)),
    (TRT86, "fp16", ("EXPLICIT_BATCH",)),
    (TRT90, "fp32", ("EXPLICIT_BATCH",)),  # 9.x parser asserts an explicit-batch network
    (TRT90, "fp16", ("EXPLICIT_BATCH", "STRONGLY_TYPED")),
    (TRT103, "fp32", ()),
    (TRT103, "fp16", ("STRONGLY_TYPED",)),
    (TRT11, "fp16", ()),
])
def test_network_flags_per_generation(trt, onnx_kind, flags):
    assert _plan(trt, "fp16" if onnx_kind == "fp16" else "fp32", onnx_kind=onnx_kind).network_flags == flags


# ----------------------------------------------------------------------------- FP16


def test_fp16_from_fp32_onnx_on_8x_uses_the_flag_and_keeps_the_head_fp32():
    plan = _plan(TRT85, "fp16")
    assert plan.network_flags == ("EXPLICIT_BATCH",)
    assert set(plan.builder_flags) == {"FP16", "PREFER_PRECISION_CONSTRAINTS"}
    assert plan.keep_head_fp32 and not plan.strongly_typed


def test_fp16_from_fp32_onnx_on_10x_is_weakly_typed_with_the_flag():
    plan = _plan(TRT103, "fp16")
    assert plan.network_flags == () and "FP16" in plan.builder_flags and not plan.strongly_typed


def test_fp16_onnx_on_10x_builds_strongly_typed_without_precision_flags():
    plan = _plan(TRT103, "fp16", onnx_kind="fp16")
    assert plan.network_flags == ("STRONGLY_TYPED",) and plan.strongly_typed
    assert not {"FP16", "INT8"} & set(plan.builder_flags)


def test_fp16_request_on_11_with_an_fp32_onnx_says_what_to_do():
    with pytest.raises(ExportError) as caught:
        _plan(TRT11, "fp16")
    expected = "TensorRT 11.4.0.106 has no FP16 flag: pass the FP16 ONNX from `depth-export onnx --fp16`"
    assert expected in str(caught.value)


def test_fp16_onnx_on_11_builds_with_no_flags_at_all():
    plan = _plan(TRT11, "fp16", onnx_kind="fp16")
    assert plan.strongly_typed and plan.network_flags == () and plan.builder_flags == ()


def test_fp16_onnx_on_8x_falls_back_to_the_flag_and_says_so():
    plan = _plan(TRT86, "fp16", onnx_kind="fp16")
    assert "FP16" in plan.builder_flags and any("no strongly typed" in note for note in plan.notes)


# ----------------------------------------------------------------------------- FP32 and refusals


@pytest.mark.parametrize("trt", [TRT85, TRT103, TRT11])
def test_fp32_engines_clear_tf32_and_set_no_precision_flag(trt):
    plan = _plan(trt, "fp32")
    assert plan.clear_flags == ("TF32",)
    assert not {"FP16", "INT8"} & set(plan.builder_flags)


@pytest.mark.parametrize("trt, precision, onnx_kind", [
    (TRT85, "fp16", "fp32"), (TRT103, "int8", "int8"), (TRT103, "fp16", "fp16"), (TRT11, "int8", "int8"),
    (TRT11, "fp16", "fp16"),
])
def test_tf32_is_cleared_wherever_a_layer_is_promised_fp32(trt, precision, onnx_kind):
    """TF32 is "allowed, not required" and on by default: without clearing it the FP32 head (weak
    typing) or the FP32 parts of a strongly typed graph could run in TF32 on Ampere and Orin."""
    plan = _plan(trt, precision, onnx_kind=onnx_kind)
    assert plan.clear_flags == ("TF32",) and (plan.keep_head_fp32 or plan.strongly_typed)


@pytest.mark.parametrize("onnx_kind, precision, fragment", [
    ("fp16", "fp32", "FP16 graph"),
    ("int8", "fp16", "Q/DQ"),
    ("fp32", "int4", "not supported"),
])
def test_precision_never_silently_changes(onnx_kind, precision, fragment):
    with pytest.raises(ExportError, match=fragment):
        _plan(TRT103, precision, onnx_kind=onnx_kind)


# ----------------------------------------------------------------------------- INT8


def test_int8_without_scales_points_to_depth_calib():
    with pytest.raises(ExportError, match="depth-calib"):
        _plan(TRT103, "int8")


@pytest.mark.parametrize("trt", [TRT85, TRT103])
def test_int8_with_a_calibration_cache_uses_the_calibrator_on_8_and_10(trt):
    plan = _plan(trt, "int8", calib_cache=True)
    assert plan.use_calibrator and {"INT8", "FP16"} <= set(plan.builder_flags)


def test_calibrator_on_10_carries_the_deprecation_note():
    assert any("deprecates implicit INT8 calibration" in note for note in _plan(TRT103, "int8", calib_cache=True).notes)


def test_int8_plans_state_what_the_unquantized_layers_run_in():
    assert _plan(TRT103, "int8", onnx_kind="int8").unquantized_precision == "fp16"
    assert _plan(TRT11, "int8", onnx_kind="int8", qdq_float_type="fp16").unquantized_precision == "fp16"
    slow = _plan(TRT11, "int8", onnx_kind="int8", qdq_float_type="fp32")
    assert slow.unquantized_precision == "fp32" and any("depth-calib --trt-version 11" in note for note in slow.notes)


def test_calibration_cache_on_11_is_refused():
    with pytest.raises(ExportError, match="has no INT8 calibrator"):
        _plan(TRT11, "int8", calib_cache=True)


@pytest.mark.parametrize("trt", [TRT85, TRT103, TRT11])
def test_qdq_onnx_builds_int8_everywhere_without_a_calibrator(trt):
    plan = _plan(trt, "int8", onnx_kind="int8")
    assert not plan.use_calibrator
    assert ("INT8" in plan.builder_flags) == (trt is not TRT11)


def test_calib_cache_with_qdq_or_other_precision_is_refused():
    with pytest.raises(ExportError, match="already holds Q/DQ"):
        _plan(TRT103, "int8", onnx_kind="int8", calib_cache=True)
    with pytest.raises(ExportError, match="only applies to --precision int8"):
        _plan(TRT103, "fp16", calib_cache=True)


# ----------------------------------------------------------------------------- other options


def test_version_compatible_needs_8_6():
    with pytest.raises(ExportError, match="needs 8.6"):
        _plan(TRT85, "fp32", version_compatible=True)
    assert "VERSION_COMPATIBLE" in _plan(TRT86, "fp32", version_compatible=True).builder_flags


def test_hardware_compatibility_levels_by_version():
    with pytest.raises(ExportError, match="no hardware compatibility level ampere"):
        _plan(TRT85, "fp32", hardware_compatibility="ampere+")
    assert _plan(TRT86, "fp32", hardware_compatibility="ampere+").hardware_level == "AMPERE_PLUS"
    with pytest.raises(ExportError, match="same-compute-capability"):
        _plan(TRT103, "fp32", hardware_compatibility="same-compute-capability")
    plan = _plan(TRT1016, "fp32", hardware_compatibility="same-compute-capability")
    assert plan.hardware_level == "SAME_COMPUTE_CAPABILITY"


def test_hardware_compatibility_is_refused_on_a_jetson():
    with pytest.raises(ExportError, match="not supported on JetPack"):
        _plan(TRT103, "fp16", hardware_compatibility="ampere+", integrated_gpu=True)
    assert _plan(TRT103, "fp16", hardware_compatibility="ampere+", integrated_gpu=False).hardware_level == "AMPERE_PLUS"


def test_dla_needs_reduced_precision_and_gets_gpu_fallback():
    with pytest.raises(ExportError, match="DLA runs only FP16 or INT8"):
        _plan(TRT85, "fp32", dla_core=0)
    assert "GPU_FALLBACK" in _plan(TRT85, "fp16", dla_core=0).builder_flags


def test_workspace_must_be_positive():
    with pytest.raises(ExportError, match="--workspace"):
        _plan(TRT103, "fp32", workspace_gib=0)


# ----------------------------------------------------------------------------- helpers


class RecordingConfig:
    def __init__(self):
        self.set, self.cleared = [], []

    def set_flag(self, flag):
        self.set.append(flag)

    def clear_flag(self, flag):
        self.cleared.append(flag)


class FakeLayer:
    def __init__(self, name):
        self.name, self.precision, self.num_outputs, self.output_types = name, None, 1, {}

    def set_output_type(self, index, dtype):
        self.output_types[index] = dtype


class FakeNetwork:
    def __init__(self, names):
        self.layers = [FakeLayer(name) for name in names]
        self.num_layers = len(self.layers)

    def get_layer(self, index):
        return self.layers[index]


def test_trt8_helper_sets_this_versions_flags_and_pins_head_layers_to_fp32():
    trt = TRT85
    helper = Trt8Helper(trt, probe_api(trt), _plan(trt, "fp16"))
    config = RecordingConfig()
    network = FakeNetwork(
        ["/encoder/conv1/Conv", "/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul", "/head/Mul_1", "/head/Mul_2"]
    )
    head = ["/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul"]
    other_nodes = frozenset({"/encoder/conv1/Conv", "/head/Mul_2"})
    assert helper.set_precision(config, network, head, other_nodes=other_nodes) == 4
    assert set(config.set) == {trt.BuilderFlag.FP16, trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS}
    assert config.cleared == [trt.BuilderFlag.TF32]
    pinned = [layer.name for layer in network.layers if layer.precision == "float32"]
    # /head/Mul_1 is a second layer of the /head/Mul node; /head/Mul_2 is another ONNX node
    assert pinned == ["/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul", "/head/Mul_1"]
    assert network.layers[1].output_types == {0: "float32"}


def test_trt11_helper_touches_no_precision_flag():
    helper = Trt11Helper(TRT11, probe_api(TRT11), _plan(TRT11, "fp32"))
    config = RecordingConfig()
    network = FakeNetwork(["/head/Mul"])
    assert helper.set_precision(config, network, pinned=["/head/Mul"]) == 0 and network.layers[0].precision is None
    assert config.cleared == [TRT11.BuilderFlag.TF32] and config.set == []


def test_trt11_helper_refuses_a_calibrator():
    helper = Trt11Helper(TRT11, probe_api(TRT11), _plan(TRT11, "fp32"))
    with pytest.raises(ExportError, match="no INT8 calibrator"):
        helper.set_calibrator(RecordingConfig(), object(), None)


# ----------------------------------------------------------------------------- calibration cache


def test_calibration_cache_header_is_parsed():
    version, algorithm = parse_calibration_cache_header(b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n")
    assert (version, algorithm) == ("8601", "EntropyCalibration2")


def test_a_file_that_is_not_a_calibration_cache_is_refused():
    with pytest.raises(ExportError, match="not a TensorRT header"):
        parse_calibration_cache_header(b"\x89PNG\r\n")
