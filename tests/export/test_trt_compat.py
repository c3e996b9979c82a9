"""TensorRT generation logic, without TensorRT: probes, dispatch, what may be built, messages.

The fake modules mirror which names each generation has, per shared/reference/TENSORRT_API.md
(e.g. 11.x: no EXPLICIT_BATCH, no BuilderFlag.FP16/INT8, no IInt8EntropyCalibrator2).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgedepth.errors import ExportError
from edgedepth.export.trt_build import HELPERS, Trt8Helper, Trt11Helper
from edgedepth.export.trt_compat import (
    BuildRequest,
    detect_generation,
    parse_calibration_cache_header,
    parse_version,
    plan_build,
    probe_api,
)

_FLAGS_8 = ["FP16", "INT8", "TF32", "STRICT_TYPES", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK"]


def _enum(names):
    return SimpleNamespace(**{name: index for index, name in enumerate(names)})


def fake_trt(version, network_flags, builder_flags, levels=(), calibrator=True, progress=False, exec_v3=True):
    module = SimpleNamespace(
        __version__=version,
        IExecutionContext=SimpleNamespace(**({"execute_async_v3": None} if exec_v3 else {})),
        NetworkDefinitionCreationFlag=_enum(network_flags),
        BuilderFlag=_enum(builder_flags),
    )
    if levels:
        module.HardwareCompatibilityLevel = _enum(levels)
    if calibrator:
        module.IInt8EntropyCalibrator2 = object
    if progress:
        module.IProgressMonitor = object
    return module


TRT84 = fake_trt("8.4.3.1", ["EXPLICIT_BATCH"], _FLAGS_8, exec_v3=False)
TRT85 = fake_trt("8.5.2.2", ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"], _FLAGS_8)
TRT86 = fake_trt("8.6.1", ["EXPLICIT_BATCH"], _FLAGS_8 + ["VERSION_COMPATIBLE"], levels=["NONE", "AMPERE_PLUS"])
TRT103 = fake_trt(
    "10.3.0", ["EXPLICIT_BATCH", "STRONGLY_TYPED"], _FLAGS_8[:3] + _FLAGS_8[4:] + ["VERSION_COMPATIBLE", "BF16"],
    levels=["NONE", "AMPERE_PLUS"], progress=True,
)
TRT1016 = fake_trt(
    "10.16.1", ["EXPLICIT_BATCH", "STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS"], _FLAGS_8[:3] + _FLAGS_8[4:] + ["VERSION_COMPATIBLE"],
    levels=["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], progress=True,
)
TRT11 = fake_trt(
    "11.4.0.106", ["STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS"], ["TF32", "GPU_FALLBACK", "VERSION_COMPATIBLE", "DIRECT_IO"],
    levels=["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], calibrator=False, progress=True,
)


def _plan(trt, precision, onnx_kind="fp32", **kwargs):
    return plan_build(probe_api(trt), BuildRequest(precision, onnx_kind, **kwargs))


@pytest.mark.parametrize("text, expected", [("8.5.2.2", (8, 5)), ("8.6.1", (8, 6)), ("10.3.0", (10, 3)), ("11.4.0.106", (11, 4))])
def test_version_strings_of_every_packaging_parse(text, expected):
    assert parse_version(text) == expected


def test_unreadable_version_is_refused():
    with pytest.raises(ExportError, match="cannot read a TensorRT version"):
        parse_version("unknown")


@pytest.mark.parametrize("trt, generation", [(TRT85, "8"), (TRT86, "8"), (TRT103, "10"), (TRT1016, "10"), (TRT11, "11")])
def test_generation_comes_from_feature_probes(trt, generation):
    assert detect_generation(trt) == generation
    assert isinstance(HELPERS[generation](trt, probe_api(trt), None), {"8": Trt8Helper, "10": HELPERS["10"], "11": Trt11Helper}[generation])


def test_a_version_string_that_disagrees_does_not_fool_the_probes():
    liar = fake_trt("10.0.0", ["STRONGLY_TYPED"], ["TF32"], calibrator=False, progress=True)
    assert detect_generation(liar) == "11"


def test_tensorrt_older_than_8_5_is_refused():
    with pytest.raises(ExportError, match="older than 8.5"):
        detect_generation(TRT84)


def test_probes_reflect_removed_apis_in_11():
    api = probe_api(TRT11)
    assert (api.fp16_flag, api.int8_flag, api.calibrator, api.precision_constraints) == (False, False, False, False)
    assert api.progress_monitor and api.strongly_typed_flag
    assert probe_api(TRT85).progress_monitor is False


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
    assert "TensorRT 11.4.0.106 has no FP16 flag: pass the FP16 ONNX from `depth-export onnx --fp16`" in str(caught.value)


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


def test_calibration_cache_on_11_is_refused():
    with pytest.raises(ExportError, match="has no INT8 calibrator"):
        _plan(TRT11, "int8", calib_cache=True)


@pytest.mark.parametrize("trt", [TRT85, TRT103, TRT11])
def test_qdq_onnx_builds_int8_everywhere_without_a_calibrator(trt):
    plan = _plan(trt, "int8", onnx_kind="int8")
    assert not plan.use_calibrator
    assert ("INT8" in plan.builder_flags) == (trt is not TRT11)


def test_qdq_without_explicit_zero_points_is_refused_on_8x_only():
    with pytest.raises(ExportError, match="explicit zero point"):
        _plan(TRT85, "int8", onnx_kind="int8", qdq_zero_points_explicit=False)
    assert _plan(TRT103, "int8", onnx_kind="int8", qdq_zero_points_explicit=False).builder_flags


def test_calib_cache_with_qdq_or_other_precision_is_refused():
    with pytest.raises(ExportError, match="already holds Q/DQ"):
        _plan(TRT103, "int8", onnx_kind="int8", calib_cache=True)
    with pytest.raises(ExportError, match="only applies to --precision int8"):
        _plan(TRT103, "fp16", calib_cache=True)


# ----------------------------------------------------------------------------- other options


def test_opset_above_17_is_refused_on_8x_with_the_fix():
    with pytest.raises(ExportError, match="--opset 17"):
        _plan(TRT86, "fp32", onnx_opset=18)
    assert _plan(TRT103, "fp32", onnx_opset=18).generation == "10"


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
    assert _plan(TRT1016, "fp32", hardware_compatibility="same-compute-capability").hardware_level == "SAME_COMPUTE_CAPABILITY"


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
    trt = SimpleNamespace(**vars(TRT85), float32="float32")
    helper = Trt8Helper(trt, probe_api(trt), _plan(trt, "fp16"))
    assert helper.network_flags() == 1 << TRT85.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    config = RecordingConfig()
    network = FakeNetwork(["/encoder/conv1/Conv", "/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul", "/head/Mul_1", "/head/Mul_2"])
    head = ["/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul"]
    helper.set_precision(config, network, head, other_nodes={"/encoder/conv1/Conv", "/head/Mul_2"})
    assert set(config.set) == {trt.BuilderFlag.FP16, trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS}
    pinned = [layer.name for layer in network.layers if layer.precision == "float32"]
    # /head/Mul_1 is a second layer of the /head/Mul node; /head/Mul_2 is another ONNX node
    assert pinned == ["/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul", "/head/Mul_1"]
    assert network.layers[1].output_types == {0: "float32"}


def test_trt11_helper_touches_no_precision_flag():
    helper = Trt11Helper(TRT11, probe_api(TRT11), _plan(TRT11, "fp32"))
    assert helper.network_flags() == 0
    config = RecordingConfig()
    helper.set_precision(config, network=FakeNetwork(["/head/Mul"]), head=["/head/Mul"])
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
