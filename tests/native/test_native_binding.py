"""edgedepth._native (the C++ preprocessing and postprocessing, `make native`) against the Python path."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgedepth.colormap import colorize_depth
from edgedepth.preprocess import preprocess
from edgedepth.runtime.cli import run_main
from edgedepth.runtime.sinks import depth_to_png_mm
from edgedepth.spec import ModelSpec

try:
    from edgedepth import _native
except ImportError as exc:  # the pure-Python install: nothing native to test
    pytest.skip(f"edgedepth._native is not built ({exc}): run `make native`", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
SIZES = [(1, 1), (7, 5), (64, 96), (240, 320), (480, 641), (720, 1280)]
ORDERS = ["BGR", "RGB"]


def runtime_fixtures():
    """tests/runtime/conftest.py as a module: its tiny ONNX depth model builder, not a copy of it."""
    name = "runtime_fixtures_for_native_tests"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "runtime" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.mark.parametrize("model_order", ORDERS)
@pytest.mark.parametrize("input_order", ORDERS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
def test_native_preprocess_equals_python(size, input_order, model_order):
    rng = np.random.default_rng(size[0] * 1000 + size[1])
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    spec = ModelSpec(height=64, width=96, color_order=model_order, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    expected = preprocess(image, spec, input_order)
    native = _native.preprocess(image, _native.ModelSpec.from_json(spec.to_json()), input_order)
    assert native.dtype == np.float32 and native.shape == expected.shape == (1, 3, 64, 96)
    assert np.abs(native - expected).max() <= 1e-5


def test_native_preprocess_takes_the_spec_size_unresized():
    """A frame already at the network size is not resampled (Python returns it as it is)."""
    image = np.random.default_rng(3).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    spec = ModelSpec(height=32, width=64)
    native = _native.preprocess(image, _native.ModelSpec.from_json(spec.to_json()), "BGR")
    assert np.abs(native - preprocess(image, spec, "BGR")).max() <= 1e-5


@pytest.mark.parametrize("colormap", ["turbo", "inferno", "magma", "viridis", "gray"])
def test_native_colormap_equals_python(colormap):
    depth = np.random.default_rng(4).uniform(0.05, 12.0, (48, 80)).astype(np.float32)
    depth[0, :3] = (np.nan, np.inf, -np.inf)
    native = _native.colorize_depth(depth, 0.1, 10.0, colormap)
    assert np.array_equal(native, colorize_depth(depth, 0.1, 10.0, colormap))


def random_depth(seed: int = 4) -> np.ndarray:
    depth = np.random.default_rng(seed).uniform(0.05, 70.0, (48, 80)).astype(np.float32)
    depth[0, :5] = (np.nan, np.inf, -np.inf, -1.0, 0.0005)
    return depth


def test_native_millimetres_equal_the_depth_png():
    depth = random_depth()
    assert np.array_equal(_native.depth_to_mm(depth), depth_to_png_mm(depth))


def test_native_point_cloud_is_the_pinhole_formula():
    depth = random_depth()
    points = _native.point_cloud(depth, 50.0, 60.0, 40.0, 24.0)
    v, u = np.mgrid[0:48, 0:80].astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    expected = np.stack([(u - 40.0) * depth / 50.0, (v - 24.0) * depth / 60.0, depth], -1)
    assert np.allclose(points[valid], expected[valid], rtol=1e-6, atol=1e-6)
    assert np.isnan(points[~valid]).all()


def test_native_preprocess_refuses_a_grey_image_in_one_line():
    spec = _native.ModelSpec.from_json(ModelSpec(height=32, width=32).to_json())
    with pytest.raises(Exception, match="HxWx3 uint8") as caught:
        _native.preprocess(np.zeros((32, 32), np.uint8), spec, "BGR")
    assert "\n" not in str(caught.value)


def _depth_files(folder: Path):
    return {path.name: np.load(path) for path in sorted(folder.glob("*.npy"))}


def test_depth_run_native_preprocessing_gives_the_default_depth(tmp_path):
    fixtures = runtime_fixtures()
    model = fixtures.build_tiny_onnx(tmp_path / "tiny.onnx")
    video = fixtures.write_video(tmp_path / "clip.mp4", fixtures.moving_frames(8, 320, 240))
    depths = {}
    for implementation in ("python", "native"):
        folder = tmp_path / implementation
        code = run_main(["--model", str(model.path), "--input", str(video), "--no-display", "--quiet",
                         "--save-depth", str(folder), "--depth-format", "npy", "--preprocess", implementation])
        assert code == 0
        depths[implementation] = _depth_files(folder)
    assert len(depths["python"]) == 8 and depths["python"].keys() == depths["native"].keys()
    for name, expected in depths["python"].items():
        assert np.abs(depths["native"][name] - expected).max() <= 1e-4, name


def test_depth_run_without_the_built_module_is_a_usage_error(monkeypatch, tmp_path, capsys):
    fixtures = runtime_fixtures()
    model = fixtures.build_tiny_onnx(tmp_path / "tiny.onnx")
    monkeypatch.setitem(sys.modules, "edgedepth._native", None)  # as if never built
    monkeypatch.delattr("edgedepth._native", raising=False)
    code = run_main(["--model", str(model.path), "--input", str(tmp_path), "--preprocess", "native"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "make native" in err and len(err.splitlines()) == 1


@pytest.mark.gpu
def test_cuda_kernels_equal_python():
    problem = _native.cuda_problem()
    if problem and os.environ.get("EDGEDEPTH_REQUIRE_GPU", "") in ("", "0"):
        pytest.skip(problem)
    assert not problem, problem
    spec = ModelSpec(height=256, width=320)
    native_spec = _native.ModelSpec.from_json(spec.to_json())
    for size in [(720, 1280), (1080, 1920), (37, 53)]:
        image = np.random.default_rng(size[0]).integers(0, 256, (*size, 3), dtype=np.uint8)
        for order in ORDERS:
            result = _native.cuda_preprocess(image, native_spec, order)
            assert np.abs(result - preprocess(image, spec, order)).max() <= 1e-5
    depth = random_depth()
    assert np.array_equal(_native.cuda_colorize_depth(depth, 0.1, 10.0), colorize_depth(depth, 0.1, 10.0))
    assert np.array_equal(_native.cuda_depth_to_mm(depth), depth_to_png_mm(depth))
    points, reference = (f(depth, 50.0, 60.0, 40.0, 24.0) for f in (_native.cuda_point_cloud, _native.point_cloud))
    assert np.array_equal(points, reference, equal_nan=True)
