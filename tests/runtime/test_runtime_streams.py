"""How many frames depth-run infers at once: two for a file on the CPU, one for a camera, and
whatever the command line asks for."""
from __future__ import annotations

import json

import pytest

from edgedepth.errors import UsageError
from edgedepth.runtime import streams
from edgedepth.runtime.cli import run_main
from edgedepth.runtime.streams import InferencePlan, physical_cores, plan_inference


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(streams, "physical_cores", lambda: 4)
    monkeypatch.setattr(streams, "runs_on_cpu", lambda providers=None: True)


def test_a_file_on_the_cpu_runs_two_frames_at_once_on_half_the_cores_each(four_cores):
    assert plan_inference("onnxruntime", live=False) == InferencePlan(streams=2, threads=2)


def test_a_camera_keeps_one_fresh_frame_in_flight_with_the_default_threads(four_cores):
    assert plan_inference("onnxruntime", live=True) == InferencePlan(streams=1, threads=None)


def test_a_requested_thread_count_is_kept(four_cores):
    assert plan_inference("onnxruntime", live=False, threads=3) == InferencePlan(streams=1, threads=3)
    assert plan_inference("onnxruntime", live=False, threads=1, streams=2) == InferencePlan(streams=2, threads=1)


def test_requested_streams_share_the_cores(four_cores):
    assert plan_inference("onnxruntime", live=True, streams=4) == InferencePlan(streams=4, threads=1)
    assert plan_inference("onnxruntime", live=False, streams=1) == InferencePlan(streams=1, threads=None)


def test_gpu_providers_and_other_backends_run_one_frame(four_cores, monkeypatch):
    assert plan_inference("tensorrt", live=False) == InferencePlan(streams=1, threads=None)
    assert plan_inference("pytorch", live=False) == InferencePlan(streams=1, threads=None)
    monkeypatch.setattr(streams, "runs_on_cpu", lambda providers=None: False)
    assert plan_inference("onnxruntime", live=False) == InferencePlan(streams=1, threads=None)


def test_one_core_runs_one_frame(monkeypatch):
    monkeypatch.setattr(streams, "physical_cores", lambda: 1)
    assert plan_inference("onnxruntime", live=False) == InferencePlan(streams=1, threads=None)


def test_streams_for_a_backend_that_runs_one_frame_at_a_time_are_refused():
    with pytest.raises(UsageError, match="--streams 2 needs an ONNX Runtime model"):
        plan_inference("tensorrt", live=False, streams=2)


def test_physical_cores_counts_what_this_process_may_use():
    assert 1 <= physical_cores() <= len(__import__("os").sched_getaffinity(0))


def test_depth_run_reports_its_streams_and_threads(tiny_model, make_video, tmp_path):
    stats = tmp_path / "s.json"
    assert run_main(["--model", str(tiny_model.path), "--input", str(make_video(count=6)), "--no-display", "--quiet",
                     "--streams", "2", "--threads", "1", "--stats-json", str(stats)]) == 0
    report = json.loads(stats.read_text())
    assert report["streams"] == 2 and report["threads"] == 1 and report["frames"]["processed"] == 6


def test_depth_run_refuses_streams_for_an_engine(make_video, tmp_path, capsys):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"")
    assert run_main(["--model", str(engine), "--input", str(make_video(count=2)), "--no-display",
                     "--streams", "2"]) == 2
    assert "--streams 2 needs an ONNX Runtime model" in capsys.readouterr().err
