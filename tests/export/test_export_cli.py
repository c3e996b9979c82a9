"""`depth-export` as a user runs it: exit codes, one-line errors, files written or not."""
from __future__ import annotations

import importlib.util
import json

import pytest

from edgedepth.export import onnx_info
from edgedepth.export.cli import main
from edgedepth.export.fp16_converters import CONVERTERS, converter_available

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_fp16_converter = pytest.mark.skipif(
    not any(converter_available(name) for name in CONVERTERS), reason="no FP16 converter installed"
)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected a message on stderr"
    return err[-1]


@needs_fp16_converter
def test_onnx_with_fp16_writes_both_graphs(checkpoint, tmp_path):
    out = tmp_path / "model.fp16.onnx"
    assert main(["onnx", "--checkpoint", str(checkpoint), "--output", str(out), "--fp16", "--no-simplify"]) == 0
    assert onnx_info.onnx_precision(out) == "fp16"
    assert onnx_info.onnx_precision(tmp_path / "model.onnx") == "fp32"
    assert onnx_info.read_spec(str(out)).provenance["precision"] == "fp16"


@needs_fp16_converter
def test_fp16_command_converts_an_existing_onnx(static_onnx, tmp_path, capsys):
    out = tmp_path / "half.onnx"
    assert main(["fp16", "--onnx", str(static_onnx), "--output", str(out)]) == 0
    assert onnx_info.onnx_precision(out) == "fp16"
    assert "nodes kept FP32" in _error_line(capsys)


def test_missing_checkpoint_is_one_line_and_exit_1(tmp_path, capsys):
    code = main(["onnx", "--checkpoint", str(tmp_path / "none.pt"), "--output", str(tmp_path / "m.onnx")])
    assert code == 1
    line = _error_line(capsys)
    assert line.startswith("depth-export: error:") and "none.pt" in line
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("argv", [
    ["onnx", "--checkpoint", "x.pt", "--output", "m.onnx", "--height", "64"],
    ["onnx", "--checkpoint", "x.pt", "--output", "m.onnx", "--dynamic", "--batch", "4"],
    ["onnx", "--checkpoint", "x.pt", "--output", "m.onnx", "--height", "100", "--width", "96"],  # D17: was 1
    ["onnx", "--checkpoint", "x.pt", "--output", "m.onnx", "--height", "38400", "--width", "96"],
    ["onnx", "--checkpoint", "x.pt", "--output", "m.onnx", "--opset", "5"],  # D17: was 1
    ["onnx", "--checkpoint", "x.pt", "--output", "m.onnx", "--opset", "seventeen"],
    ["engine", "--onnx", "m.onnx", "--output", "m.engine", "--precision", "fp16", "--max-shape", "1x3x256"],
    ["engine", "--onnx", "m.onnx", "--output", "m.engine", "--precision", "bf16"],
    ["engine", "--onnx", "m.onnx", "--output", "m.engine", "--precision", "fp16", "--workspace", "-1"],
    ["engine", "--onnx", "m.onnx", "--output", "m.engine", "--precision", "fp16", "--dla-core", "-1"],
    ["fp16", "--onnx", "m.onnx", "--data-max", "0"],
    [],
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_engine_without_tensorrt_says_what_to_install_and_writes_nothing(static_onnx, tmp_path, capsys):
    out = tmp_path / "model.engine"
    assert main(["engine", "--onnx", str(static_onnx), "--output", str(out), "--precision", "fp16"]) == 1
    line = _error_line(capsys)
    assert "needs TensorRT" in line and "pip install tensorrt-cu12" in line and "JetPack" in line
    assert list(tmp_path.iterdir()) == []


def test_int8_without_calibration_is_refused_before_tensorrt_is_needed(static_onnx, tmp_path, capsys):
    out = tmp_path / "model.engine"
    assert main(["engine", "--onnx", str(static_onnx), "--output", str(out), "--precision", "int8"]) == 1
    assert "depth-calib" in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_info_prints_spec_and_precision(static_onnx, capsys):
    assert main(["info", str(static_onnx)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == "fp32" and report["model_spec"]["height"] == 64
    assert report["inputs"][0]["shape"] == [1, 3, 64, 96]


def test_engine_path_imports_neither_torch_nor_opencv():
    """A Jetson runtime install has no torch: building an engine must not need it."""
    import subprocess
    import sys

    code = ("import sys, edgedepth.export.cli, edgedepth.export.trt_build;"
            " print('torch' in sys.modules, 'cv2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("spec_change, message", [
    ({"height": 38400, "width": 51200}, "at most 8192 pixels per side"),  # D15: was a numpy MemoryError
    ("hello", "must be a JSON object"),  # D16: was "unknown keys ['e', 'h', 'l', 'o']"
])
def test_a_checkpoint_with_an_absurd_spec_is_refused_in_one_line(checkpoint, tmp_path, capsys, spec_change, message):
    import torch

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    data["spec"] = {**data["spec"], **spec_change} if isinstance(spec_change, dict) else spec_change
    broken = tmp_path / "huge.pt"
    torch.save(data, broken)
    out = tmp_path / "x.onnx"
    assert main(["onnx", "--checkpoint", str(broken), "--output", str(out)]) == 1
    line = _error_line(capsys)
    assert message in line and "huge.pt" in line
    assert not out.exists()


@pytest.mark.parametrize("change, message", [
    ({"format_version": "abc"}, "format_version 'abc', not a number"),
    ({"format_version": None}, "format_version None, not a number"),
    ({"format_version": float("inf")}, "format_version inf, not a number"),  # was an OverflowError traceback
    ({"gpu": "Orin"}, "field gpu is 'Orin' (str), expected a JSON object"),  # was "string indices must be integers"
])
def test_info_on_an_engine_with_a_mangled_sidecar_is_one_line(tmp_path, capsys, change, message):
    """D6/D16: `depth-export info model.engine` with a hand-edited sidecar."""
    from edgedepth.spec import ModelSpec
    from edgedepth.trt.platform import GpuInfo
    from edgedepth.trt.sidecar import BuildOptions, EngineSidecar

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00random plan bytes")
    good = EngineSidecar(ModelSpec(64, 96), "10.3.0", "10", GpuInfo("Orin", "8.7"), "fp16", {}, {},
                         BuildOptions("fp16"), 1.0, "c" * 64, "e" * 64).to_dict()
    (tmp_path / "model.engine.json").write_text(json.dumps({**good, **change}))
    assert main(["info", str(engine)]) == 1
    line = _error_line(capsys)
    assert line.startswith("depth-export: error:") and message in line and "model.engine.json" in line


def test_info_on_a_folder_says_it_is_a_folder(tmp_path, capsys):
    """D16: a folder got "<folder>.json not found: the engine's provenance ... lives there"."""
    assert main(["info", str(tmp_path)]) == 2
    line = _error_line(capsys)
    assert f"{tmp_path} is a folder" in line and "not found" not in line


def test_info_on_a_missing_engine_names_the_engine(tmp_path, capsys):
    assert main(["info", str(tmp_path / "none.engine")]) == 1  # as a missing --checkpoint or --onnx
    line = _error_line(capsys)
    assert "none.engine does not exist" in line and ".json" not in line


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
@pytest.mark.parametrize("cache, message", [
    ("missing", "calibration cache {cache} not found: make one with `depth-calib --cache`"),
    ("garbage", "not a TensorRT header"),
    ("no key file", "has no key file model.calib.json"),
    ("other model", "is stale: model_sha256"),
    ("edited key", "key.input_shape [-1, 3, 64, 96]"),
])
def test_engine_checks_the_calibration_cache_without_tensorrt(static_onnx, tmp_path, capsys, cache, message):
    """D20: EXPORT.md says `engine` checks calibration without TensorRT, but a missing or garbage
    --calib-cache got only "needs TensorRT"."""
    from edgedepth.calib import legacy
    from edgedepth.export.onnx_info import read_spec

    path = tmp_path / "model.calib"
    key = legacy.cache_key(static_onnx, read_spec(static_onnx), 1, "minmax")
    if cache == "garbage":
        path.write_bytes(b"\x89PNG not a cache")
    elif cache == "no key file":
        path.write_bytes(b"TRT-8601-MinMaxCalibration\ninput: 3c010a14\n")
    elif cache in ("other model", "edited key"):
        legacy.write_cache(path, key, b"TRT-8601-MinMaxCalibration\ninput: 3c010a14\n")
        stored = json.loads((tmp_path / "model.calib.json").read_text())
        edit = {"other model": {"model_sha256": "0" * 64}, "edited key": {"input_shape": [-1, 3, 64, 96]}}[cache]
        stored["key"].update(edit)
        (tmp_path / "model.calib.json").write_text(json.dumps(stored))
    argv = ["engine", "--onnx", str(static_onnx), "--output", str(tmp_path / "m.engine"), "--precision", "int8",
            "--calib-cache", str(path)]
    assert main(argv) == 1
    line = _error_line(capsys)
    assert message.format(cache=path) in line and "needs TensorRT" not in line
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_engine_with_a_valid_calibration_cache_then_asks_for_tensorrt(static_onnx, tmp_path, capsys):
    from edgedepth.calib import legacy
    from edgedepth.export.onnx_info import read_spec

    path = tmp_path / "model.calib"
    legacy.write_cache(path, legacy.cache_key(static_onnx, read_spec(static_onnx), 1, "minmax"),
                       b"TRT-8601-MinMaxCalibration\ninput: 3c010a14\n")
    argv = ["engine", "--onnx", str(static_onnx), "--output", str(tmp_path / "m.engine"), "--precision", "int8",
            "--calib-cache", str(path)]
    assert main(argv) == 1
    assert "needs TensorRT" in _error_line(capsys)
