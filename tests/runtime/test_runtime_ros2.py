"""The ROS 2 node (edgedepth.runtime.ros2): its pieces without ROS, and the node itself where rclpy is."""
from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest

from edgedepth.camera import PinholeIntrinsics
from edgedepth.errors import SourceError, UsageError
from edgedepth.runtime.focal import DepthCamera
from edgedepth.runtime.points import FrameClouds
from edgedepth.runtime.record import FrameClock
from edgedepth.runtime.ros2 import (
    Ros2Publisher,
    TopicSource,
    TopicSparseDepth,
    calibration_from_camera_info,
    image_to_bgr,
    main,
    ros2_parser,
    sparse_image_to_metres,
    split_ros_args,
)
from edgedepth.runtime.ros_messages import Topics
from edgedepth.runtime.sources import Frame
from edgedepth.spec import ModelSpec

CAMERA = PinholeIntrinsics(80.0, 80.0, 47.5, 31.5, 96, 64)


def test_ros_arguments_are_split_off():
    assert split_ros_args(["--model", "m.onnx", "--ros-args", "-r", "a:=b", "-p", "frame_id:=x"]) == (
        ["--model", "m.onnx"], ["--ros-args", "-r", "a:=b", "-p", "frame_id:=x"])
    assert split_ros_args(["--model", "m.onnx"]) == (["--model", "m.onnx"], [])


def _rows(image: np.ndarray, pad: int) -> bytes:
    """Image rows with ``pad`` bytes of padding each, as a publisher aligning its rows sends them."""
    flat = image.reshape(image.shape[0], -1)
    return np.concatenate([flat, np.full((flat.shape[0], pad), 7, np.uint8)], axis=1).tobytes()


def test_image_messages_become_bgr_frames():
    bgr = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    assert np.array_equal(image_to_bgr("bgr8", 5, 6, 18 + 2, _rows(bgr, 2)), bgr)
    assert np.array_equal(image_to_bgr("rgb8", 5, 6, 18, _rows(bgr[:, :, ::-1], 0)), bgr)
    grey = bgr[:, :, 0]
    expected_grey = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    assert np.array_equal(image_to_bgr("mono8", 5, 6, 8, _rows(grey[:, :, None], 2)), expected_grey)
    with pytest.raises(SourceError, match="'bayer_rggb8' is not supported"):
        image_to_bgr("bayer_rggb8", 5, 6, 6, bytes(30))
    with pytest.raises(SourceError, match="publisher is broken"):
        image_to_bgr("bgr8", 5, 6, 18, bytes(50))


def _image_message(value: int, sec: int, nanosec: int) -> Any:
    stamp = types.SimpleNamespace(sec=sec, nanosec=nanosec)
    return types.SimpleNamespace(encoding="bgr8", height=4, width=4, step=12, data=bytes([value]) * 48,
                                 header=types.SimpleNamespace(stamp=stamp))


def test_an_image_topic_source_keeps_the_newest_image_and_its_stamp():
    source = TopicSource("/cam/image", frame_timeout_s=5.0)
    source.on_image(_image_message(1, 10, 5))
    source.on_image(_image_message(2, 11, 6))  # the pipeline was busy: the older image is dropped
    frame = source.read()
    assert frame is not None and frame.image[0, 0, 0] == 2 and source.counters.dropped == 1
    assert source.stamp_ns(frame) == 11_000_000_006
    threading.Timer(0.1, source.on_image, [_image_message(3, 12, 0)]).start()
    later = source.read()  # blocks until the next message arrives
    assert later is not None and later.index == 1 and later.image[0, 0, 0] == 3
    source.close()
    assert source.read() is None


def test_sparse_depth_messages_become_metres_with_none_where_nothing_was_measured():
    mm = np.array([[0, 1500, 65535], [250, 0, 4000]], dtype="<u2")
    padded = np.concatenate([mm.view(np.uint8), np.full((2, 2), 9, np.uint8)], axis=1).tobytes()
    np.testing.assert_allclose(sparse_image_to_metres("16UC1", 2, 3, 8, padded),
                               [[0.0, 1.5, 65.535], [0.25, 0.0, 4.0]], rtol=1e-6)
    big = mm.astype(">u2").tobytes()  # is_bigendian = 1: the same millimetres
    np.testing.assert_allclose(sparse_image_to_metres("16UC1", 2, 3, 6, big, is_bigendian=True),
                               sparse_image_to_metres("16UC1", 2, 3, 8, padded))
    metres = np.array([[np.nan, 2.5, -1.0], [0.0, np.inf, 7.25]], dtype="<f4")
    np.testing.assert_array_equal(sparse_image_to_metres("32FC1", 2, 3, 12, metres.tobytes()),
                                  [[0.0, 2.5, 0.0], [0.0, 0.0, 7.25]])
    with pytest.raises(SourceError, match="'rgb8' is not supported"):
        sparse_image_to_metres("rgb8", 2, 3, 9, bytes(18))
    with pytest.raises(SourceError, match="expected step >= 6"):
        sparse_image_to_metres("16UC1", 2, 3, 6, bytes(10))


def _sparse_message(metres: np.ndarray) -> Any:
    return types.SimpleNamespace(encoding="32FC1", height=metres.shape[0], width=metres.shape[1],
                                 step=4 * metres.shape[1], is_bigendian=0, data=metres.astype("<f4").tobytes())


def test_a_sparse_topic_aligns_only_frames_captured_near_its_newest_message():
    """The newest message serves frames captured within max_age of its arrival, mapped onto the depth
    grid like a --sparse-depth file of the camera's aspect; a frame long after it gets none."""
    sparse = TopicSparseDepth("/lidar/depth", max_age_s=0.5)
    image = np.zeros((120, 160, 3), np.uint8)
    assert sparse.read(Frame(0, image, time.perf_counter(), 0.0), (60, 80)) is None  # nothing received yet
    points = np.zeros((120, 160), np.float32)
    points[10, 20], points[100, 150] = 2.0, 5.0
    sparse.on_image(_sparse_message(points))
    grid = sparse.read(Frame(1, image, time.perf_counter(), 0.0), (60, 80))
    assert grid is not None and grid.shape == (60, 80) and np.count_nonzero(grid) == 2
    assert grid[5, 10] == 2.0 and grid[50, 75] == 5.0
    assert sparse.read(Frame(2, image, time.perf_counter(), 0.0), (60, 80)) is grid  # one scan converted once
    assert sparse.read(Frame(3, image, time.perf_counter() + 2.0, 0.0), (60, 80)) is None  # stale for this frame


def test_the_node_builds_the_alignment_stage_from_its_sparse_topic(tiny_model):
    from edgedepth.runtime.align import SparseAlignment
    from edgedepth.runtime.cli import depth_stages
    from edgedepth.runtime.temporal import TemporalDepthFilter

    args = ros2_parser().parse_args(["--model", str(tiny_model.path), "--image-topic", "/cam/image",
                                     "--sparse-depth-topic", "/lidar/depth", "--align", "scale", "--temporal", "0.3"])
    assert args.sparse_max_age == pytest.approx(0.1)
    stages = depth_stages(args, DepthCamera(tiny_model.spec), TopicSparseDepth(args.sparse_depth_topic))
    assert [type(stage) for stage in stages] == [SparseAlignment, TemporalDepthFilter]
    assert stages[0].mode == "scale"


def test_a_camera_info_message_gives_the_calibration_at_its_size():
    info = types.SimpleNamespace(k=[600.0, 0.0, 319.5, 0.0, 610.0, 239.5, 0.0, 0.0, 1.0], width=640, height=480)
    calibration = calibration_from_camera_info(info, "/cam/camera_info")
    assert calibration.at_size(320, 240) == PinholeIntrinsics(600.0, 610.0, 319.5, 239.5, 640, 480).scaled_to(320, 240)
    uncalibrated = types.SimpleNamespace(k=[0.0] * 9, width=640, height=480)  # a driver without a calibration file
    with pytest.raises(UsageError, match="no calibration loaded"):
        calibration_from_camera_info(uncalibrated, "/cam/camera_info")
    corrupt = types.SimpleNamespace(k=[600.0, 0.0, float("nan"), 0.0, 610.0, 239.5, 0.0, 0.0, 1.0], width=640,
                                    height=480)  # refused here, not on the first frame's back-projection
    with pytest.raises(UsageError, match="no calibration loaded"):
        calibration_from_camera_info(corrupt, "/cam/camera_info")


def test_two_sources_of_the_camera_are_a_usage_error(tiny_model, capsys):
    code = main(["--model", str(tiny_model.path), "--image-topic", "/cam/image", "--intrinsics", "1,1,1,1",
                 "--camera-info-topic", "/cam/camera_info"])
    assert code == 2 and "--intrinsics and --camera-info-topic" in capsys.readouterr().err


def test_an_image_topic_that_stays_silent_is_a_source_error():
    with pytest.raises(SourceError, match="no image on ROS 2 topic /silent"):
        TopicSource("/silent", frame_timeout_s=0.2).read()


class FakeMessage:
    """Stands in for rosidl message classes: nested messages appear on first access."""

    def get_fields_and_field_types(self) -> Dict[str, str]:
        return {"fields": "sequence<sensor_msgs/PointField>"}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = FakeMessage()
        setattr(self, name, value)
        return value


@pytest.fixture
def fake_sensor_msgs(monkeypatch):
    module = types.ModuleType("sensor_msgs.msg")
    for name in ("Image", "CameraInfo", "PointCloud2", "PointField"):
        setattr(module, name, type(name, (FakeMessage,), {}))
    monkeypatch.setitem(sys.modules, "sensor_msgs", types.ModuleType("sensor_msgs"))
    monkeypatch.setitem(sys.modules, "sensor_msgs.msg", module)
    return module


class FakeNode:
    def __init__(self) -> None:
        self.published: Dict[str, List[Any]] = {}

    def create_publisher(self, kind: Any, topic: str, depth: int) -> Any:
        self.published[topic] = []
        return types.SimpleNamespace(publish=self.published[topic].append)


def test_the_node_publishes_each_frame_on_every_topic_with_one_header(fake_sensor_msgs):
    node = FakeNode()
    camera = DepthCamera(ModelSpec(height=64, width=96, intrinsics=CAMERA))
    publisher = Ros2Publisher(node, Topics("/robot"), "cam_optical", FrameClouds(camera), FrameClock(live=True))
    depth = np.full((64, 96), 2.5, np.float32)
    depth[0, 0] = 0.0
    publisher.write(Frame(0, np.zeros((128, 192, 3), np.uint8), time.perf_counter(), 0.0), depth)
    kinds = {topic: type(messages[0]).__name__ for topic, messages in node.published.items()}
    assert kinds == {"/robot/depth": "Image", "/robot/image": "Image", "/robot/camera_info": "CameraInfo",
                     "/robot/points": "PointCloud2"}
    depth_msg, info, cloud = (node.published[f"/robot/{name}"][0] for name in ("depth", "camera_info", "points"))
    assert depth_msg.encoding == "32FC1" and np.isnan(np.frombuffer(depth_msg.data, "<f4")[0])
    assert info.k == CAMERA.matrix() and cloud.width == 96 * 64 - 1
    assert [field.name for field in cloud.fields] == ["x", "y", "z"]
    stamps = {(m[0].header.stamp.sec, m[0].header.stamp.nanosec, m[0].header.frame_id) for m in node.published.values()}
    assert len(stamps) == 1 and abs(stamps.pop()[0] - time.time()) < 5


def test_without_ros_the_node_says_how_to_get_rclpy(tiny_model, capsys):
    try:
        import rclpy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("rclpy is importable here: the node runs (test_the_node_publishes_a_folder_live)")
    code = main(["--model", str(tiny_model.path), "--input", "x.png", "--ros-args", "-r", "a:=b"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "rclpy" in err[0] and "/opt/ros/" in err[0]


def test_the_node_publishes_a_folder_live(tiny_model_factory, make_frames, tmp_path):
    """Needs ROS 2 (rclpy, sensor_msgs): a subscriber receives every topic, a frame's messages with one stamp."""
    rclpy = pytest.importorskip("rclpy", reason="needs ROS 2's rclpy (source /opt/ros/<distro>/setup.bash)")
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    model = tiny_model_factory("cam.onnx", intrinsics=CAMERA)
    images = tmp_path / "images"
    images.mkdir()
    for index, frame in enumerate(make_frames(3, 160, 120)):
        cv2.imwrite(str(images / f"f{index}.png"), frame)
    received: Dict[str, List[Any]] = {"depth": [], "image": [], "camera_info": [], "points": []}
    rclpy.init()
    listener = rclpy.create_node("edgedepth_test_listener")
    for name, kind in (("depth", Image), ("image", Image), ("camera_info", CameraInfo), ("points", PointCloud2)):
        listener.create_subscription(kind, f"/test/{name}", received[name].append, 10)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            rclpy.spin_once(listener, timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        time.sleep(0.5)  # discovery
        # Looped, so messages published before the subscriber is matched do not decide the test.
        code = main(["--model", str(model.path), "--input", str(images), "--loop", "--max-frames", "40",
                     "--topic-prefix", "/test", "--quiet"])
        time.sleep(1.0)
    finally:
        stop.set()
        spinner.join()
        listener.destroy_node()
        rclpy.try_shutdown()
    assert code == 0
    assert all(20 <= len(messages) <= 40 for messages in received.values()), {k: len(v) for k, v in received.items()}
    stamps = [{(m.header.stamp.sec, m.header.stamp.nanosec) for m in messages} for messages in received.values()]
    assert len(set.intersection(*stamps)) >= 20  # the four messages of a frame share one stamp
    assert received["depth"][0].encoding == "32FC1" and list(received["camera_info"][0].k) == CAMERA.matrix()
