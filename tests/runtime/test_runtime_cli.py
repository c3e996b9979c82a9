"""depth-run and depth-bench end to end on files (no camera, GPU or display needed)."""
from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.preprocess import preprocess
from edgedepth.runtime import open_backend
from edgedepth.runtime.cli import bench_main, run_main
from edgedepth.runtime.stats import STAGES
from edgedepth.spec import ModelSpec

from media_helpers import write_video


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    """Tests never open a window: without a display depth-run goes headless by itself."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count


def test_depth_run_processes_every_frame_of_a_video(tiny_model, make_video, read_video, tmp_path, capsys):
    video = make_video(count=30)
    out, depth_dir, stats_path = tmp_path / "out.mp4", tmp_path / "depth", tmp_path / "stats.json"
    code = run_main(["--model", str(tiny_model.path), "--input", str(video), "--no-display", "--output", str(out),
                     "--save-depth", str(depth_dir), "--stats-json", str(stats_path)])
    assert code == 0

    # A playable video with the same frame count, input | depth side by side.
    written = read_video(out)
    assert frame_count(out) == 30 and len(written) == 30
    assert written[0].shape == (240, 640, 3)

    # 16-bit PNGs that decode to the backend's own metres for those frames.
    pngs = sorted(depth_dir.glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:06d}" for i in range(30)]
    with open_backend(str(tiny_model.path)) as backend:
        for png, frame in zip(pngs, read_video(video)):
            stored = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
            assert stored.dtype == np.uint16 and stored.shape == (64, 96)
            expected = backend.infer(preprocess(frame, backend.spec))[0, 0]
            assert np.abs(stored / 1000.0 - expected).max() <= 0.001

    stats = json.loads(stats_path.read_text())
    assert stats["exit_reason"] == "end_of_stream" and stats["error"] is None
    assert stats["frames"] == {"read": 30, "processed": 30, "dropped": 0, "corrupt": 0, "reconnects": 0}
    assert stats["backend"] == "onnxruntime" and stats["fps"] > 0 and stats["model_input"] == [64, 96]
    assert set(STAGES) <= set(stats["stages_ms"])
    for stage in STAGES:
        row = stats["stages_ms"][stage]
        assert row["count"] == 30 and 0 <= row["p50"] <= row["p90"] <= row["p99"] <= row["max"]
    printed = capsys.readouterr().out
    assert "p99 ms" in printed and "30 frames processed" in printed
    assert not [p for p in tmp_path.rglob("*.tmp*")], "temporary files were left behind"


def test_depth_as_npy_holds_the_exact_float_metres(tiny_model, make_video, read_video, tmp_path):
    video = make_video(count=4)
    assert run_main(["--model", str(tiny_model.path), "--input", str(video), "--no-display", "--quiet",
                     "--save-depth", str(tmp_path / "d"), "--depth-format", "npy"]) == 0
    stored = [np.load(p) for p in sorted((tmp_path / "d").glob("*.npy"))]
    with open_backend(str(tiny_model.path)) as backend:
        expected = [backend.infer(preprocess(f, backend.spec))[0, 0] for f in read_video(video)]
    assert len(stored) == 4
    for got, want in zip(stored, expected):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_max_frames_stops_early(tiny_model, make_video, tmp_path):
    stats = tmp_path / "s.json"
    assert run_main(["--model", str(tiny_model.path), "--input", str(make_video(count=30)), "--no-display", "--quiet",
                     "--max-frames", "7", "--save-depth", str(tmp_path / "d"), "--stats-json", str(stats)]) == 0
    assert len(list((tmp_path / "d").glob("*.png"))) == 7
    report = json.loads(stats.read_text())
    assert report["exit_reason"] == "max_frames" and report["frames"]["processed"] == 7


def test_loop_repeats_a_short_video(tiny_model, make_video, tmp_path):
    out = tmp_path / "looped.mp4"
    assert run_main(["--model", str(tiny_model.path), "--input", str(make_video(count=10)), "--no-display", "--quiet",
                     "--loop", "--max-frames", "25", "--output", str(out)]) == 0
    assert frame_count(out) == 25


def test_image_folder_with_changing_sizes_and_a_corrupt_file(tiny_model, tmp_path, read_video):
    folder = tmp_path / "images"
    folder.mkdir()
    for index, (w, h) in enumerate([(160, 120), (160, 120), (320, 200), (96, 64)]):
        cv2.imwrite(str(folder / f"shot_{index}.jpg"), np.full((h, w, 3), 40 * index, np.uint8))
    (folder / "shot_9.png").write_bytes(b"\x89PNG broken")
    out, stats = tmp_path / "view.mp4", tmp_path / "s.json"
    assert run_main(["--model", str(tiny_model.path), "--input", str(folder), "--no-display", "--quiet", "--output",
                     str(out), "--save-depth", str(tmp_path / "d"), "--stats-json", str(stats)]) == 0
    frames = read_video(out)
    assert len(frames) == 4 and {f.shape for f in frames} == {(120, 320, 3)}  # sized by the first frame
    assert sorted(p.stem for p in (tmp_path / "d").glob("*.png")) == [f"shot_{i}" for i in range(4)]
    assert json.loads(stats.read_text())["frames"]["corrupt"] == 1


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="edgedepth.training.checkpoint is not importable")
def test_depth_run_with_a_pytorch_checkpoint(make_video, tmp_path):
    from edgedepth.training.checkpoint import save_checkpoint
    from edgedepth.training.model import create_model

    spec = ModelSpec(height=64, width=96, max_depth=20.0)
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, create_model(spec), spec)
    stats = tmp_path / "s.json"
    assert run_main(["--model", str(checkpoint), "--input", str(make_video(count=5)), "--no-display", "--quiet",
                     "--threads", "1", "--save-depth", str(tmp_path / "d"), "--stats-json", str(stats)]) == 0
    report = json.loads(stats.read_text())
    assert report["backend"] == "pytorch" and report["frames"]["processed"] == 5
    depth = cv2.imread(str(next((tmp_path / "d").glob("*.png"))), cv2.IMREAD_UNCHANGED) / 1000.0
    assert depth.shape == (64, 96) and 0 < depth.min() and depth.max() <= 20.0


def test_headless_is_chosen_automatically_without_a_display(tiny_model, make_video, tmp_path, caplog):
    caplog.set_level("WARNING", logger="edgedepth")
    assert run_main(["--model", str(tiny_model.path), "--input", str(make_video(count=3)), "--max-frames", "3"]) == 0
    assert "running headless" in caplog.text


@pytest.mark.parametrize(
    "argv",
    [
        ["--input", "x.mp4"],
        ["--model", "m.onnx"],
        ["--model", "m.onnx", "--camera", "0", "--input", "x.mp4"],
        ["--model", "m.onnx", "--input", "x.mp4", "--depth-range", "5", "1"],
        ["--model", "m.onnx", "--camera", "0", "--camera-size", "1280by720"],
        ["--model", "m.onnx", "--input", "x.mp4", "--max-frames", "0"],
        ["--model", "m.onnx", "--input", "x.mp4", "--flip", "sideways"],
        ["--model", "m.onnx", "--input", "x.mp4", "--backend", "tflite"],
    ],
    ids=["no-model", "no-source", "two-sources", "bad-range", "bad-size", "zero-frames", "bad-flip", "bad-backend"],
)
def test_usage_errors_exit_2(argv, capsys):
    assert run_main(argv) == 2
    assert "usage: depth-run" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert run_main(["--help"]) == 0
    assert "--save-depth" in capsys.readouterr().out


def test_failures_exit_1_with_one_line(tiny_model, make_video, tmp_path, capsys):
    cases = [
        (["--model", str(tmp_path / "absent.onnx"), "--input", str(make_video(count=2))], "does not exist"),
        (["--model", str(tmp_path / "m.tflite"), "--input", str(make_video(count=2))], "unknown file type"),
        (["--model", str(tiny_model.path), "--input", str(tmp_path / "nope.mp4")], "does not exist"),
        (["--model", str(tiny_model.path), "--camera", "csi://0"], "GStreamer"),
    ]
    for argv, expected in cases:
        capsys.readouterr()
        assert run_main(argv + ["--no-display", "--quiet"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("depth-run: error: ") and expected in err[0], err


def test_module_entry_point_runs(tiny_model, make_video, tmp_path):
    stats = tmp_path / "s.json"
    result = subprocess.run(
        [sys.executable, "-m", "edgedepth.runtime.cli", "--model", str(tiny_model.path), "--input",
         str(make_video(count=3)), "--no-display", "--stats-json", str(stats)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(stats.read_text())["frames"]["processed"] == 3


def _staged_video_has_frames(folder) -> bool:
    return any(path.stat().st_size > 0 for path in folder.glob(".out.mp4.*"))


def test_ctrl_c_finalises_the_video_and_the_stats(tiny_model, make_video, tmp_path):
    out, stats = tmp_path / "out.mp4", tmp_path / "s.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "edgedepth.runtime.cli", "--model", str(tiny_model.path), "--input",
         str(make_video(count=20)), "--loop", "--no-display", "--quiet", "--output", str(out),
         "--stats-json", str(stats)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _staged_video_has_frames(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)  # wait until streaming has really started (slow first imports on a busy CI)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    report = json.loads(stats.read_text())
    assert report["exit_reason"] == "interrupted" and report["frames"]["processed"] > 0
    # The run stops between frames: the finished file holds exactly the processed frames.
    assert frame_count(out) == report["frames"]["processed"]
    assert not list(tmp_path.glob(".out.mp4.*"))


PYTORCH_ONLY = "--device applies to pytorch (.pt/.pth/.ckpt) only; {model} runs on "


@pytest.mark.parametrize(
    "model, extra, expected",
    [
        ("m.onnx", ["--device", "cpu"], PYTORCH_ONLY + "onnxruntime (ONNX Runtime picks its device with --providers"),
        ("m.engine", ["--device", "cuda"], PYTORCH_ONLY + "tensorrt (a TensorRT engine runs on the GPU it was built"),
        ("m.pt", ["--device", "tpu:9"], "--device 'tpu:9' is not a device: use cpu, cuda or cuda:N"),
        ("m.pt", ["--providers", "CPUExecutionProvider"], "--providers applies to onnxruntime (.onnx) only"),
        ("m.engine", ["--threads", "2"], "--threads applies to onnxruntime (.onnx) and pytorch (.pt/.pth/.ckpt) only"),
    ],
    ids=["device-onnx", "device-engine", "unknown-device", "providers-pt", "threads-engine"],
)
@pytest.mark.parametrize("command", ["depth-run", "depth-bench"])
def test_backend_options_the_model_does_not_take_are_usage_errors(tmp_path, capsys, command, model, extra, expected):
    model_path = tmp_path / model
    model_path.write_bytes(b"never opened: the options are checked first")
    if command == "depth-run":
        code = run_main(["--model", str(model_path), "--input", "x.mp4", "--no-display", *extra])
    else:
        code = bench_main(["--model", str(model_path), *extra])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{command}: error: "), err
    assert expected.format(model=model_path) in err[0]


def test_images_sharing_a_name_keep_one_depth_file_each(tiny_model, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "x.png"), np.full((48, 64, 3), 30, np.uint8))
    cv2.imwrite(str(folder / "x.jpg"), np.full((48, 64, 3), 200, np.uint8))
    cv2.imwrite(str(folder / "y.png"), np.full((48, 64, 3), 90, np.uint8))
    stats = tmp_path / "s.json"
    assert run_main(["--model", str(tiny_model.path), "--input", str(folder), "--no-display", "--quiet",
                     "--save-depth", str(tmp_path / "d"), "--stats-json", str(stats)]) == 0
    saved = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert saved == ["x.jpg.png", "x.png.png", "y.png"]
    assert json.loads(stats.read_text())["frames"]["processed"] == len(saved)
    # Each file holds the depth of its own image.
    with open_backend(str(tiny_model.path)) as backend:
        for name, source in (("x.jpg.png", "x.jpg"), ("x.png.png", "x.png")):
            image = cv2.imread(str(folder / source))
            expected = backend.infer(preprocess(image, backend.spec))[0, 0]
            stored = cv2.imread(str(tmp_path / "d" / name), cv2.IMREAD_UNCHANGED) / 1000.0
            assert np.abs(stored - expected).max() <= 0.001


def test_an_input_with_no_decodable_frame_is_a_failure(tiny_model, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    rng = np.random.default_rng(0)
    (folder / "b.png").write_bytes(rng.bytes(3000))
    (folder / "c.jpg").write_bytes(rng.bytes(3000))
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    assert run_main(["--model", str(tiny_model.path), "--input", str(folder), "--no-display", "--quiet",
                     "--output", str(out), "--stats-json", str(stats)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"depth-run: error: no frame of {folder} could be decoded"), err
    report = json.loads(stats.read_text())
    assert report["exit_reason"] == "error" and report["error"].startswith("no frame of")
    assert report["frames"]["processed"] == 0 and report["frames"]["corrupt"] == 2
    assert not out.exists()


def test_a_truncated_video_is_processed_with_a_warning_in_the_log_and_the_stats(tiny_model, make_frames, tmp_path,
                                                                               caplog):
    full = write_video(tmp_path / "full.avi", make_frames(40, 160, 120))  # MJPG: each frame stands alone
    half = tmp_path / "half.avi"
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    caplog.set_level("WARNING", logger="edgedepth")
    stats = tmp_path / "s.json"
    assert run_main(["--model", str(tiny_model.path), "--input", str(half), "--no-display", "--quiet",
                     "--stats-json", str(stats)]) == 0
    report = json.loads(stats.read_text())
    delivered = report["source_frames"]["delivered"]
    assert report["source_frames"]["expected"] == 40 and 0 < delivered < 40
    assert report["exit_reason"] == "end_of_stream" and report["frames"]["processed"] == delivered
    assert len(report["warnings"]) == 1 and f"after {delivered} of the 40 frames" in report["warnings"][0]
    assert "probably truncated" in caplog.text


def test_a_whole_video_has_no_warning(tiny_model, make_video, tmp_path):
    stats = tmp_path / "s.json"
    assert run_main(["--model", str(tiny_model.path), "--input", str(make_video(count=12)), "--no-display",
                     "--quiet", "--stats-json", str(stats)]) == 0
    report = json.loads(stats.read_text())
    assert report["source_frames"] == {"expected": 12, "delivered": 12} and report["warnings"] == []


# --- depth-bench -------------------------------------------------------------------------------------------------


def test_depth_bench_on_synthetic_frames_writes_json(tiny_model, tmp_path, capsys):
    report_path = tmp_path / "bench.json"
    assert bench_main(["--model", str(tiny_model.path), "--iterations", "20", "--warmup", "3", "--frames", "4",
                       "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["backend"] == "onnxruntime" and report["iterations"] == 20 and report["warmup"] == 3
    assert report["input"] == "synthetic 1280x720" and report["throughput_fps"] > 0
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert "p99" in capsys.readouterr().out


def test_depth_bench_on_real_frames_with_batches(tiny_dynamic_model, make_video, tmp_path):
    report_path = tmp_path / "bench.json"
    assert bench_main(["--model", str(tiny_dynamic_model.path), "--input", str(make_video(count=6)), "--batch", "2",
                       "--iterations", "5", "--warmup", "1", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["frames"] == 6 and report["batch"] == 2 and report["input"].endswith("video.mp4")


def test_depth_bench_failure_is_one_line(tmp_path, capsys):
    assert bench_main(["--model", str(tmp_path / "none.engine")]) == 1
    assert capsys.readouterr().err.startswith("depth-bench: error: ")
