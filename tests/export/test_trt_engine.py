"""Real TensorRT builds: engines run and agree with ONNX Runtime (skipped without TensorRT + GPU).

Engines are run here with TensorRT's own API (not the runtime backend, which has its own tests),
on device memory from :mod:`edgedepth.trt.memory`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgedepth.agreement import compare_depth
from edgedepth.errors import ExportError
from edgedepth.export.trt_build import build_engine
from edgedepth.io import sha256_file
from edgedepth.onnxrt import cpu_session, run_session
from edgedepth.probes import probe_batch, probe_batches
from edgedepth.trt.generation import probe_api
from edgedepth.trt.imports import import_tensorrt
from edgedepth.trt.memory import open_cuda_memory
from edgedepth.trt.sidecar import read_sidecar

from export_testing import SPEC

pytestmark = pytest.mark.tensorrt
FP32_BUDGET = 1e-3 * SPEC.max_depth  # TensorRT picks other kernels than ORT: 1 cm at 10 m
FP16_ABSREL_BUDGET = 2e-3


def run_engine(engine_path: Path, batch: np.ndarray) -> np.ndarray:
    """Deserialize, run once with the name-based API (8.5+), return the output as float32."""
    trt = import_tensorrt()
    with open_cuda_memory() as cuda, cuda.activate():
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        assert engine is not None, "deserialize_cuda_engine returned None"
        context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        (inp,) = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        (out,) = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        assert context.set_input_shape(inp, batch.shape)
        host_in = cuda.pinned(batch.shape, trt.nptype(engine.get_tensor_dtype(inp)))
        host_out = cuda.pinned(tuple(context.get_tensor_shape(out)), trt.nptype(engine.get_tensor_dtype(out)))
        host_in[...] = batch
        d_in, d_out = cuda.device(host_in.nbytes), cuda.device(host_out.nbytes)
        context.set_tensor_address(inp, d_in)
        context.set_tensor_address(out, d_out)
        cuda.copy_to_device_async(d_in, host_in)
        assert context.execute_async_v3(cuda.stream_handle)
        cuda.copy_to_host_async(host_out, d_out)
        cuda.synchronize()
        result = host_out.astype(np.float32)
        del context, engine, runtime
    return result


@pytest.fixture(scope="module")
def api():
    return probe_api(import_tensorrt())


def test_fp32_engine_matches_onnx_runtime_and_has_provenance(static_onnx, tmp_path, api):
    out = tmp_path / "fp32.engine"
    result = build_engine(static_onnx, out, precision="fp32", log=lambda _: None)
    session = cpu_session(static_onnx)
    for name, batch in probe_batches(SPEC, seed=5):
        assert np.max(np.abs(run_engine(out, batch) - run_session(session, batch))) <= FP32_BUDGET, name
    sidecar = read_sidecar(out)
    assert sidecar.tensorrt_version == api.version and sidecar.precision == "fp32"
    assert sidecar.source_onnx["sha256"] == sha256_file(static_onnx)
    assert sidecar.engine_sha256 == sha256_file(out) and result.cache_hit is False
    assert sidecar.build_options.cleared_flags == ("TF32",) and sidecar.gpu.machine


def test_fp16_engine_within_budget_on_this_generations_route(static_onnx, fp16_onnx, tmp_path, api):
    source = fp16_onnx if api.generation == "11" else static_onnx
    out = tmp_path / "fp16.engine"
    build_engine(source, out, precision="fp16", log=lambda _: None)
    options = read_sidecar(out).build_options
    # The head is pinned to FP32 except on TensorRT 11 (weak typing).
    assert bool(options.fp32_nodes) == (api.generation != "11") and "TF32" in options.cleared_flags
    session = cpu_session(static_onnx)
    for name, batch in probe_batches(SPEC, seed=6):  # extremes included
        got = run_engine(out, batch)
        assert np.isfinite(got).all(), name
        abs_rel = compare_depth(run_session(session, batch), got, min_depth=SPEC.min_depth)["abs_rel"]
        assert abs_rel <= FP16_ABSREL_BUDGET, name


def test_fp16_onnx_builds_strongly_typed_from_10_on(fp16_onnx, tmp_path, api):
    if api.generation == "8":
        pytest.skip("TensorRT 8 has no strongly typed networks")
    out = tmp_path / "typed.engine"
    build_engine(fp16_onnx, out, precision="fp16", log=lambda _: None)
    assert read_sidecar(out).build_options.strongly_typed is True


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
    options = dict(precision="fp32", cache_dir=cache, timing_cache=timing, log=lambda _: None)
    first = build_engine(static_onnx, tmp_path / "a.engine", **options)
    assert timing.stat().st_size > 0 and not first.cache_hit
    second = build_engine(static_onnx, tmp_path / "b.engine", **options)
    assert second.cache_hit
    assert (tmp_path / "a.engine").read_bytes() == (tmp_path / "b.engine").read_bytes()
    assert read_sidecar(tmp_path / "b.engine").cache_key == first.sidecar.cache_key


def test_an_onnx_the_installed_tensorrt_would_not_parse_is_refused_before_building(tmp_path, api):
    """The conformance check runs for the installed TensorRT before the builder sees the graph."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Bernoulli", ["input"], ["coins"], name="coin"),
             helper.make_node("Conv", ["coins", "w", "b"], ["logits"], name="head_conv"),
             helper.make_node("Sigmoid", ["logits"], ["unit"], name="head_sigmoid"),
             helper.make_node("Mul", ["unit", "scale"], ["depth"], name="head_mul")]
    weights = [onnx.numpy_helper.from_array(rng.normal(0, 1, (1, 3, 1, 1)).astype(np.float32), "w"),
               onnx.numpy_helper.from_array(np.zeros(1, np.float32), "b"),
               onnx.numpy_helper.from_array(np.array(SPEC.max_depth, np.float32), "scale")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 96])],
                              [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, 64, 96])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in SPEC.to_metadata_props().items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "coin.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match="would not parse on TensorRT .*coin: operator Bernoulli"):
        build_engine(path, tmp_path / "coin.engine", precision="fp32", log=lambda _: None)
    assert not (tmp_path / "coin.engine").exists()
