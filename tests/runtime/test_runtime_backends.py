"""The backend contract (shared by every backend), backend choice, and the ONNX Runtime backend."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgedepth.errors import BackendError, SpecError, UsageError
from edgedepth.preprocess import preprocess
from edgedepth.runtime.backend import (
    _BACKEND_CLASSES,
    BACKEND_OPTIONS,
    Backend,
    accepted_types,
    in_model_batches,
    open_backend,
    resolve_backend,
)
from edgedepth.runtime.ort_backend import PROVIDER_PREFERENCE, select_providers
from edgedepth.spec import ModelSpec

HAS_CHECKPOINT_API = importlib.util.find_spec("torch") is not None  # edgedepth.training imports torch


def _pytorch_checkpoint(tmp_path: Path) -> Path:
    from edgedepth.training.checkpoint import save_checkpoint
    from edgedepth.training.model import create_model

    spec = ModelSpec(height=64, width=96, max_depth=10.0, dynamic=True)
    path = tmp_path / "model.pt"
    save_checkpoint(path, create_model(spec), spec)
    return path


@pytest.fixture(params=["onnxruntime", "pytorch", pytest.param("tensorrt", marks=pytest.mark.tensorrt)])
def any_backend(request, tmp_path, tiny_dynamic_model, tensorrt_engine_factory):
    """Each backend, loaded from a dynamic-batch artifact (TensorRT only where TensorRT and a GPU exist)."""
    options = {"threads": 1}
    if request.param == "pytorch":
        if not HAS_CHECKPOINT_API:
            pytest.skip("edgedepth.training.checkpoint is not importable")
        path = _pytorch_checkpoint(tmp_path)
    elif request.param == "tensorrt":
        path, options = tensorrt_engine_factory(tiny_dynamic_model), {}
    else:
        path = tiny_dynamic_model.path
    with open_backend(str(path), **options) as backend:
        assert backend.name == request.param
        yield backend


def _batch(spec: ModelSpec, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (spec.height * 2, spec.width * 2, 3), dtype=np.uint8) for _ in range(count)]
    return np.concatenate([preprocess(image, spec) for image in images])


# --- the contract -------------------------------------------------------------------------------


def test_contract_output_is_float32_metres_in_the_spec_range(any_backend: Backend):
    spec = any_backend.spec
    depth = any_backend.infer(_batch(spec, 1))
    assert isinstance(spec, ModelSpec) and isinstance(any_backend.name, str)
    assert depth.dtype == np.float32 and depth.shape == (1, 1, spec.height, spec.width)
    assert np.isfinite(depth).all() and depth.min() >= 0.0 and depth.max() <= spec.max_depth


def test_contract_batch_equals_single_images(any_backend: Backend):
    batch = _batch(any_backend.spec, 2, seed=3)
    together = any_backend.infer(batch)
    apart = np.concatenate([any_backend.infer(batch[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(together, apart, rtol=1e-4, atol=1e-4)
    assert not np.allclose(together[0], together[1]), "different images must give different depth"


@pytest.mark.parametrize(
    "bad",
    [np.zeros((1, 3, 64, 96), np.float64), np.zeros((3, 64, 96), np.float32), np.zeros((1, 4, 64, 96), np.float32)],
    ids=["float64", "no-batch-axis", "four-channels"],
)
def test_contract_rejects_malformed_input_with_a_fix(any_backend: Backend, bad):
    with pytest.raises(BackendError, match="preprocess"):
        any_backend.infer(bad)


def test_contract_closed_backend_refuses_work(any_backend: Backend):
    any_backend.close()
    any_backend.close()  # twice is fine
    with pytest.raises(BackendError, match="closed"):
        any_backend.infer(_batch(any_backend.spec, 1))


# --- choosing a backend -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("m.engine", "tensorrt"), ("m.plan", "tensorrt"), ("m.onnx", "onnxruntime"), ("m.pt", "pytorch"),
     ("m.pth", "pytorch"), ("M.CKPT", "pytorch")],
)
def test_auto_picks_backend_by_file_type(name, expected):
    assert resolve_backend(name) == expected


def test_unknown_file_type_lists_what_is_accepted():
    with pytest.raises(BackendError) as info:
        resolve_backend("model.tflite")
    message = str(info.value)
    assert "'.tflite'" in message and ".engine" in message and ".onnx" in message and ".pt" in message
    assert accepted_types() in message


def test_explicit_backend_that_cannot_run_the_file_says_how_to_convert():
    with pytest.raises(BackendError, match="depth-export engine"):
        resolve_backend("model.onnx", "tensorrt")


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        open_backend(str(tmp_path / "absent.onnx"))


# --- ONNX Runtime ---------------------------------------------------------------------------------


def test_onnxruntime_matches_the_models_formula(tiny_model):
    batch = _batch(tiny_model.spec, 1, seed=5)
    with open_backend(str(tiny_model.path)) as backend:
        assert backend.spec == tiny_model.spec
        np.testing.assert_allclose(backend.infer(batch), tiny_model.reference(batch), rtol=1e-5, atol=1e-5)


def test_onnxruntime_fixed_batch_model_serves_bigger_batches(tiny_model):
    batch = _batch(tiny_model.spec, 3, seed=6)
    with open_backend(str(tiny_model.path)) as backend:
        np.testing.assert_allclose(backend.infer(batch), tiny_model.reference(batch), rtol=1e-5, atol=1e-5)


def test_a_fixed_batch_model_runs_model_batches_and_refuses_a_batch_that_is_no_multiple():
    # The split both the ONNX Runtime and the TensorRT backend use (TensorRT cannot run here).
    seen = []

    def run_one(part: np.ndarray) -> np.ndarray:
        seen.append(part[:, 0, 0, 0].tolist())
        return part[:, :1]

    batch = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1).repeat(3, axis=1)
    out = in_model_batches(batch, 2, run_one, "engine m.engine", "Build it with a dynamic batch")
    assert seen == [[0.0, 1.0], [2.0, 3.0]] and np.array_equal(out, batch[:, :1])
    assert in_model_batches(batch, None, run_one, "m.onnx", "").shape == (4, 1, 1, 1) and seen[-1] == [0, 1, 2, 3]
    with pytest.raises(BackendError, match=r"engine m.engine has a fixed batch of 2; got 3 images\. Build it"):
        in_model_batches(batch[:3], 2, run_one, "engine m.engine", "Build it with a dynamic batch")


def test_onnxruntime_static_model_refuses_other_sizes(tiny_model):
    with open_backend(str(tiny_model.path)) as backend:
        with pytest.raises(BackendError, match="64x96"):
            backend.infer(np.zeros((1, 3, 96, 128), np.float32))


def test_onnxruntime_dynamic_model_takes_other_multiples_of_32(tiny_dynamic_model):
    with open_backend(str(tiny_dynamic_model.path)) as backend:
        assert backend.infer(np.zeros((2, 3, 96, 128), np.float32)).shape == (2, 1, 96, 128)


def test_onnx_without_spec_is_refused_with_export_hint(tiny_model_factory):
    model = tiny_model_factory("bare.onnx", with_spec=False)
    with pytest.raises(SpecError, match="depth-export onnx"):
        open_backend(str(model.path))


def _with_spec(model_path: Path, out: Path, **changes) -> Path:
    """A copy of an ONNX whose metadata spec was edited (the graph untouched)."""
    import onnx

    model = onnx.load(str(model_path))
    prop = next(p for p in model.metadata_props if p.key == "edgedepth.model_spec")
    data = json.loads(prop.value)
    data.update(changes)
    prop.value = json.dumps(data)
    onnx.save(model, str(out))
    return out


def test_onnx_whose_spec_disagrees_with_its_graph_is_refused_naming_both(tiny_model, tmp_path):
    lying = _with_spec(tiny_model.path, tmp_path / "speclie.onnx", height=480, width=640)
    with pytest.raises(SpecError) as info:  # the one check (ModelSpec.check_graph_input), as export and calib
        open_backend(str(lying))
    message = str(info.value)
    assert "1x3x64x96" in message and "480x640" in message and "re-export it" in message


@pytest.mark.parametrize("shape, fits", [
    ([1, 3, 64, 96], True), (["N", 3, "H", "W"], True), ([None, 3, 64, "W"], True),
    ([1, 4, 64, 96], False), ([1, 3, 64, 128], False), ([1, 3, 64], False),
])
def test_graph_input_dims_are_checked_against_the_spec(shape, fits):
    spec = ModelSpec(height=64, width=96)
    if fits:
        spec.check_graph_input(shape, "m.onnx")
    else:
        refusal = r"spec says 1x3x64x96 \(NCHW\) but the graph input 'input' is .*re-export it"
        with pytest.raises(SpecError, match=refusal):
            spec.check_graph_input(shape, "m.onnx")


def test_a_dynamic_graph_takes_the_size_its_spec_names(tiny_dynamic_model, tmp_path):
    resized = _with_spec(tiny_dynamic_model.path, tmp_path / "resized.onnx", height=96, width=128, dynamic=False)
    with open_backend(str(resized)) as backend:
        assert backend.infer(np.zeros((1, 3, 96, 128), np.float32)).shape == (1, 1, 96, 128)


def test_onnx_with_fp16_inputs_and_outputs_runs(tiny_fp16_io_model):
    batch = _batch(tiny_fp16_io_model.spec, 2, seed=3)
    with open_backend(str(tiny_fp16_io_model.path)) as backend:
        depth = backend.infer(batch)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, tiny_fp16_io_model.reference(batch), rtol=2e-2, atol=2e-2)


def test_an_option_the_backend_does_not_take_is_a_usage_error(tiny_model):
    with pytest.raises(UsageError, match="onnxruntime backend takes no 'device' option.*'device' is for pytorch"):
        open_backend(str(tiny_model.path), device="cpu")


def test_the_option_table_matches_the_backend_constructors():
    for name, target in _BACKEND_CLASSES.items():
        module, cls = target.split(":")
        parameters = inspect.signature(getattr(importlib.import_module(module), cls).__init__).parameters
        assert set(BACKEND_OPTIONS[name]) == set(parameters) - {"self", "model_path"}, name


@pytest.mark.skipif(not HAS_CHECKPOINT_API, reason="torch is not installed")
@pytest.mark.parametrize("device, error, words", [
    ("tpu:9", UsageError, "use cpu, cuda or cuda:N"),
    ("mps", UsageError, "use cpu, cuda or cuda:N"),
    ("cuda:99", BackendError, "torch sees"),
])
def test_pytorch_devices_are_checked_before_loading(device, error, words):
    import torch

    from edgedepth.runtime.torch_backend import torch_device

    assert torch_device(torch, "cpu").type == "cpu"
    with pytest.raises(error, match=words):
        torch_device(torch, device)


def test_damaged_onnx_file_is_a_backend_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(BackendError, match="ONNX Runtime cannot load"):
        open_backend(str(path))


def test_provider_preference_is_tensorrt_then_cuda_then_cpu():
    everything = [
        "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider", "AzureExecutionProvider"
    ]
    assert select_providers(everything) == list(PROVIDER_PREFERENCE)
    cuda_then_cpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(cuda_then_cpu) == cuda_then_cpu
    assert select_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_requested_provider_missing_from_the_build_is_named():
    with pytest.raises(BackendError, match="CUDAExecutionProvider"):
        select_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])


def test_onnxruntime_reports_the_provider_it_runs_on(tiny_model):
    with open_backend(str(tiny_model.path), providers=["CPUExecutionProvider"], threads=1) as backend:
        assert backend.providers == ["CPUExecutionProvider"]
        assert "CPUExecutionProvider" in backend.detail


def test_runtime_never_imports_torch_on_the_onnxruntime_path(tiny_model, make_video, tmp_path):
    video = make_video(count=5)
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from edgedepth.runtime import open_backend
        from edgedepth.runtime.cli import run_main, bench_main
        with open_backend({str(tiny_model.path)!r}) as backend:
            backend.infer(np.zeros((1, 3, 64, 96), np.float32))
        code = run_main(["--model", {str(tiny_model.path)!r}, "--input", {str(video)!r}, "--no-display",
                         "--output", {str(tmp_path / 'o.mp4')!r}, "--quiet"])
        code += bench_main(["--model", {str(tiny_model.path)!r}, "--iterations", "2", "--warmup", "1", "--frames", "2"])
        print(json.dumps({{"code": code, "torch": "torch" in sys.modules, "tensorrt": "tensorrt" in sys.modules}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "torch": False, "tensorrt": False}
