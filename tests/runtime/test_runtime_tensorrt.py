"""TensorRT backend: sidecar checks, version parsing and API dispatch (everywhere); real engines (GPU only)."""
from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgedepth.errors import BackendError
from edgedepth.export import engine_meta
from edgedepth.runtime import open_backend
from edgedepth.runtime.trt_backend import IOTensor, execute_v2, execute_v3, list_io_tensors
from edgedepth.runtime.trt_support import (
    EXECUTE_V2,
    EXECUTE_V3,
    RunningPlatform,
    check_sidecar,
    choose_execution_api,
    deserialize_failure_message,
    parse_sidecar,
    probe_execution_api,
    read_sidecar,
    rebuild_command,
)
from edgedepth.spec import ModelSpec

SPEC = ModelSpec(height=256, width=320, max_depth=10.0)


def sidecar_dict(tensorrt="10.3.0", gpu=("Orin", "8.7"), precision="fp16", version_compatible=False, hardware="none"):
    """A sidecar exactly as depth-export writes it."""
    options = {"precision": precision, "version_compatible": version_compatible, "hardware_compatibility": hardware}
    return engine_meta.engine_sidecar(
        SPEC, tensorrt, tensorrt.split(".")[0], engine_meta.GpuInfo(*gpu), precision,
        {"input": {"static": [1, 3, 256, 320]}}, "models/depth.onnx", "ab" * 32, options, 12.5, "cd" * 32, "ef" * 32,
    )


ORIN_JP62 = RunningPlatform("10.3.0", "Orin", "8.7")


# --- sidecar ------------------------------------------------------------------------------------------------------


def test_sidecar_written_by_depth_export_is_read(tmp_path):
    engine = tmp_path / "depth.engine"
    engine_meta.write_sidecar(engine, sidecar_dict())
    sidecar = read_sidecar(str(engine))
    assert sidecar.spec == SPEC and sidecar.precision == "fp16" and sidecar.tensorrt_version == "10.3.0"
    assert (sidecar.gpu_name, sidecar.compute_capability, sidecar.source_onnx) == ("Orin", "8.7", "depth.onnx")


def test_missing_sidecar_says_how_to_rebuild(tmp_path):
    with pytest.raises(BackendError, match="depth.engine.json not found.*depth-export engine"):
        read_sidecar(str(tmp_path / "depth.engine"))


@pytest.mark.parametrize(
    "content, match",
    [("{not json", "not readable JSON"), (json.dumps({"format": "other"}), "not an edgedepth engine sidecar"),
     (json.dumps({**sidecar_dict(), "model_spec": {"height": 250, "width": 320}}), "invalid model spec"),
     (json.dumps({k: v for k, v in sidecar_dict().items() if k != "gpu"}), "lacks or mangles 'gpu'")],
)
def test_broken_sidecars_are_explained(tmp_path, content, match):
    (tmp_path / "m.engine.json").write_text(content)
    with pytest.raises(BackendError, match=match):
        read_sidecar(str(tmp_path / "m.engine"))


def test_matching_platform_passes_without_warnings():
    assert check_sidecar(parse_sidecar(sidecar_dict()), ORIN_JP62, "depth.engine") == []


def test_tensorrt_mismatch_names_both_versions_and_the_rebuild_command():
    with pytest.raises(BackendError) as info:
        check_sidecar(parse_sidecar(sidecar_dict(tensorrt="8.5.2.2")), ORIN_JP62, "depth.engine")
    message = str(info.value)
    assert "TensorRT 8.5.2.2" in message and "10.3.0" in message
    assert "`depth-export engine --onnx depth.onnx --output depth.engine --precision fp16`" in message


def test_gpu_mismatch_names_both_gpus():
    running = RunningPlatform("10.3.0", "NVIDIA GeForce RTX 3060", "8.6")
    with pytest.raises(BackendError) as info:
        check_sidecar(parse_sidecar(sidecar_dict()), running, "depth.engine")
    message = str(info.value)
    assert "Orin (compute 8.7)" in message and "NVIDIA GeForce RTX 3060 (compute 8.6)" in message
    assert "depth-export engine --onnx depth.onnx" in message


def test_same_compute_other_gpu_model_only_warns():
    running = RunningPlatform("10.3.0", "NVIDIA GeForce RTX 3090", "8.6")
    warnings = check_sidecar(parse_sidecar(sidecar_dict(gpu=("NVIDIA RTX A6000", "8.6"))), running, "depth.engine")
    assert len(warnings) == 1 and "RTX A6000" in warnings[0] and "RTX 3090" in warnings[0]


def test_rebuild_command_repeats_the_build_options():
    sidecar = parse_sidecar(sidecar_dict(precision="int8", version_compatible=True, hardware="ampere+"))
    assert rebuild_command(sidecar, "x.engine") == (
        "depth-export engine --onnx depth.onnx --output x.engine --precision int8 --version-compatible "
        "--hardware-compatibility ampere+"
    )


def test_failed_deserialisation_quotes_tensorrt():
    lines = ["", "IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (expecting compute 8.7 got compute 8.6)"]
    message = deserialize_failure_message("m.engine", lines, parse_sidecar(sidecar_dict()))
    assert "expecting compute 8.7 got compute 8.6" in message and "depth-export engine --onnx depth.onnx" in message


# --- execution API per generation ----------------------------------------------------------------------------------


def test_execution_api_choice():
    assert choose_execution_api(True, True, True) == EXECUTE_V3  # 8.5 / 8.6: prefer v3
    assert choose_execution_api(True, True, False) == EXECUTE_V3  # 10.x / 11.x
    assert choose_execution_api(False, False, True) == EXECUTE_V2  # before the name API
    with pytest.raises(BackendError, match="8.5 and later"):
        choose_execution_api(True, False, False)


def _context(*methods):
    return SimpleNamespace(**{name: (lambda *a, **k: True) for name in methods})


def test_execution_api_is_probed_on_the_objects():
    engine_10 = SimpleNamespace(num_io_tensors=2)
    assert probe_execution_api(engine_10, _context("set_tensor_address", "execute_async_v3")) == EXECUTE_V3
    engine_84 = SimpleNamespace(num_bindings=2)
    assert probe_execution_api(engine_84, _context("execute_async_v2")) == EXECUTE_V2


FAKE_TRT = SimpleNamespace(TensorIOMode=SimpleNamespace(INPUT="in", OUTPUT="out"), nptype=lambda dtype: dtype)


def test_io_tensors_through_the_name_api():
    names = ["input", "depth"]
    engine = SimpleNamespace(
        num_io_tensors=2,
        get_tensor_name=lambda i: names[i],
        get_tensor_mode=lambda n: "in" if n == "input" else "out",
        get_tensor_shape=lambda n: (-1, 3, 256, 320) if n == "input" else (-1, 1, 256, 320),
        get_tensor_dtype=lambda n: np.float16 if n == "depth" else np.float32,
    )
    tensors = list_io_tensors(engine, FAKE_TRT)
    assert tensors == [IOTensor("input", True, (-1, 3, 256, 320), np.dtype(np.float32), 0),
                       IOTensor("depth", False, (-1, 1, 256, 320), np.dtype(np.float16), 1)]


def test_io_tensors_through_the_binding_api():
    names = ["depth", "input"]
    engine = SimpleNamespace(
        num_bindings=2,
        get_binding_name=lambda i: names[i],
        binding_is_input=lambda i: names[i] == "input",
        get_binding_shape=lambda i: (1, 1, 256, 320) if i == 0 else (1, 3, 256, 320),
        get_binding_dtype=lambda i: np.float32,
    )
    tensors = list_io_tensors(engine, FAKE_TRT)
    assert [(t.name, t.is_input, t.index) for t in tensors] == [("depth", False, 0), ("input", True, 1)]


def test_execute_helpers_hand_tensorrt_the_right_pointers():
    calls = []
    context = SimpleNamespace(
        set_tensor_address=lambda name, ptr: calls.append(("address", name, ptr)),
        execute_async_v3=lambda stream: calls.append(("v3", stream)) or True,
        execute_async_v2=lambda bindings, stream_handle: calls.append(("v2", bindings, stream_handle)) or True,
    )
    addresses = {"input": 1000, "depth": 2000}
    execute_v3(context, addresses, 77)
    tensors = [IOTensor("depth", False, (1,), np.dtype(np.float32), 0), IOTensor("input", True, (1,), np.dtype(np.float32), 1)]
    execute_v2(context, tensors, addresses, 77)
    assert calls == [("address", "input", 1000), ("address", "depth", 2000), ("v3", 77), ("v2", [2000, 1000], 77)]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_engine_without_tensorrt_installed_says_where_to_get_it(tmp_path):
    engine = tmp_path / "depth.engine"
    engine.write_bytes(b"plan")
    engine_meta.write_sidecar(engine, sidecar_dict())
    with pytest.raises(BackendError, match="python3-libnvinfer.*--backend onnxruntime"):
        open_backend(str(engine))


# --- real engines (TensorRT + GPU) ------------------------------------------------------------------------------------


@pytest.mark.tensorrt
def test_tensorrt_engine_matches_the_models_formula(tiny_model, tensorrt_engine_factory):
    engine = tensorrt_engine_factory(tiny_model)
    batch = np.random.default_rng(0).normal(0, 1, (1, 3, 64, 96)).astype(np.float32)
    with open_backend(str(engine)) as backend:
        np.testing.assert_allclose(backend.infer(batch), tiny_model.reference(batch), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(backend.infer(2 * batch), tiny_model.reference(2 * batch), rtol=1e-3, atol=1e-3)


@pytest.mark.tensorrt
def test_tensorrt_version_mismatch_is_refused_before_loading(tiny_model, tensorrt_engine_factory):
    engine = tensorrt_engine_factory(tiny_model)
    data = engine_meta.read_sidecar(engine)
    data["tensorrt_version"] = "7.2.3"
    engine_meta.write_sidecar(engine, data)
    with pytest.raises(BackendError, match="built with TensorRT 7.2.3 but this machine has .*depth-export engine --onnx"):
        open_backend(str(engine))


@pytest.mark.tensorrt
def test_damaged_engine_is_a_clear_error(tiny_model, tensorrt_engine_factory):
    engine = tensorrt_engine_factory(tiny_model)
    engine.write_bytes(engine.read_bytes()[: len(engine.read_bytes()) // 3])
    with pytest.raises(BackendError, match="could not deserialise"):
        open_backend(str(engine))
