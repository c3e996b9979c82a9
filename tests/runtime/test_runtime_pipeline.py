"""The streaming loop: stages overlap, live frames stay fresh, and every way of stopping finalises outputs."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edgedepth.errors import BackendError, SourceError, UsageError
from edgedepth.preprocess import preprocess
from edgedepth.runtime import open_backend
from edgedepth.runtime.pipeline import DepthPipeline, Outputs, PipelineError, PipelineOptions
from edgedepth.runtime.sinks import DepthWriter, VideoSink, WindowSink
from edgedepth.runtime.sources import Frame, LiveSource, ReconnectPolicy, Source, VideoFileSource


class SlowBackend:
    """Wraps a real backend and adds a fixed inference time (a stand-in for a slower network)."""

    def __init__(self, backend, delay_s: float, fail_at: int = -1) -> None:
        self._backend, self.delay_s, self.fail_at, self.calls = backend, delay_s, fail_at, 0
        self.spec, self.name, self.detail = backend.spec, backend.name, backend.detail

    def infer(self, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise BackendError("simulated device loss")
        time.sleep(self.delay_s)
        return self._backend.infer(batch)


class SlowSource(Source):
    """A file-like source taking ``delay_s`` per frame."""

    def __init__(self, frames, delay_s: float) -> None:
        super().__init__("slow frames")
        self.frames, self.delay_s, self.position = frames, delay_s, 0

    def read(self):
        if self.position >= len(self.frames):
            return None
        start = time.perf_counter()
        time.sleep(self.delay_s)
        frame = Frame(self.position, self.frames[self.position], start, time.perf_counter() - start)
        self.position += 1
        self.counters.read += 1
        self.counters.delivered += 1
        return frame


class TickingCamera:
    """cv2.VideoCapture stand-in: a frame every ``period_s`` whose pixel (0,0) holds its capture time."""

    def __init__(self, period_s: float) -> None:
        self.period_s, self.count = period_s, 0

    def read(self):
        time.sleep(self.period_s)
        self.count += 1
        return True, np.full((48, 64, 3), self.count % 256, np.uint8)

    def release(self):
        pass


def test_stages_overlap_so_throughput_follows_the_slowest_stage(tiny_model, make_frames):
    # Stage times well above scheduler noise on a loaded 2-core machine.
    frames = make_frames(8, 160, 120)
    read_s, infer_s = 0.08, 0.1
    with open_backend(str(tiny_model.path)) as real:
        backend = SlowBackend(real, infer_s)
        start = time.perf_counter()
        options = PipelineOptions(warmup_iterations=0)
        result = DepthPipeline(SlowSource(frames, read_s), backend, Outputs(), options).run()
        elapsed = time.perf_counter() - start
    sequential = len(frames) * (read_s + infer_s)
    assert result.frames["processed"] == 8
    # Overlapped: about 8 x 0.1 + 0.08 = 0.88 s; one stage after the other: 1.44 s.
    assert elapsed < 0.85 * sequential, f"{elapsed:.2f} s is not overlapped (sequential would be {sequential:.2f} s)"


def test_live_frames_stay_fresh_when_inference_is_slower_than_the_camera(tiny_model):
    camera = TickingCamera(period_s=0.005)
    source = LiveSource(lambda: camera, "fast camera", frame_timeout_s=2.0)
    with open_backend(str(tiny_model.path)) as real:
        backend = SlowBackend(real, 0.05)
        try:
            options = PipelineOptions(max_frames=10, warmup_iterations=0)
            result = DepthPipeline(source, backend, Outputs(), options).run()
        finally:
            source.close()
    assert result.frames["processed"] == 10 and result.frames["dropped"] > 20
    # Latency stays about one inference + a waiting slot (~100 ms), where a queue of every frame
    # would have grown past 400 ms by the tenth.
    assert result.stages_ms["end_to_end"]["p50"] < 150 and result.stages_ms["end_to_end"]["max"] < 350


def test_backend_failure_finalises_outputs_and_keeps_stats(tiny_model, make_video, tmp_path):
    out = tmp_path / "partial.mp4"
    with open_backend(str(tiny_model.path)) as real, VideoFileSource(str(make_video(count=10))) as source:
        pipeline = DepthPipeline(source, SlowBackend(real, 0.0, fail_at=5), Outputs(video=VideoSink(str(out), 15)),
                                 PipelineOptions(warmup_iterations=0))
        with pytest.raises(PipelineError, match="simulated device loss") as info:
            pipeline.run()
    assert isinstance(info.value.__cause__, BackendError)
    result = info.value.result
    assert result.exit_reason == "error" and result.error == "simulated device loss"
    assert result.frames["processed"] == 4
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_keyboard_interrupt_finalises_the_video(tiny_model, make_video, tmp_path):
    class InterruptingVideo(VideoSink):
        def write(self, view):
            if self.frames == 6:
                raise KeyboardInterrupt
            super().write(view)

    out = tmp_path / "stopped.mp4"
    with open_backend(str(tiny_model.path)) as backend, VideoFileSource(str(make_video(count=20))) as source:
        result = DepthPipeline(source, backend, Outputs(video=InterruptingVideo(str(out), 15))).run()
    assert result.exit_reason == "interrupted" and result.frames["processed"] == 6
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_a_requested_stop_ends_between_frames_so_every_output_agrees(tiny_model, make_video, tmp_path):
    """What depth-run does on a first Ctrl-C, SIGTERM or SIGHUP: the frame being rendered is finished."""
    out, depth_dir = tmp_path / "stopped.mp4", tmp_path / "depth"
    with open_backend(str(tiny_model.path)) as backend, VideoFileSource(str(make_video(count=20))) as source:
        outputs = Outputs(video=VideoSink(str(out), 15), depth=DepthWriter(str(depth_dir)))
        pipeline = DepthPipeline(source, backend, outputs, PipelineOptions(warmup_iterations=0))
        outputs.on_depth = lambda frame, depth: frame.index == 6 and pipeline.request_stop()
        result = pipeline.run()
    assert result.exit_reason == "interrupted" and result.frames["processed"] == 7
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 7 and len(list(depth_dir.iterdir())) == 7


def test_a_video_that_cannot_be_finished_fails_the_run_with_its_stats(tiny_model, make_video, tmp_path):
    class UnfinishableVideo(VideoSink):
        def close(self):
            super().close()
            raise OSError(28, "No space left on device", str(self.path))

    with open_backend(str(tiny_model.path)) as backend, VideoFileSource(str(make_video(count=5))) as source:
        pipeline = DepthPipeline(source, backend, Outputs(video=UnfinishableVideo(str(tmp_path / "v.mp4"), 15)))
        with pytest.raises(PipelineError, match="ENOSPC") as info:
            pipeline.run()
    assert info.value.result.exit_reason == "error" and info.value.result.frames["processed"] == 5


def test_q_in_the_window_quits(tiny_model, make_video):
    keys = iter([-1, -1, ord("q")] + [-1] * 100)
    shown = []
    window = WindowSink("test", imshow=lambda title, view: shown.append(view.shape), wait_key=lambda delay: next(keys))
    with open_backend(str(tiny_model.path)) as backend, VideoFileSource(str(make_video(count=20))) as source:
        result = DepthPipeline(source, backend, Outputs(window=window)).run()
    assert result.exit_reason == "user_quit" and result.frames["processed"] == 3
    assert shown[0] == (240, 640, 3)


def test_window_that_cannot_open_falls_back_to_headless(tiny_model, make_video):
    def headless_imshow(title, view):
        raise cv2.error("The function is not implemented. Rebuild the library with Windows, GTK+ 2.x or Cocoa support")

    window = WindowSink("test", imshow=headless_imshow, wait_key=lambda delay: -1)
    with open_backend(str(tiny_model.path)) as backend, VideoFileSource(str(make_video(count=5))) as source:
        result = DepthPipeline(source, backend, Outputs(window=window)).run()
    assert result.exit_reason == "end_of_stream" and result.frames["processed"] == 5
    assert window.available is False


def test_depth_range_changes_the_colours_not_the_metres(tiny_model, make_video, tmp_path, read_video):
    views = {}
    for name, depth_range in (("default", None), ("narrow", (4.0, 6.0))):
        out = tmp_path / f"{name}.mp4"
        with open_backend(str(tiny_model.path)) as backend, VideoFileSource(str(make_video(count=2))) as source:
            DepthPipeline(source, backend, Outputs(video=VideoSink(str(out), 15)),
                          PipelineOptions(depth_range=depth_range, overlay=False)).run()
        views[name] = read_video(out)[0][:, 320:].astype(int)
    assert np.abs(views["default"] - views["narrow"]).mean() > 10


def test_library_callers_receive_each_frame_with_its_metres(tiny_model, make_video):
    received = []
    with open_backend(str(tiny_model.path)) as backend, VideoFileSource(str(make_video(count=6))) as source:
        outputs = Outputs(on_depth=lambda frame, depth: received.append((frame, depth)))
        result = DepthPipeline(source, backend, outputs).run()
    assert result.frames["processed"] == 6 and [f.index for f, _ in received] == list(range(6))
    for frame, depth in received:
        assert depth.shape == (64, 96) and depth.dtype == np.float32
        reference = tiny_model.reference(preprocess(frame.image, tiny_model.spec))[0, 0]
        np.testing.assert_allclose(depth, reference, atol=1e-5)


def test_lost_camera_ends_the_run_with_outputs_finalised(tiny_model, tmp_path):
    cameras = iter([DyingCamera(frames=8)])

    def opener():
        camera = next(cameras, None)
        if camera is None:
            raise SourceError("cannot open camera /dev/video0")
        return camera

    policy = ReconnectPolicy(attempts=2, initial_delay_s=0.01)
    source = LiveSource(opener, "camera /dev/video0", policy, frame_timeout_s=2.0)
    out = tmp_path / "until_lost.mp4"
    with open_backend(str(tiny_model.path)) as backend:
        try:
            with pytest.raises(PipelineError, match="2 reconnect attempts") as info:
                DepthPipeline(source, backend, Outputs(video=VideoSink(str(out), 15))).run()
        finally:
            source.close()
    assert isinstance(info.value.__cause__, SourceError)
    result = info.value.result
    assert result.exit_reason == "error" and 1 <= result.frames["processed"] <= 8
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == result.frames["processed"]


class DyingCamera:
    """Delivers ``frames`` frames 10 ms apart, then reports a lost stream forever."""

    def __init__(self, frames: int) -> None:
        self.left = frames

    def read(self):
        time.sleep(0.01)
        if self.left == 0:
            return False, None
        self.left -= 1
        return True, np.full((48, 64, 3), 100, np.uint8)

    def release(self):
        pass


class JitteryBackend(SlowBackend):
    """SlowBackend taking concurrent calls, each after a different delay, so results come back out of order."""

    concurrent_calls = True

    def infer(self, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise BackendError("simulated device loss")
        time.sleep(self.delay_s * (self.calls % 3))
        return self._backend.infer(batch)


def test_frames_inferred_at_once_are_rendered_in_order_each_with_its_own_depth(tiny_model, make_video, tmp_path):
    received = []
    depth_dir = tmp_path / "depth"
    with open_backend(str(tiny_model.path)) as real, VideoFileSource(str(make_video(count=12))) as source:
        outputs = Outputs(depth=DepthWriter(str(depth_dir)),
                          on_depth=lambda frame, depth: received.append((frame, depth)))
        options = PipelineOptions(warmup_iterations=0, streams=3)
        result = DepthPipeline(source, JitteryBackend(real, 0.02), outputs, options).run()
    assert result.exit_reason == "end_of_stream" and result.frames["processed"] == 12
    assert result.to_dict()["streams"] == 3
    assert [frame.index for frame, _ in received] == list(range(12))
    assert sorted(p.stem for p in depth_dir.iterdir()) == [f"{i:06d}" for i in range(12)]
    for frame, depth in received:
        reference = tiny_model.reference(preprocess(frame.image, tiny_model.spec))[0, 0]
        np.testing.assert_allclose(depth, reference, atol=1e-5)


def test_a_failure_in_one_of_several_streams_fails_the_run_with_outputs_finalised(tiny_model, make_video, tmp_path):
    out = tmp_path / "partial.mp4"
    with open_backend(str(tiny_model.path)) as real, VideoFileSource(str(make_video(count=12))) as source:
        pipeline = DepthPipeline(source, JitteryBackend(real, 0.01, fail_at=6), Outputs(video=VideoSink(str(out), 15)),
                                 PipelineOptions(warmup_iterations=0, streams=2))
        with pytest.raises(PipelineError, match="simulated device loss") as info:
            pipeline.run()
    processed = info.value.result.frames["processed"]
    assert processed < 12 and frame_count(out) == processed


def test_several_streams_need_a_backend_that_takes_concurrent_calls(tiny_model, make_video):
    with open_backend(str(tiny_model.path)) as real, VideoFileSource(str(make_video(count=2))) as source:
        with pytest.raises(UsageError, match="one frame at a time"):
            DepthPipeline(source, SlowBackend(real, 0.0), Outputs(), PipelineOptions(streams=2))


def frame_count(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count
