"""Real TensorRT builds: engines run and agree with ONNX Runtime (skipped without TensorRT + GPU)."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from edgedepth.errors import ExportError
from edgedepth.io import sha256_file
from edgedepth.export import engine_meta
from edgedepth.export.probes import probe_batch, probe_batches
from edgedepth.export.trt_build import build_engine, import_tensorrt
from edgedepth.export.trt_compat import probe_api
from edgedepth.export.verify import abs_rel, cpu_session, run_session

from export_testing import SPEC

pytestmark = pytest.mark.tensorrt
FP32_BUDGET = 1e-3 * SPEC.max_depth  # TensorRT picks other kernels than ORT: 1 cm at 10 m
FP16_ABSREL_BUDGET = 2e-3


def _cudart():
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip("cuda-python is not installed")


def _check(result):
    err = result[0] if isinstance(result, tuple) else result
    assert int(err) == 0, f"CUDA error {err}"
    return result[1] if isinstance(result, tuple) and len(result) > 1 else None


def run_engine(engine_path: Path, batch: np.ndarray) -> np.ndarray:
    """Deserialize, run once with the name-based API (8.5+), return the output as float32."""
    trt, cudart = import_tensorrt(), _cudart()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    assert engine is not None, "deserialize_cuda_engine returned None"
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    (inp,) = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    (out,) = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    assert context.set_input_shape(inp, batch.shape)
    host_in = np.ascontiguousarray(batch.astype(trt.nptype(engine.get_tensor_dtype(inp))))
    host_out = np.empty(tuple(context.get_tensor_shape(out)), trt.nptype(engine.get_tensor_dtype(out)))
    d_in, d_out = _check(cudart.cudaMalloc(host_in.nbytes)), _check(cudart.cudaMalloc(host_out.nbytes))
    stream = _check(cudart.cudaStreamCreate())
    try:
        _check(cudart.cudaMemcpy(d_in, host_in.ctypes.data, host_in.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
        context.set_tensor_address(inp, int(d_in))
        context.set_tensor_address(out, int(d_out))
        assert context.execute_async_v3(int(stream))
        _check(cudart.cudaStreamSynchronize(stream))
        _check(cudart.cudaMemcpy(host_out.ctypes.data, d_out, host_out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
    finally:
        cudart.cudaFree(d_in)
        cudart.cudaFree(d_out)
        cudart.cudaStreamDestroy(stream)
    return host_out.astype(np.float32)


@pytest.fixture(scope="module")
def api():
    return probe_api(import_tensorrt())


def test_fp32_engine_matches_onnx_runtime_and_has_provenance(static_onnx, tmp_path, api):
    out = tmp_path / "fp32.engine"
    result = build_engine(static_onnx, out, precision="fp32", log=lambda _: None)
    session = cpu_session(static_onnx)
    for name, batch in probe_batches(SPEC, seed=5):
        assert np.max(np.abs(run_engine(out, batch) - run_session(session, batch))) <= FP32_BUDGET, name
    sidecar = engine_meta.read_sidecar(out)
    assert sidecar["tensorrt_version"] == api.version and sidecar["precision"] == "fp32"
    assert sidecar["source_onnx"]["sha256"] == sha256_file(static_onnx)
    assert sidecar["engine_sha256"] == sha256_file(out) and result.cache_hit is False


def test_fp16_engine_within_budget_on_this_generations_route(static_onnx, fp16_onnx, tmp_path, api):
    source = fp16_onnx if api.generation == "11" else static_onnx
    out = tmp_path / "fp16.engine"
    build_engine(source, out, precision="fp16", log=lambda _: None)
    session = cpu_session(static_onnx)
    for name, batch in probe_batches(SPEC, seed=6):  # extremes included
        got = run_engine(out, batch)
        assert np.isfinite(got).all(), name
        assert abs_rel(got, run_session(session, batch), floor=SPEC.min_depth) <= FP16_ABSREL_BUDGET, name


def test_fp16_onnx_builds_strongly_typed_from_10_on(fp16_onnx, tmp_path, api):
    if api.generation == "8":
        pytest.skip("TensorRT 8 has no strongly typed networks")
    out = tmp_path / "typed.engine"
    build_engine(fp16_onnx, out, precision="fp16", log=lambda _: None)
    assert engine_meta.read_sidecar(out)["build_options"]["strongly_typed"] is True


def test_tensorrt_11_refuses_fp16_from_an_fp32_onnx(static_onnx, tmp_path, api):
    if api.generation != "11":
        pytest.skip("only TensorRT 11 lacks the FP16 flag")
    with pytest.raises(ExportError, match="has no FP16 flag: pass the FP16 ONNX"):
        build_engine(static_onnx, tmp_path / "x.engine", precision="fp16", log=lambda _: None)
    assert not (tmp_path / "x.engine").exists()


def test_dynamic_engine_runs_inside_its_profile(dynamic_onnx, tmp_path):
    out = tmp_path / "dynamic.engine"
    build_engine(
        dynamic_onnx, out, precision="fp32", min_shape=(1, 3, 32, 64), opt_shape=(1, 3, 64, 96),
        max_shape=(2, 3, 128, 128), log=lambda _: None,
    )
    session = cpu_session(dynamic_onnx)
    for batch_size, height, width in [(1, 64, 96), (2, 32, 128), (2, 128, 128)]:
        batch = probe_batch("scene", SPEC, batch=batch_size, height=height, width=width)
        assert np.max(np.abs(run_engine(out, batch) - run_session(session, batch))) <= FP32_BUDGET


def test_cache_and_timing_cache_make_the_second_build_a_copy(static_onnx, tmp_path):
    cache, timing = tmp_path / "cache", tmp_path / "timing.cache"
    first = build_engine(static_onnx, tmp_path / "a.engine", precision="fp32", cache_dir=cache, timing_cache=timing, log=lambda _: None)
    assert timing.stat().st_size > 0 and not first.cache_hit
    second = build_engine(static_onnx, tmp_path / "b.engine", precision="fp32", cache_dir=cache, timing_cache=timing, log=lambda _: None)
    assert second.cache_hit
    assert (tmp_path / "a.engine").read_bytes() == (tmp_path / "b.engine").read_bytes()
    assert engine_meta.read_sidecar(tmp_path / "b.engine")["cache_key"] == first.sidecar["cache_key"]
