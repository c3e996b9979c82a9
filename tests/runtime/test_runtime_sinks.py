"""Sinks: metric depth files, the atomic video writer, the view, and the display decision."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgedepth.errors import EdgeDepthError
from edgedepth.runtime.sinks import (
    DepthWriter,
    VideoSink,
    WindowSink,
    check_video_file,
    count_decodable_frames,
    depth_to_png_mm,
    display_decision,
    opencv_has_gui,
    side_by_side,
)

from media_helpers import write_video


def test_png_depth_is_rounded_millimetres_with_invalid_as_zero():
    depth = np.array([[0.0004, 0.0006, 1.2344, 80.0], [np.nan, np.inf, -1.0, 65.535]], np.float32)
    assert depth_to_png_mm(depth).tolist() == [[0, 1, 1234, 65535], [0, 0, 0, 65535]]
    assert depth_to_png_mm(depth).dtype == np.uint16


@pytest.mark.parametrize("depth_format, suffix", [("png", ".png"), ("npy", ".npy")])
def test_depth_writer_round_trips_metres(tmp_path, depth_format, suffix):
    depth = np.random.default_rng(0).uniform(0.1, 60.0, (32, 48)).astype(np.float32)
    path = DepthWriter(str(tmp_path / "d"), depth_format).write("frame_7", depth)
    assert path.name == f"frame_7{suffix}"
    if depth_format == "png":
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert stored.dtype == np.uint16 and np.abs(stored / 1000.0 - depth).max() <= 0.0005 + 1e-6
    else:
        np.testing.assert_array_equal(np.load(path), depth)
    assert [p.name for p in (tmp_path / "d").iterdir()] == [path.name]  # no temporary file left


def test_unknown_depth_format_is_refused(tmp_path):
    with pytest.raises(EdgeDepthError, match="png, npy"):
        DepthWriter(str(tmp_path), "exr")


def test_video_appears_only_when_finished_and_keeps_its_first_size(tmp_path):
    path = tmp_path / "v.mp4"
    sink = VideoSink(str(path), fps=12)
    sink.write(np.zeros((120, 160, 3), np.uint8))
    sink.write(np.full((240, 320, 3), 200, np.uint8))  # a camera that changed mode mid-stream
    assert not path.exists(), "a half-written video must not sit at the final path"
    sink.close()
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    frames = [capture.read()[1] for _ in range(2)]
    assert {f.shape for f in frames} == {(120, 160, 3)} and frames[1].mean() > 150
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_video_with_an_unwritable_codec_says_which_names_work(tmp_path):
    sink = VideoSink(str(tmp_path / "v.mp4"), fourcc="XXXX")
    with pytest.raises(EdgeDepthError, match="mp4v"):
        sink.write(np.zeros((64, 64, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix, fourcc", [(".mp4", "mp4v"), (".avi", "MJPG")])
def test_the_video_check_passes_a_whole_file_and_names_what_a_damaged_one_lacks(tmp_path, suffix, fourcc):
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(20)]
    whole = write_video(tmp_path / f"whole{suffix}", frames)
    assert check_video_file(whole, 20) is None
    assert check_video_file(write_video(tmp_path / f"one{suffix}", frames[:1]), 1) is None
    assert check_video_file(whole, 21) == "the file holds 20 of the 21 frames written"
    assert count_decodable_frames(whole) == 20
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert check_video_file(cut, 20) is not None


def test_an_unfinished_mp4_is_reported_as_not_finalised(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", [np.zeros((48, 64, 3), np.uint8)] * 5)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.rindex(b"moov") - 4])  # no index: what a writer killed mid-file leaves
    assert check_video_file(cut, 5) == "the file does not open: its container was not finalised"


def test_side_by_side_scales_depth_to_the_frame():
    view = side_by_side(np.zeros((240, 320, 3), np.uint8), np.full((64, 96, 3), 255, np.uint8))
    assert view.shape == (240, 640, 3) and view[:, :320].max() == 0 and view[:, 320:].min() == 255


@pytest.mark.parametrize(
    "no_display, env, gui, show, reason",
    [
        (True, {"DISPLAY": ":0"}, "GTK3", False, ""),
        (False, {}, "GTK3", False, "no display"),
        (False, {"DISPLAY": ":0"}, "NONE", False, "headless build"),
        (False, {"DISPLAY": ":0"}, "GTK3", True, ""),
        (False, {"WAYLAND_DISPLAY": "wayland-0"}, "QT5", True, ""),
    ],
)
def test_display_decision(no_display, env, gui, show, reason):
    decided, why = display_decision(no_display, env, build_info=f"  GUI:                           {gui}\n")
    assert decided is show and reason in why


def test_this_headless_opencv_is_recognised():
    assert opencv_has_gui("  GUI:                           NONE\n") is False
    assert opencv_has_gui("  GUI:                           QT5\n") is True


def test_window_quits_on_q_and_escape():
    for key in (ord("q"), 27):
        window = WindowSink("t", imshow=lambda *a: None, wait_key=lambda delay, key=key: key)
        assert window.show(np.zeros((8, 8, 3), np.uint8)) is False
    window = WindowSink("t", imshow=lambda *a: None, wait_key=lambda delay: -1)
    assert window.show(np.zeros((8, 8, 3), np.uint8)) is True
