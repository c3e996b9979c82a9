"""The engine sidecar: one dataclass writes and reads it; the compatibility verdicts the runtime
relies on (TensorRT release, compute capability, platform), with the rebuild command."""
from __future__ import annotations

import json

import pytest

from edgedepth.errors import DeviceError, ExportError
from edgedepth.spec import ModelSpec
from edgedepth.trt.platform import GpuInfo
from edgedepth.trt.sidecar import (
    BuildOptions,
    EngineSidecar,
    check_compatible,
    compatibility_problem,
    deserialize_failure_message,
    read_sidecar,
    rebuild_command,
    sidecar_path,
    write_sidecar,
)

SPEC = ModelSpec(256, 320, max_depth=20.0, provenance={"precision": "fp16"})
ORIN = GpuInfo("Orin", "8.7", integrated=True, machine="aarch64", system="Linux")
ORIN_NX = GpuInfo("Orin NX", "8.7", integrated=True, machine="aarch64", system="Linux")
RTX = GpuInfo("NVIDIA GeForce RTX 4090", "8.9", integrated=False, machine="x86_64", system="Linux")
A100 = GpuInfo("NVIDIA A100", "8.0", integrated=False, machine="x86_64", system="Linux")
SHAPES = {"input": {"static": [1, 3, 256, 320]}}


def sidecar(trt="10.3.0", gpu=ORIN, precision="fp16", **options) -> EngineSidecar:
    """A sidecar as depth-export writes it."""
    return EngineSidecar(
        model_spec=SPEC, tensorrt_version=trt, tensorrt_generation=trt.split(".")[0], gpu=gpu, precision=precision,
        shapes=SHAPES, source_onnx={"name": "depth.onnx", "sha256": "b" * 64},
        build_options=BuildOptions(precision=precision, **options), build_seconds=93.456, engine_sha256="c" * 64,
        cache_key="e" * 64,
    )


def test_sidecar_round_trips_through_its_file(tmp_path):
    engine = tmp_path / "model.engine"
    written = sidecar(fp32_nodes=("/head/conv/Conv",), unquantized_precision=None)
    write_sidecar(engine, written)
    assert sidecar_path(engine).name == "model.engine.json"
    read = read_sidecar(engine)
    assert read == written.replace(build_seconds=93.46)
    data = json.loads(sidecar_path(engine).read_text())
    assert data["gpu"] == {
        "name": "Orin", "compute_capability": "8.7", "integrated": True, "machine": "aarch64", "system": "Linux"
    }
    assert data["build_options"]["fp32_nodes"] == ["/head/conv/Conv"] and data["format_version"] == 2


def test_a_version_1_sidecar_without_platform_fields_still_reads(tmp_path):
    data = sidecar().to_dict()
    data["format_version"] = 1
    data["gpu"] = {"name": "Orin", "compute_capability": "8.7"}
    data["build_options"] = {"precision": "fp16", "workspace_gib": None, "strongly_typed": False}
    (tmp_path / "old.engine.json").write_text(json.dumps(data))
    old = read_sidecar(tmp_path / "old.engine")
    assert old.gpu.integrated is None and old.build_options.precision == "fp16"
    assert compatibility_problem(old, "10.3.0", ORIN) is None  # unknown platform fields are not held against it


def test_missing_sidecar_says_how_to_rebuild(tmp_path):
    with pytest.raises(ExportError, match="depth.engine.json not found.*depth-export engine"):
        read_sidecar(tmp_path / "depth.engine")


@pytest.mark.parametrize("content, match", [
    ("{not json", "not readable JSON"),
    (json.dumps({"format": "other"}), "not an edgedepth engine sidecar"),
    (json.dumps({**sidecar().to_dict(), "format_version": "two"}), "format_version 'two', not a number"),
    (json.dumps({**sidecar().to_dict(), "format_version": 9}), "upgrade edgedepth"),
    (json.dumps({**sidecar().to_dict(), "model_spec": {"height": 250, "width": 320}}), "invalid model spec"),
    (json.dumps({k: v for k, v in sidecar().to_dict().items() if k != "gpu"}), "lacks the field gpu; rebuild"),
])
def test_broken_sidecars_are_explained_in_one_line(tmp_path, content, match):
    (tmp_path / "m.engine.json").write_text(content)
    with pytest.raises(ExportError, match=match) as caught:
        read_sidecar(tmp_path / "m.engine")
    assert "\n" not in str(caught.value)


def _with(**changes) -> str:
    return json.dumps({**sidecar().to_dict(), **changes})


@pytest.mark.parametrize("content, match", [
    (_with(format_version="abc"), "format_version 'abc', not a number"),  # D6
    (_with(format_version=None), "format_version None, not a number"),  # D6
    (_with(format_version=[2]), "format_version \\[2\\], not a number"),
    (_with(format_version=2.5), "format_version 2.5, not a number"),
    (_with(format_version=True), "format_version True, not a number"),
    (json.dumps({**sidecar().to_dict(), "format_version": float("inf")}), "format_version inf, not a number"),
    (_with(gpu="Orin"), "field gpu is 'Orin' \\(str\\), expected a JSON object"),  # D16
    (_with(gpu={"name": "Orin"}), "lacks the field gpu.compute_capability"),
    (_with(gpu={"name": ["Orin"], "compute_capability": "8.7"}), "field gpu.name is \\['Orin'\\]"),
    (_with(shapes=[1, 3, 64, 64]), "field shapes is \\[1, 3, 64, 64\\] \\(list\\), expected a JSON object"),
    (_with(source_onnx="depth.onnx"), "field source_onnx is 'depth.onnx'"),
    (_with(build_options=["fp16"]), "field build_options is \\['fp16'\\]"),
    (_with(build_options={"precision": "fp16", "fp32_nodes": "abc"}), "field build_options.fp32_nodes is 'abc'"),
    (_with(build_options={"precision": "fp16", "workspace_gib": "lots"}), "build_options.workspace_gib is 'lots'"),
    (_with(model_spec="hello"), "invalid model spec \\(model spec must be a JSON object"),
    (_with(precision="fp8"), "field precision is 'fp8' \\(str\\), expected one of fp32, fp16, int8"),
    (_with(build_seconds="slow"), "field build_seconds is 'slow'"),
    (_with(tensorrt_version=None), "field tensorrt_version is None"),
])
def test_mangled_sidecar_fields_are_named_in_one_line(tmp_path, content, match):
    """D6/D16: a non-integer format_version or a gpu given as a string gave a traceback or
    "lacks or mangles string indices must be integers"; now the field and what it should be."""
    (tmp_path / "m.engine.json").write_text(content)
    with pytest.raises(ExportError, match=match) as caught:
        read_sidecar(tmp_path / "m.engine")
    message = str(caught.value)
    assert "\n" not in message and "string indices" not in message and "rebuild the engine" in message


def test_compatibility_verdicts():
    assert compatibility_problem(sidecar(), "10.3.0", ORIN) is None
    assert compatibility_problem(sidecar(), "10.3.0.30", ORIN) is None  # JetPack's 4-field spelling
    assert "built with TensorRT 10.3.0 but this machine has 10.7.0" in compatibility_problem(sidecar(), "10.7.0", ORIN)
    desktop = sidecar(gpu=GpuInfo("NVIDIA RTX A2000", "8.7", integrated=False, machine="x86_64", system="Linux"))
    assert "not portable" in compatibility_problem(desktop, "10.3.0", ORIN)  # same compute, other platform
    rtx_on_arm = GpuInfo("RTX", "8.9", False, "aarch64", "Linux")
    assert "aarch64" in compatibility_problem(sidecar(gpu=RTX), "10.3.0", rtx_on_arm)
    assert "built for NVIDIA GeForce RTX 4090 (compute 8.9)" in compatibility_problem(sidecar(gpu=RTX), "10.3.0", A100)


def test_version_compatible_engines_run_on_later_tensorrt_one_major_step():
    built_8 = sidecar(trt="8.6.2.3", version_compatible=True)
    assert compatibility_problem(built_8, "9.3.0", ORIN) is None  # 8 -> 9
    assert compatibility_problem(built_8, "10.3.0", ORIN) is None  # 8 -> 10
    assert "8->10, 9->10, 10->11" in compatibility_problem(built_8, "11.4.0.106", ORIN)  # 8 -> 11 is not supported
    built_10 = sidecar(trt="10.3.0", gpu=RTX, version_compatible=True)
    assert compatibility_problem(built_10, "11.4.0.106", RTX) is None
    assert "same or a later TensorRT" in compatibility_problem(built_10, "10.1.0", RTX)


def test_hardware_compatible_engines_need_a_discrete_ampere_or_newer_gpu():
    ampere_plus = sidecar(gpu=RTX, hardware_compatibility="ampere+")
    assert compatibility_problem(ampere_plus, "10.3.0", A100) is None
    t4 = GpuInfo("Tesla T4", "7.5", False, "x86_64", "Linux")
    assert "Tesla T4" in compatibility_problem(ampere_plus, "10.3.0", t4)
    # Platform aside, Jetson is refused.
    on_orin = GpuInfo("Orin", "8.7", integrated=False, machine="x86_64", system="Linux")
    assert compatibility_problem(ampere_plus, "10.3.0", on_orin.__class__(**{**on_orin.to_dict(), "integrated": True}))
    same_cc = sidecar(hardware_compatibility="same-compute-capability")
    assert compatibility_problem(same_cc, "10.3.0", ORIN_NX) is None


def test_check_refuses_with_the_rebuild_command_and_warns_on_another_gpu_model():
    with pytest.raises(DeviceError) as caught:
        check_compatible(sidecar(trt="8.5.2.2"), "10.3.0", ORIN, "depth.engine")
    assert "TensorRT 8.5.2.2" in str(caught.value)
    assert "`depth-export engine --onnx depth.onnx --output depth.engine --precision fp16`" in str(caught.value)
    warnings = check_compatible(sidecar(), "10.3.0", ORIN_NX, "depth.engine")
    assert len(warnings) == 1 and "Orin NX" in warnings[0]
    assert check_compatible(sidecar(), "10.3.0", ORIN, "depth.engine") == []


def test_rebuild_command_repeats_the_build_options():
    built = sidecar(precision="int8", version_compatible=True, hardware_compatibility="ampere+")
    assert rebuild_command(built, "x.engine") == (
        "depth-export engine --onnx depth.onnx --output x.engine --precision int8 --version-compatible "
        "--hardware-compatibility ampere+"
    )
    assert rebuild_command(sidecar(dla_core=1), "x.engine").endswith("--dla-core 1")


def test_failed_deserialisation_quotes_tensorrt():
    lines = [
        "", "IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (expecting compute 8.7 got compute 8.6)"
    ]
    message = deserialize_failure_message("m.engine", lines, sidecar())
    assert "expecting compute 8.7 got compute 8.6" in message and "depth-export engine --onnx depth.onnx" in message
