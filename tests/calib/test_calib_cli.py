"""depth-calib's command line: usage errors exit 2, failures exit 1 with one line, the TensorRT
cache path is wired to the same calibration images."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgedepth.calib import legacy
from edgedepth.calib.cli import main
from edgedepth.calib.quantizers import OrtQuantizer
from edgedepth.trt import imports


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


@pytest.mark.parametrize("argv", [
    [],
    ["--onnx", "m.onnx", "--data", "imgs"],  # nothing to write
    ["--onnx", "m.onnx", "--output", "o.onnx"],  # no data
    ["--onnx", "m.onnx", "--data", "imgs", "--load-set", "s.npy", "--output", "o.onnx"],
    ["--onnx", "m.onnx", "--data", "imgs", "--output", "o.onnx", "--method", "kl"],
    ["--onnx", "m.onnx", "--data", "imgs", "--output", "o.onnx", "--quantizer", "tensorrt"],
    ["--onnx", "m.onnx", "--data", "imgs", "--output", "o.onnx", "--num-images", "0"],  # D17: was 1
    ["--onnx", "m.onnx", "--data", "imgs", "--output", "o.onnx", "--num-eval", "-1"],
    ["--onnx", "m.onnx", "--data", "imgs", "--output", "o.onnx", "--max-fallback", "-2"],
    ["--onnx", "m.onnx", "--data", "imgs", "--output", "o.onnx", "--sensitivity-top-k", "x"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error:" in _error_line(capsys)


def test_missing_onnx_is_a_one_line_failure(tmp_path, capsys):
    argv = ["--onnx", str(tmp_path / "none.onnx"), "--data", str(tmp_path), "--output", str(tmp_path / "o.onnx")]
    assert main(argv) == 1
    line = _error_line(capsys)
    assert line.startswith("depth-calib: error:") and "none.onnx" in line and "depth-export onnx" in line


def test_output_may_not_overwrite_the_fp32_model(small, capsys):
    onnx_path, folder = small
    assert main(["--onnx", str(onnx_path), "--data", str(folder), "--output", str(onnx_path)]) == 2  # usage
    assert "is the --onnx file: it would be overwritten" in _error_line(capsys)


def test_an_int8_model_is_refused_as_input(small, tmp_path, capsys):
    onnx_path, folder = small
    data = np.zeros((2, 3, 32, 32), np.float32)
    OrtQuantizer(onnx_path, data, "minmax", tmp_path, "input").quantize(tmp_path / "q.onnx", [])
    assert main(["--onnx", str(tmp_path / "q.onnx"), "--data", str(folder), "--output", str(tmp_path / "o.onnx")]) == 1
    assert "is already INT8: calibrate the FP32 ONNX" in _error_line(capsys)


def test_bad_budget_file_is_a_one_line_failure(small, tmp_path, capsys):
    onnx_path, folder = small
    (tmp_path / "b.yaml").write_text("int8:\n  absrel: 0.1\n")
    argv = ["--onnx", str(onnx_path), "--data", str(folder), "--output", str(tmp_path / "o.onnx"),
            "--budget", str(tmp_path / "b.yaml")]
    assert main(argv) == 2  # the command names a bad file: a usage error
    assert "unknown budget key 'absrel' under int8" in _error_line(capsys)


def test_cache_without_tensorrt_fails_before_any_work(small, tmp_path, monkeypatch, capsys):
    onnx_path, folder = small
    monkeypatch.setattr(imports, "tensorrt_installed", lambda: False)
    assert main(["--onnx", str(onnx_path), "--data", str(folder), "--cache", str(tmp_path / "m.calib")]) == 1
    line = _error_line(capsys)
    assert "--cache needs TensorRT 8.5-10.x" in line and "Q/DQ ONNX" in line


def test_cache_only_run_calibrates_tensorrt_with_the_same_images_and_keeps_the_head(small, tmp_path, monkeypatch):
    onnx_path, folder = small
    calls = {}

    def fake_write(onnx, calibration, cache, method, batch_size, details):
        calls.update(calibration=calibration, method=method, batch=batch_size, details=details)
        return {"path": str(cache), "key_file": str(cache) + ".json", "reused": False,
                "algorithm": "IInt8MinMaxCalibrator", "tensorrt": "8.6.1", "key": {}, "batches": len(calibration)}

    monkeypatch.setattr(imports, "tensorrt_installed", lambda: True)
    monkeypatch.setattr(legacy, "write_tensorrt_cache", fake_write)
    cache = tmp_path / "model.calib"
    assert main(["--onnx", str(onnx_path), "--data", str(folder), "--num-images", "10", "--cache", str(cache)]) == 0
    assert calls["calibration"].shape == (10, 3, 32, 32) and calls["method"] == "minmax" and calls["batch"] == 1
    assert set(calls["details"]["higher_precision_nodes"]) == {"/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul"}
    report = json.loads((tmp_path / "model.report.json").read_text())
    assert report["status"] == "cache-only" and report["images"]["held_out_images"] == 0
    assert report["tensorrt_cache"]["batches"] == 10


def test_percentile_has_no_tensorrt_calibrator(small, tmp_path, monkeypatch, capsys):
    onnx_path, folder = small
    monkeypatch.setattr(imports, "tensorrt_installed", lambda: True)
    argv = ["--onnx", str(onnx_path), "--data", str(folder), "--cache", str(tmp_path / "m.calib"),
            "--method", "percentile"]
    assert main(argv) == 1
    assert "use --method minmax or entropy for --cache" in _error_line(capsys)


def test_an_onnx_whose_spec_disagrees_with_its_graph_is_one_line(small, tmp_path, capsys):
    """D5: the metadata says 64x96, the graph takes 32x32: ONNX Runtime's InvalidArgument traceback."""
    import onnx

    from edgedepth.spec import ModelSpec

    onnx_path, folder = small
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    for key, value in ModelSpec(height=64, width=96, architecture="small-test-net").to_metadata_props().items():
        model.metadata_props.add(key=key, value=value)
    lie = tmp_path / "speclie.onnx"
    onnx.save(model, str(lie))
    out = tmp_path / "o.onnx"
    assert main(["--onnx", str(lie), "--data", str(folder), "--output", str(out)]) == 1
    line = _error_line(capsys)
    assert "speclie.onnx" in line and "1x3x64x96" in line and "1x3x32x32" in line
    assert not out.exists() and not (tmp_path / "o.report.json").exists()
