"""Sources: URI parsing, file sources, the newest-frame capture thread, reconnects, cameras, GStreamer."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.errors import SourceError
from edgedepth.runtime.sources import (
    ImageSequenceSource,
    LiveSource,
    ReconnectPolicy,
    SourceOptions,
    VideoFileSource,
    csi_pipeline,
    describe_devices,
    flip_method,
    fourcc_text,
    frame_names,
    gstreamer_available,
    image_paths,
    is_csi_sensor_name,
    list_video_devices,
    normalize_image,
    open_gstreamer,
    open_source,
    open_stream,
    open_v4l2,
    parse_source_uri,
    redact_url,
)

from media_helpers import write_video


class FakeCapture:
    """A cv2.VideoCapture stand-in whose frames carry their number; it can be stalled and broken."""

    def __init__(self, period_s: float = 0.002, break_after: int = -1, bad_every: int = 0) -> None:
        self.period_s = period_s
        self.break_after = break_after
        self.bad_every = bad_every
        self.produced = 0
        self.flowing = threading.Event()
        self.flowing.set()
        self.released = False
        self.reads_in_flight = 0

    def read(self):
        self.reads_in_flight += 1
        try:
            self.flowing.wait()
            if self.released or self.produced == self.break_after:
                time.sleep(self.period_s)
                return False, None
            time.sleep(self.period_s)
            self.produced += 1
            if self.bad_every and self.produced % self.bad_every == 0:
                return True, np.zeros((0, 0, 3), np.uint8)
            frame = np.zeros((8, 8, 3), np.uint8)
            frame[0, 0, 0], frame[0, 0, 1] = self.produced % 256, self.produced // 256
            return True, frame
        finally:
            self.reads_in_flight -= 1

    def isOpened(self) -> bool:
        return not self.released

    def release(self) -> None:
        assert self.reads_in_flight == 0, "released while a read was running"
        self.released = True


def number(frame) -> int:
    return int(frame.image[0, 0, 0]) + 256 * int(frame.image[0, 0, 1])


# --- URIs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, kind, target",
    [
        ("0", "v4l2", "/dev/video0"),
        ("12", "v4l2", "/dev/video12"),
        ("/dev/video2", "v4l2", "/dev/video2"),
        ("v4l2:///dev/video1", "v4l2", "/dev/video1"),
        ("csi://1", "csi", "1"),
        ("rtsp://user:pw@cam.local:554/stream", "stream", "rtsp://user:pw@cam.local:554/stream"),
        ("http://host/video.mjpg", "stream", "http://host/video.mjpg"),
        ("videotestsrc ! videoconvert ! appsink", "gstreamer", "videotestsrc ! videoconvert ! appsink"),
    ],
)
def test_live_uris_are_classified(uri, kind, target):
    parsed = parse_source_uri(uri, camera=True)
    assert (parsed.kind, parsed.target) == (kind, target)


def test_file_uris_are_classified(tmp_path, make_video):
    video = make_video(count=2)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    assert parse_source_uri(str(video)).kind == "video"
    assert parse_source_uri(f"file://{video}").target == str(video)
    assert parse_source_uri(str(image)).kind == "images"
    assert parse_source_uri(str(tmp_path)).kind == "images"
    assert parse_source_uri(str(tmp_path / "*.png")).kind == "images"


def test_missing_input_says_what_is_accepted(tmp_path):
    with pytest.raises(SourceError, match="does not exist.*csi://0"):
        parse_source_uri(str(tmp_path / "nope.mp4"))


def test_a_file_passed_as_camera_points_to_input(make_video):
    with pytest.raises(SourceError, match="--input"):
        parse_source_uri(str(make_video(count=2)), camera=True)


def test_csi_needs_a_sensor_number():
    with pytest.raises(SourceError, match="csi://0"):
        parse_source_uri("csi://front")


def test_passwords_are_redacted_from_messages():
    assert redact_url("rtsp://admin:secret@10.0.0.2/live") == "rtsp://admin:***@10.0.0.2/live"
    assert redact_url("rtsp://10.0.0.2/live") == "rtsp://10.0.0.2/live"


# --- frames -------------------------------------------------------------------------------------------


def test_normalize_image_converts_grey_and_bgra_and_rejects_garbage():
    assert normalize_image(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert normalize_image(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    for bad in (None, np.zeros((0, 0, 3), np.uint8), np.zeros((4, 5, 3), np.float32), np.zeros((4, 5, 2), np.uint8)):
        assert normalize_image(bad) is None


# --- file sources -----------------------------------------------------------------------------------------


def test_video_file_delivers_every_frame_in_order(make_video):
    path = make_video(count=30)
    with VideoFileSource(str(path)) as source:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert [f.index for f in frames] == list(range(30))
    # The red channel encodes 8 x frame number (lossy codec: allow a few levels).
    red = [float(np.median(f.image[100:, :, 2])) for f in frames]
    assert all(abs(r - 8 * i) <= 6 for i, r in enumerate(red)), red
    assert source.counters.delivered == 30 and source.counters.dropped == 0
    assert source.fps == pytest.approx(15.0)


def test_looping_video_starts_over(make_video):
    path = make_video(count=10)
    with VideoFileSource(str(path), loop=True) as source:
        frames = [source.read() for _ in range(25)]
    assert [f.index for f in frames] == list(range(25))
    np.testing.assert_array_equal(frames[12].image, frames[2].image)


def test_unopenable_video_is_a_source_error(tmp_path):
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open video file"):
        VideoFileSource(str(path))


def test_image_folder_in_name_order_skips_and_counts_corrupt_files(tmp_path):
    for index in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"img_{index}.png"), np.full((16, 24, 3), index * 50, np.uint8))
    (tmp_path / "img_1b.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(str(tmp_path)) as source:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert [f.name for f in frames] == ["img_0", "img_1", "img_2"]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100]
    assert source.counters.corrupt == 1 and source.counters.read == 4


def test_glob_selects_matching_images(tmp_path):
    for name in ("a1.png", "a2.png", "b1.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    assert [Path(p).name for p in image_paths(str(tmp_path / "a*.png"))] == ["a1.png", "a2.png"]


def test_empty_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="holds no images"):
        open_source(str(tmp_path))


def test_looping_images_never_reuse_output_names(tmp_path):
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    source = ImageSequenceSource([str(tmp_path / "x.png")], "one image", loop=True)
    names = {source.read().name for _ in range(3)}
    assert len(names) == 3


def test_images_sharing_a_stem_keep_their_extension_in_their_names():
    paths = ["a/x.jpg", "a/x.png", "a/y.png", "b/y.png", "a/z.tif"]
    assert frame_names(paths) == ["x.jpg", "x.png", "000002_y.png", "000003_y.png", "z"]
    assert frame_names(["only.png"]) == ["only"]


def test_an_image_folder_announces_its_image_count(tmp_path):
    for name in ("x.png", "x.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    with open_source(str(tmp_path)) as source:
        names = [source.read().name, source.read().name]
        assert source.read() is None
    assert names == ["x.jpg", "x.png"] and source.expected_frames == 2


def test_a_truncated_video_warns_once_at_its_end(make_frames, tmp_path, caplog):
    full = write_video(tmp_path / "full.avi", make_frames(30, 160, 120))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    caplog.set_level("WARNING", logger="edgedepth")
    with VideoFileSource(str(cut), loop=True) as source:
        assert source.expected_frames == 30
        frames = [source.read() for _ in range(50)]  # two passes over the frames that are there
    assert all(frame is not None for frame in frames)
    assert len(source.warnings) == 1 and "of the 30 frames its header announces" in source.warnings[0]
    assert caplog.text.count("probably truncated") == 1
    with VideoFileSource(str(full)) as whole:
        while whole.read() is not None:
            pass
    assert whole.expected_frames == 30 and whole.warnings == []


# --- the live capture thread ---------------------------------------------------------------------------------


def test_live_source_hands_out_the_newest_frame_and_counts_drops():
    capture = FakeCapture(period_s=0.002)
    source = LiveSource(lambda: capture, "fake camera", frame_timeout_s=2.0)
    try:
        numbers = []
        for _ in range(5):
            time.sleep(0.03)  # a slow consumer: many frames arrive meanwhile
            frame = source.read()
            numbers.append(number(frame))
            assert capture.produced - number(frame) <= 2, "a stale frame was handed out"
        assert numbers == sorted(numbers) and len(set(numbers)) == 5
        assert source.counters.dropped > 0
        assert source.counters.delivered == 5
    finally:
        source.close()
    assert capture.released


def test_live_source_waits_through_a_short_stall():
    capture = FakeCapture()
    source = LiveSource(lambda: capture, "fake camera", frame_timeout_s=2.0)
    try:
        source.read()
        capture.flowing.clear()
        time.sleep(0.05)  # let a read already in flight finish
        resume_at = time.perf_counter() + 0.3
        threading.Timer(0.3, capture.flowing.set).start()
        frames = [source.read(), source.read()]  # the first may predate the stall
        assert frames[-1].captured_at >= resume_at - 0.05
    finally:
        capture.flowing.set()
        source.close()


def test_stall_longer_than_frame_timeout_is_a_clear_error():
    capture = FakeCapture()
    source = LiveSource(lambda: capture, "fake camera", frame_timeout_s=0.3)
    try:
        source.read()
        capture.flowing.clear()
        source.read()  # may still get the frame captured before the stall
        with pytest.raises(SourceError, match="no frame from fake camera for 0.3 s"):
            source.read()
    finally:
        capture.flowing.set()
        source.close()


def test_dropped_stream_reconnects_after_back_off_and_continues():
    captures = [FakeCapture(break_after=5), FakeCapture()]
    opened = []

    def opener():
        opened.append(time.monotonic())
        return captures[len(opened) - 1]

    policy = ReconnectPolicy(attempts=3, initial_delay_s=0.2, failures_before_reconnect=1)
    source = LiveSource(opener, "fake stream", reconnect=policy, frame_timeout_s=1.0)
    try:
        seen = []
        while len(seen) < 3 or source.counters.reconnects == 0:
            seen.append(source.read())
        assert seen[-1] is not None and captures[1].produced > 0
        assert source.counters.reconnects == 1 and len(opened) == 2
        assert opened[1] - opened[0] >= 0.2, "reconnected without backing off"
        assert captures[0].released
    finally:
        source.close()


def test_stream_that_never_comes_back_ends_with_a_clear_error():
    calls = []

    def opener():
        calls.append(1)
        if len(calls) == 1:
            return FakeCapture(break_after=3)
        raise SourceError("cannot open stream rtsp://cam/x")

    policy = ReconnectPolicy(attempts=3, initial_delay_s=0.01, max_delay_s=0.02, failures_before_reconnect=1)
    source = LiveSource(opener, "fake stream", reconnect=policy, frame_timeout_s=1.0)
    try:
        with pytest.raises(SourceError) as info:
            for _ in range(10):
                source.read()
        assert "3 reconnect attempts" in str(info.value) and "cannot open stream" in str(info.value)
        assert len(calls) == 4
    finally:
        source.close()


def test_with_reconnecting_off_a_drop_ends_the_stream_at_once():
    source = LiveSource(lambda: FakeCapture(break_after=2), "fake camera",
                        reconnect=ReconnectPolicy(attempts=0, failures_before_reconnect=1), frame_timeout_s=1.0)
    try:
        with pytest.raises(SourceError, match="reconnecting is off"):
            for _ in range(5):
                source.read()
    finally:
        source.close()


def test_corrupt_live_frames_are_skipped_and_counted():
    capture = FakeCapture(bad_every=2)
    source = LiveSource(lambda: capture, "fake camera", frame_timeout_s=2.0)
    try:
        frames = [source.read() for _ in range(4)]
        assert all(f.image.shape == (8, 8, 3) for f in frames)
        assert all(number(f) % 2 == 1 for f in frames)
        assert source.counters.corrupt >= 3
    finally:
        source.close()


def test_closing_a_live_source_stops_reading_before_release():
    capture = FakeCapture()
    source = LiveSource(lambda: capture, "fake camera")
    source.read()
    source.close()  # FakeCapture.release asserts no read is in flight
    assert capture.released
    assert source.read() is None


def test_back_off_doubles_up_to_the_cap():
    assert ReconnectPolicy(attempts=5, initial_delay_s=0.5, max_delay_s=3.0).delays() == [0.5, 1.0, 2.0, 3.0, 3.0]


# --- cameras -------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_devices(tmp_path):
    """A /dev and /sys/class/video4linux tree: video0 is an IMX219 CSI sensor, video1 a webcam."""
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    for index, name in ((0, "vi-output, imx219 9-0010"), (1, "HD Pro Webcam C920"), (10, "")):
        (dev).mkdir(exist_ok=True)
        (dev / f"video{index}").write_text("")
        if name:
            (sysfs / f"video{index}").mkdir(parents=True)
            (sysfs / f"video{index}" / "name").write_text(name + "\n")
    return SourceOptions(dev_root=str(dev), sysfs_root=str(sysfs))


def test_video_devices_are_listed_with_their_names(fake_devices):
    devices = list_video_devices(fake_devices.dev_root, fake_devices.sysfs_root)
    assert [Path(p).name for p, _ in devices] == ["video0", "video1", "video10"]
    assert devices[1][1] == "HD Pro Webcam C920"


@pytest.mark.parametrize(
    "name, is_csi",
    [("vi-output, imx219 9-0010", True), ("vi-output, imx477 10-001a", True), ("ov5693 2-0036", True),
     ("HD Pro Webcam C920", False), ("Integrated_Webcam_HD", False), ("", False)],
)
def test_csi_sensor_names_are_recognised(name, is_csi):
    assert is_csi_sensor_name(name) is is_csi


def test_camera_0_that_is_a_csi_sensor_suggests_csi_uri(fake_devices):
    with pytest.raises(SourceError, match=r"CSI camera sensor \(vi-output, imx219.*csi://0"):
        open_source("0", fake_devices, camera=True)


class ClosedCapture:
    """What cv2.VideoCapture gives for a device that cannot be opened."""

    def __init__(self, *args) -> None:
        self.args = args

    def isOpened(self) -> bool:
        return False


def test_camera_that_cannot_be_opened_names_it_and_the_existing_devices(fake_devices):
    opened = []
    with pytest.raises(SourceError) as info:
        open_v4l2("/dev/video1", fake_devices, capture_factory=lambda *args: opened.append(args) or ClosedCapture())
    assert opened == [(1, cv2.CAP_V4L2)]  # by index: every OpenCV build opens V4L2 that way
    message = str(info.value)
    assert "cannot open camera /dev/video1" in message
    assert "HD Pro Webcam C920" in message and "CSI sensor: use csi://N" in message


def test_no_devices_at_all_says_how_to_look(tmp_path):
    options = SourceOptions(dev_root=str(tmp_path), sysfs_root=str(tmp_path))
    assert "no /dev/video* devices exist" in describe_devices(options)


def test_bayer_node_opened_through_v4l2_is_refused():
    class BayerCapture:
        released = False

        def isOpened(self):
            return True

        def set(self, prop, value):
            return True

        def get(self, prop):
            return float(cv2.VideoWriter_fourcc(*"RG10")) if prop == cv2.CAP_PROP_FOURCC else 0.0

        def release(self):
            self.released = True

    capture = BayerCapture()
    with pytest.raises(SourceError, match="raw Bayer \\(RG10\\).*csi://0"):
        open_v4l2("/dev/video0", SourceOptions(), capture_factory=lambda *a: capture)
    assert capture.released
    assert fourcc_text(cv2.VideoWriter_fourcc(*"MJPG")) == "MJPG"


def test_unreachable_stream_error_hides_the_password():
    with pytest.raises(SourceError) as info:
        open_stream("rtsp://admin:hunter2@10.0.0.9/live", 1.0, capture_factory=ClosedCapture)
    assert "hunter2" not in str(info.value) and "within 1 s" in str(info.value)


# --- GStreamer / CSI --------------------------------------------------------------------------------------------------


def test_csi_pipeline_string():
    pipeline = csi_pipeline(1, 1280, 720, fps=60, flip="rotate-180")
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "video/x-raw(memory:NVMM),width=1280,height=720,framerate=60/1,format=NV12" in pipeline
    assert "nvvidconv flip-method=2" in pipeline
    assert "format=BGRx ! videoconvert ! video/x-raw,format=BGR" in pipeline
    assert pipeline.endswith("appsink drop=true max-buffers=1 sync=false")


@pytest.mark.parametrize("flip, method", [("none", 0), ("counterclockwise", 1), ("rotate-180", 2), ("clockwise", 3),
                                          ("horizontal", 4), ("vertical", 6), ("7", 7)])
def test_flip_names_map_to_nvvidconv_methods(flip, method):
    assert flip_method(flip) == method


def test_unknown_flip_is_refused():
    with pytest.raises(SourceError, match="rotate-180"):
        flip_method("upside-down")


def test_gstreamer_support_is_read_from_build_information():
    assert gstreamer_available("  Video I/O:\n    GStreamer:                   YES (1.16.3)\n")
    assert not gstreamer_available("  Video I/O:\n    GStreamer:                   NO\n")
    assert not gstreamer_available("  Video I/O:\n    FFMPEG: YES\n")


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer; the missing-GStreamer path cannot run")
def test_csi_without_gstreamer_says_how_to_fix_the_install():
    with pytest.raises(SourceError) as info:
        open_source("csi://0", camera=True)
    message = str(info.value)
    assert "csi://0 needs OpenCV with GStreamer" in message
    assert "pip uninstall opencv-python" in message and "runtime-jetson" in message and cv2.__file__ in message


@pytest.mark.skipif(not gstreamer_available(),
                    reason="this OpenCV was built without GStreamer (pip wheels never have it)")
def test_gstreamer_pipeline_delivers_frames_through_the_capture_thread():
    pipeline = ("videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240 ! videoconvert"
                " ! appsink drop=true max-buffers=1 sync=false")
    source = LiveSource(lambda: open_gstreamer(pipeline, "videotestsrc"), "videotestsrc",
                        reconnect=ReconnectPolicy(attempts=0), frame_timeout_s=5.0)
    try:
        frame = source.read()
        assert frame.image.shape == (240, 320, 3)
    finally:
        source.close()


def test_closing_a_looping_file_while_a_thread_reads_stops_the_reader(short_video):
    source = VideoFileSource(str(short_video), loop=True)
    results = []

    def reader():
        while True:
            frame = source.read()
            results.append(frame)
            if frame is None:
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.3)  # let it loop over the 30-frame clip at least once
    source.close()
    thread.join(timeout=5.0)
    assert not thread.is_alive(), "a closed looping source must not reopen the file"
    assert results[-1] is None and len(results) > 1
