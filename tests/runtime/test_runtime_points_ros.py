"""Point clouds (PLY), the ROS 2 message builders shared by the recorder and the node, and the
MCAP recorder under faults (a full disk, stop signals)."""
from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from test_runtime_robots import image_folder, read_mcap, read_ply

from edgedepth.camera import CameraCalibration, PinholeIntrinsics
from edgedepth.errors import UsageError
from edgedepth.runtime.focal import DepthCamera
from edgedepth.runtime.points import FrameClouds, PointsWriter, back_project, encode_ply
from edgedepth.runtime.record import FrameClock, McapRecorder, mcap_message_counts
from edgedepth.runtime.ros_messages import (
    DEFINITIONS,
    Topics,
    camera_info,
    depth_image,
    fill_message,
    header,
    point_cloud,
)
from edgedepth.runtime.sources import Frame
from edgedepth.spec import ModelSpec

from faults import leftovers, signal_after, small_disk

CAMERA = PinholeIntrinsics(50.0, 60.0, 40.0, 24.0, 96, 64)


def _frame(index: int, width: int = 192, height: int = 128) -> Frame:
    rng = np.random.default_rng(index)
    return Frame(index, rng.integers(0, 256, (height, width, 3), dtype=np.uint8), captured_at=100.0 + index / 30,
                 capture_s=0.0)


def _depth(seed: int = 0) -> np.ndarray:
    depth = np.random.default_rng(seed).uniform(0.3, 9.0, (64, 96)).astype(np.float32)
    depth[0, :5] = [0.0, -1.0, np.nan, np.inf, 2.0]  # four pixels without depth, one with
    return depth


def test_back_projection_leaves_out_pixels_without_depth_and_matches_the_pinhole_formula():
    depth = _depth()
    points, valid = back_project(depth, CAMERA)
    assert len(points) == depth.size - 4 and points.dtype == np.float32 and valid.sum() == len(points)
    v, u = np.nonzero(valid)
    z = depth[v, u].astype(np.float64)
    expected = np.stack([(u - 40.0) * z / 50.0, (v - 24.0) * z / 60.0, z], axis=1)
    assert np.abs(points - expected).max() < 1e-5
    assert np.array_equal(points[:, 2], depth[v, u])  # z is the depth itself, bit for bit
    strided, kept = back_project(depth, CAMERA, stride=4)
    rows, cols = np.nonzero(kept)
    assert {(4 * r, 4 * c) for r, c in zip(rows, cols)} == {
        (v, u) for v in range(0, 64, 4) for u in range(0, 96, 4)} - {(0, 0)}
    every_4th = np.zeros_like(valid)
    every_4th[::4, ::4] = True
    assert np.array_equal(strided, points[every_4th[valid]])


def test_back_projection_refuses_a_camera_of_another_size():
    with pytest.raises(UsageError, match="96x64"):
        back_project(np.ones((32, 48), np.float32), CAMERA)


def test_native_point_cloud_agrees_with_the_python_back_projection():
    native = pytest.importorskip("edgedepth._native")
    depth = _depth(3)
    cloud = native.point_cloud(depth, CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy).reshape(-1, 3)
    points, valid = back_project(depth, CAMERA)
    assert np.array_equal(cloud[valid.ravel()], points)


def test_a_ply_holds_the_points_and_colours_a_reader_gets_back(tmp_path):
    camera = DepthCamera(ModelSpec(height=64, width=96, intrinsics=CAMERA))
    writer = PointsWriter(str(tmp_path / "pts"), FrameClouds(camera, stride=2))
    frame = _frame(7, 96, 64)
    path = writer.write(frame, _depth())
    assert path == tmp_path / "pts" / "000007.ply"
    vertices = read_ply(path)
    points, valid = back_project(_depth(), CAMERA, 2)
    assert np.array_equal(np.stack([vertices[name] for name in "xyz"], 1), points)
    rgb = frame.image[::2, ::2][valid][:, ::-1]
    assert np.array_equal(np.stack([vertices[name] for name in ("red", "green", "blue")], 1), rgb)
    plain = read_ply_bytes(tmp_path / "plain.ply", encode_ply(points))
    assert plain.dtype.names == ("x", "y", "z") and len(plain) == len(points)


def read_ply_bytes(path: Path, data: bytes) -> np.ndarray:
    path.write_bytes(data)
    return read_ply(path)


def test_message_definitions_are_the_ros2_ones():
    """The schemas the recording carries equal rosbags' own ROS 2 Humble definitions."""
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    for name, text in DEFINITIONS.items():
        assert text.strip() == store.generate_msgdef(name, ros_version=2)[0].strip(), name


def test_messages_follow_ros_conventions():
    head = header(1_700_000_000_123_456_789, "cam")
    assert head == {"stamp": {"sec": 1_700_000_000, "nanosec": 123_456_789}, "frame_id": "cam"}
    image = depth_image(_depth(), head)
    values = np.frombuffer(image["data"], "<f4").reshape(64, 96)
    assert image["step"] == 96 * 4 and image["encoding"] == "32FC1"
    assert np.isnan(values[0, :4]).all() and values[0, 4] == 2.0  # REP 118: no depth is NaN
    info = camera_info(CAMERA, head)
    assert info["k"] == [50.0, 0.0, 40.0, 0.0, 60.0, 24.0, 0.0, 0.0, 1.0] and info["p"][3] == 0.0
    cloud = point_cloud(np.zeros((5, 3), np.float32), head)
    assert cloud["row_step"] == 60 and len(cloud["data"]) == 60 and cloud["width"] == 5
    assert Topics("robot1/cam/").depth == "/robot1/cam/depth" and Topics("/").points == "/points"


def test_fill_message_copies_nested_messages_sequences_and_bytes():
    """What the rclpy node does with a builder's dict, on stand-ins with rosidl's interface."""
    import array
    import sys
    import types

    class Stamp:
        def get_fields_and_field_types(self):
            return {"sec": "int32", "nanosec": "uint32"}

    class Header:
        def __init__(self):
            self.stamp = Stamp()

        def get_fields_and_field_types(self):
            return {"stamp": "builtin_interfaces/Time", "frame_id": "string"}

    class PointField:
        def get_fields_and_field_types(self):
            return {"name": "string", "offset": "uint32", "datatype": "uint8", "count": "uint32"}

    class PointCloud2:
        def __init__(self):
            self.header = Header()

        def get_fields_and_field_types(self):
            return {"header": "std_msgs/Header", "fields": "sequence<sensor_msgs/PointField>",
                    "data": "sequence<uint8>"}

    module = types.ModuleType("sensor_msgs.msg")
    module.PointField = PointField  # type: ignore[attr-defined]
    sys.modules.setdefault("sensor_msgs", types.ModuleType("sensor_msgs"))
    saved = sys.modules.get("sensor_msgs.msg")
    sys.modules["sensor_msgs.msg"] = module
    try:
        cloud = point_cloud(np.ones((2, 3), np.float32), header(5_000_000_001, "cam"))
        message = fill_message(PointCloud2(), cloud)
    finally:
        if saved is None:
            del sys.modules["sensor_msgs.msg"]
        else:
            sys.modules["sensor_msgs.msg"] = saved
    assert (message.header.stamp.sec, message.header.stamp.nanosec, message.header.frame_id) == (5, 1, "cam")
    assert [(f.name, f.offset) for f in message.fields] == [("x", 0), ("y", 4), ("z", 8)]
    assert isinstance(message.data, array.array) and message.data.tobytes() == cloud["data"]


def test_file_frames_get_monotonic_stamps_at_the_frame_rate_and_live_ones_their_capture_time():
    clock = FrameClock(live=False, fps=25.0)
    stamps = [clock.stamp_ns(_frame(index)) for index in range(4)]
    assert np.diff(stamps).tolist() == [40_000_000] * 3
    live = FrameClock(live=True)
    first, second = (live.stamp_ns(_frame(index)) for index in (0, 3))
    assert second - first == pytest.approx(1e8, abs=1e3)  # captured 3/30 s apart


def test_a_recording_on_a_full_disk_fails_and_leaves_the_old_file():
    camera = DepthCamera(ModelSpec(height=64, width=96, intrinsics=CAMERA))
    with small_disk(256) as disk:
        target = disk / "run.mcap"
        target.write_bytes(b"the previous recording")
        recorder = McapRecorder(str(target), FrameClouds(camera), FrameClock(live=False))
        with pytest.raises(OSError) as info:
            for index in range(200):
                recorder.write(_frame(index, 96, 64), _depth(index))
            recorder.close()
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
        with pytest.raises(OSError):  # a failed recorder keeps failing, it never writes half a frame on
            recorder.write(_frame(0, 96, 64), _depth())
        recorder.close()
        assert target.read_bytes() == b"the previous recording" and leftovers(disk) == []


def test_a_finished_recording_counts_one_message_per_topic_per_frame(tmp_path):
    camera = DepthCamera(ModelSpec(height=64, width=96, intrinsics=CAMERA),
                         CameraCalibration(100.0, 120.0, 80.0, 48.0, size=None, origin="test"))
    recorder = McapRecorder(str(tmp_path / "r.mcap"), FrameClouds(camera, stride=2), FrameClock(live=False),
                            Topics("/robot"), "cam")
    for index in range(3):
        recorder.write(_frame(index), _depth(index))
    assert not (tmp_path / "r.mcap").exists()  # only a temporary file until close
    recorder.close()
    assert mcap_message_counts(tmp_path / "r.mcap") == {t: 3 for t in ("/robot/depth", "/robot/image",
                                                                         "/robot/camera_info", "/robot/points")}
    topics = read_mcap(tmp_path / "r.mcap")
    info = topics["/robot/camera_info"][0][1]
    # --intrinsics fx,fy,cx,cy hold at the 192x128 frames; the depth image is half that size.
    camera_at_depth = PinholeIntrinsics(100.0, 120.0, 80.0, 48.0, 192, 128).scaled_to(96, 64)
    assert list(info.k) == camera_at_depth.matrix()
    cloud = topics["/robot/points"][0][1]  # every 2nd pixel of every 2nd row, the invalid (0, 0), (0, 2) left out
    expected, _ = back_project(_depth(0), camera_at_depth, 2)
    assert cloud.width == 32 * 48 - 2 and np.array_equal(np.frombuffer(bytes(cloud.data), "<f4").reshape(-1, 3),
                                                          expected)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_finishes_a_recording_with_every_processed_frame(tiny_model_factory, make_frames, tmp_path, sig):
    pytest.importorskip("rosbags")
    model = tiny_model_factory("cam.onnx", intrinsics=PinholeIntrinsics(80.0, 80.0, 47.5, 31.5, 96, 64))
    images = image_folder(tmp_path / "images", make_frames(4, 160, 120))
    record, points, stats = tmp_path / "r.mcap", tmp_path / "pts", tmp_path / "s.json"
    done = signal_after(["depth-run", "--model", str(model.path), "--input", str(images), "--loop", "--max-frames",
                         "3000", "--no-display", "--quiet", "--record", str(record), "--save-points", str(points),
                         "--stats-json", str(stats)], sig, after=lambda: points.exists() and any(points.iterdir()),
                        timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(stats.read_text())
    processed = report["frames"]["processed"]
    assert report["exit_reason"] == "interrupted" and 0 < processed < 3000
    assert {topic: len(messages) for topic, messages in read_mcap(record).items()} == {
        topic: processed for topic in Topics().types()}
    assert leftovers(tmp_path) == []


def test_the_point_sinks_share_one_back_projection_per_frame(tmp_path, monkeypatch):
    # --save-points and --record on one run: each frame is back-projected once, and both files
    # hold the same points.
    import edgedepth.runtime.points as points_module

    calls = []
    original = points_module.back_project
    monkeypatch.setattr(points_module, "back_project", lambda *a, **k: calls.append(1) or original(*a, **k))
    clouds = FrameClouds(DepthCamera(ModelSpec(height=64, width=96, intrinsics=CAMERA)), stride=2)
    writer = PointsWriter(str(tmp_path / "pts"), clouds)
    recorder = McapRecorder(str(tmp_path / "r.mcap"), clouds, FrameClock(live=False))
    for index in range(3):
        frame, depth = _frame(index, 96, 64), _depth(index)
        writer.write(frame, depth)
        recorder.write(frame, depth)
    recorder.close()
    assert len(calls) == 3
    recorded = read_mcap(tmp_path / "r.mcap")["/edgedepth/points"][2][1]
    ply = read_ply(tmp_path / "pts" / "000002.ply")
    assert np.array_equal(np.frombuffer(bytes(recorded.data), "<f4").reshape(-1, 3),
                          np.stack([ply[name] for name in "xyz"], 1))
