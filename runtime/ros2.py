"""``depth-ros2``: a ROS 2 node publishing metric depth live (rclpy).

It runs depth-run's pipeline (any source: ``--camera``, ``--input``; or ``--image-topic``, a
sensor_msgs/Image subscription) and publishes, per frame, the messages ``--record`` writes (one
implementation: edgedepth.runtime.ros_messages): ``<prefix>/depth`` (32FC1 metres),
``<prefix>/image`` (bgr8, at the depth image's size), ``<prefix>/camera_info`` and
``<prefix>/points`` (PointCloud2), every header with the frame's capture time (for
``--image-topic``: the incoming image's own stamp, so the depth lines up with it) and
``frame_id`` (``--frame-id``, or the ROS parameter ``frame_id``).

rclpy comes with ROS 2 (``source /opt/ros/<distro>/setup.bash``), not from pip: it is imported
only when the node starts. ROS arguments follow ``--ros-args`` as usual::

    python -m edgedepth.runtime.ros2 --model model.onnx --image-topic /camera/color/image_raw \\
        --intrinsics camera.yaml --ros-args -r __node:=depth -p frame_id:=camera_color_optical_frame \\
        -r /edgedepth/depth:=/camera/depth/image_raw
"""
from __future__ import annotations

import argparse
import logging
import math
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.camera import CameraCalibration, parse_intrinsics
from edgedepth.cli import configure_logging, positive_float, positive_int, run_command
from edgedepth.errors import SourceError, UsageError
from edgedepth.runtime.align import ALIGN_MODES
from edgedepth.runtime.backend import open_backend
from edgedepth.runtime.cli import (
    add_backend_arguments,
    add_intrinsics_argument,
    add_source_arguments,
    add_temporal_argument,
    add_topic_arguments,
    check_backend_args,
    check_temporal_arg,
    depth_camera,
    depth_stages,
    inference_plan,
    planned_backend_options,
    source_options,
    stop_between_frames,
)
from edgedepth.runtime.pipeline import DepthPipeline, Outputs, PipelineOptions
from edgedepth.runtime.points import FrameClouds
from edgedepth.runtime.record import FrameClock
from edgedepth.runtime.ros_messages import CAMERA_INFO, IMAGE, POINT_CLOUD2, Topics, fill_message, frame_messages
from edgedepth.runtime.sources import Frame, Source, open_source
from edgedepth.runtime.sparse import to_depth_grid

LOG = logging.getLogger("edgedepth.runtime.ros2")
#: Image encodings --image-topic takes -> channels.
IMAGE_ENCODINGS = {"bgr8": 3, "rgb8": 3, "mono8": 1}
#: Seconds a blocked read waits between looks at the stop flag.
_POLL_S = 0.05


def import_rclpy() -> Any:
    """rclpy, or a one-line UsageError saying how to get it."""
    try:
        import rclpy
    except ImportError as exc:
        raise UsageError(
            f"depth-ros2 needs ROS 2's rclpy, which is not importable here ({exc}); it is not on PyPI: install "
            "ROS 2 (Humble or newer), `source /opt/ros/<distro>/setup.bash` in this shell, and run again with the "
            "Python ROS 2 uses; without ROS, record with depth-run --record FILE.mcap"
        ) from exc
    return rclpy


def split_ros_args(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(our arguments, ROS arguments): everything from the first ``--ros-args`` on belongs to ROS."""
    argv = list(argv)
    if "--ros-args" not in argv:
        return argv, []
    cut = argv.index("--ros-args")
    return argv[:cut], argv[cut:]


def image_to_bgr(encoding: str, height: int, width: int, step: int, data: bytes) -> np.ndarray:
    """A sensor_msgs/Image's pixels as H x W x 3 uint8 BGR (rows may be padded: ``step`` bytes each)."""
    channels = IMAGE_ENCODINGS.get(encoding)
    if channels is None:
        raise SourceError(f"image encoding {encoding!r} is not supported: publish bgr8, rgb8 or mono8 (e.g. through "
                          "image_proc's debayer or a resize node)")
    if step < width * channels or len(data) < step * height:
        raise SourceError(f"a {width}x{height} {encoding} image holds {len(data)} bytes with step {step}: expected "
                          f"step >= {width * channels} and {step * height} bytes; the publisher is broken")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, ::-1] if encoding == "rgb8" else pixels)


#: Encodings of a sparse depth sensor_msgs/Image and their scale to metres: 16-bit millimetres (REP 118's
#: 16UC1, as depth_image_proc and most ToF/LiDAR-projection nodes publish; mono16 alike) or 32FC1 metres.
SPARSE_ENCODINGS: Dict[str, Tuple[str, float]] = {"16UC1": ("u2", 1e-3), "mono16": ("u2", 1e-3), "32FC1": ("f4", 1.0)}
#: Default --sparse-max-age: a 10 Hz LiDAR's period; older points describe a scene the robot has left.
DEFAULT_SPARSE_MAX_AGE_S = 0.1


def sparse_image_to_metres(encoding: str, height: int, width: int, step: int, data: bytes,
                           is_bigendian: bool = False) -> np.ndarray:
    """A sparse depth sensor_msgs/Image as H x W float32 metres, 0 = no measurement (0, NaN and
    negative values of the message all mean none)."""
    kind = SPARSE_ENCODINGS.get(encoding)
    if kind is None:
        raise SourceError(f"sparse depth encoding {encoding!r} is not supported: publish 16UC1 (millimetres) or "
                          "32FC1 (metres), 0 where there is no measurement")
    dtype = np.dtype(kind[0]).newbyteorder(">" if is_bigendian else "<")
    if step < width * dtype.itemsize or len(data) < step * height:
        raise SourceError(f"a {width}x{height} {encoding} sparse depth image holds {len(data)} bytes with step "
                          f"{step}: expected step >= {width * dtype.itemsize} and {step * height} bytes")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    values = rows[:, : width * dtype.itemsize].copy().view(dtype).reshape(height, width)
    metres = values.astype(np.float32) * np.float32(kind[1])
    metres[~np.isfinite(metres) | (metres < 0)] = 0.0
    return metres


class TopicSparseDepth:
    """Sparse metric depth from a sensor_msgs/Image topic, for the alignment stage
    (edgedepth.runtime.align.SparseSource): a frame gets the newest message received within
    ``max_age_s`` of the frame's own capture (both on the receiving clock, so a sensor and a camera
    whose stamps come from different clocks still pair); older points describe a scene the robot has
    moved through, so such a frame is not aligned (with --temporal the filtered scale holds)."""

    def __init__(self, topic: str, max_age_s: float = DEFAULT_SPARSE_MAX_AGE_S) -> None:
        self.topic = topic
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._latest: Optional[Tuple[Any, float]] = None
        # The last conversion: a 30 Hz camera asks for a 10 Hz scan's grid three times.
        self._grid: Optional[Tuple[Any, Tuple[int, ...], np.ndarray]] = None

    def on_image(self, message: Any) -> None:
        """Subscription callback: keep the newest message (converted when a frame asks for it)."""
        with self._lock:
            self._latest = (message, time.perf_counter())

    def read(self, frame: Frame, depth_shape: Tuple[int, int]) -> Optional[np.ndarray]:
        with self._lock:
            latest = self._latest
        if latest is None or abs(frame.captured_at - latest[1]) > self.max_age_s:
            return None
        message, key = latest[0], (*depth_shape, *frame.image.shape[:2])
        if self._grid is None or self._grid[0] is not message or self._grid[1] != key:
            metres = sparse_image_to_metres(message.encoding, message.height, message.width, message.step,
                                            bytes(message.data), bool(message.is_bigendian))
            grid = to_depth_grid(metres, depth_shape, frame.image.shape[:2], f"sparse depth on {self.topic}")
            self._grid = (message, key, grid)
        return self._grid[2]


def calibration_from_camera_info(message: Any, topic: str) -> CameraCalibration:
    """A sensor_msgs/CameraInfo as the calibration ``--intrinsics`` would give (K and its image size)."""
    k = [float(value) for value in message.k]
    if len(k) != 9 or not all(map(math.isfinite, k)) or k[0] <= 0 or k[4] <= 0 or message.width < 1 \
            or message.height < 1:
        raise UsageError(f"the CameraInfo on {topic} holds no camera (k={k}, {message.width}x{message.height}): "
                         "the camera driver has no calibration loaded; give --intrinsics FILE instead")
    return CameraCalibration(k[0], k[4], k[2], k[5], size=(int(message.width), int(message.height)), origin=topic)


def wait_for_camera_info(node: Any, topic: str, timeout_s: float) -> CameraCalibration:
    """The calibration from the first CameraInfo on ``topic`` (the node's executor must be spinning)."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo

    received: List[Any] = []
    arrived = threading.Event()

    def keep(message: Any) -> None:
        received.append(message)
        arrived.set()

    subscription = node.create_subscription(CameraInfo, topic, keep, qos_profile_sensor_data)
    try:
        if not arrived.wait(timeout_s):
            raise UsageError(f"no CameraInfo on {topic} within {timeout_s:.0f} s: check `ros2 topic echo --once "
                             f"{topic}`, or give --intrinsics FILE")
    finally:
        node.destroy_subscription(subscription)
    return calibration_from_camera_info(received[0], topic)


class TopicSource(Source):
    """Frames from a sensor_msgs/Image subscription: the newest image waits for the pipeline (older
    ones are dropped, like a live camera); each frame keeps its message's stamp for the headers."""

    live = True

    def __init__(self, topic: str, frame_timeout_s: float = 10.0) -> None:
        super().__init__(f"ROS 2 topic {topic}")
        self._cond = threading.Condition()
        self._latest: Optional[Tuple[Any, float]] = None
        self._stamps: Dict[int, int] = {}
        self._index = 0
        self._closed = False
        self._frame_timeout_s = frame_timeout_s

    def on_image(self, message: Any) -> None:
        """Subscription callback: keep the newest image (converted later, on the reader thread)."""
        with self._cond:
            if self._latest is not None:
                self.counters.dropped += 1
            self._latest = (message, time.perf_counter())
            self._cond.notify_all()

    def read(self) -> Optional[Frame]:
        deadline = time.monotonic() + self._frame_timeout_s
        with self._cond:
            while self._latest is None and not self._closed:
                if time.monotonic() > deadline:
                    raise SourceError(f"no image on {self.description} for {self._frame_timeout_s:.0f} s: check "
                                      "`ros2 topic hz` on it, and --frame-timeout")
                self._cond.wait(_POLL_S)
            if self._closed:
                return None
            assert self._latest is not None
            (message, received), self._latest = self._latest, None
        start = time.perf_counter()
        image = image_to_bgr(message.encoding, message.height, message.width, message.step, bytes(message.data))
        frame = Frame(self._index, image, received, time.perf_counter() - start)
        stamp = message.header.stamp
        self._stamps[self._index] = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
        self._index += 1
        self.counters.read += 1
        self.counters.delivered += 1
        return frame

    def stamp_ns(self, frame: Frame) -> int:
        """The stamp of the message ``frame`` came from (the clock of the depth headers)."""
        return self._stamps.pop(frame.index)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Ros2Publisher:
    """A frame sink publishing each frame's messages with rclpy."""

    def __init__(self, node: Any, topics: Topics, frame_id: str, clouds: FrameClouds, clock: Any) -> None:
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.topics, self.frame_id, self.clouds, self.clock = topics, frame_id, clouds, clock
        classes = {IMAGE: Image, CAMERA_INFO: CameraInfo, POINT_CLOUD2: PointCloud2}
        self._publishers = {topic: (classes[kind], node.create_publisher(classes[kind], topic, 10))
                            for topic, kind in topics.types().items()}
        self.published = 0

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        cloud = self.clouds(frame, depth)
        messages = frame_messages(self.topics, self.clock.stamp_ns(frame), self.frame_id, depth, cloud.colour,
                                  cloud.camera, cloud.points)
        for topic, fields in messages.items():
            kind, publisher = self._publishers[topic]
            publisher.publish(fill_message(kind(), fields))
        self.published += 1

    def close(self) -> None:
        """Publishers are destroyed with the node."""


def ros2_parser() -> argparse.ArgumentParser:
    """The ``depth-ros2`` argument parser (ROS arguments go after ``--ros-args``)."""
    parser = argparse.ArgumentParser(
        prog="depth-ros2",
        description="ROS 2 node: metric depth, image, camera_info and points from a camera, a file or an image "
                    "topic. ROS arguments (remappings, parameters) follow --ros-args.",
    )
    add_backend_arguments(parser)
    add_source_arguments(parser, image_topic=True)
    add_intrinsics_argument(parser.add_argument)
    parser.add_argument("--camera-info-topic", help="take the intrinsics from this sensor_msgs/CameraInfo topic "
                                                    "(its first message) instead of --intrinsics")
    add_topic_arguments(parser.add_argument)
    parser.add_argument("--points-stride", type=positive_int, default=1,
                        help="points: every N-th pixel of every N-th row (a lighter PointCloud2)")
    parser.add_argument("--sparse-depth-topic",
                        help="align each frame to sparse metric depth from this sensor_msgs/Image topic (16UC1 mm or "
                             "32FC1 m, 0 = none, projected into the camera image): LiDAR, ToF, stereo points")
    parser.add_argument("--sparse-max-age", type=positive_float, default=DEFAULT_SPARSE_MAX_AGE_S, metavar="S",
                        help="use a sparse message only for frames captured within S seconds of its arrival "
                             f"(default {DEFAULT_SPARSE_MAX_AGE_S:g}: a 10 Hz LiDAR)")
    parser.add_argument("--align", choices=ALIGN_MODES, default="scale_shift",
                        help="--sparse-depth-topic fit, in inverse depth with outlier rejection (default scale_shift)")
    add_temporal_argument(parser.add_argument)
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    parser.add_argument("--quiet", action="store_true", help="only errors on stderr")
    # The node reads sparse depth from a topic, not from depth-run's --sparse-depth folder.
    parser.set_defaults(streams=None)
    return parser


def _check_ros2_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.intrinsics is not None and args.camera_info_topic is not None:
        parser.error("--intrinsics and --camera-info-topic both give the camera: keep one")
    check_temporal_arg(parser, args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``depth-ros2``; returns the exit status."""
    import sys

    ours, ros_args = split_ros_args(sys.argv[1:] if argv is None else argv)
    return run_command("depth-ros2", ros2_parser(), lambda args: _node(args, ros_args), ours,
                       validate=_check_ros2_args)


def _node(args: argparse.Namespace, ros_args: List[str]) -> int:
    configure_logging(args.quiet)
    check_backend_args(args)
    rclpy = import_rclpy()
    calibration = parse_intrinsics(args.intrinsics) if args.intrinsics is not None else None
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # A context of its own: the node also runs inside a process that already uses rclpy (a test, a launcher).
    # rclpy's signal handlers stay out: Ctrl-C, SIGTERM and SIGHUP end the run between frames as in depth-run.
    context = rclpy.Context()
    rclpy.init(args=["depth-ros2", *ros_args], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("edgedepth", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name="depth-ros2 executor", daemon=True)
    try:
        spinner.start()
        frame_id = str(node.declare_parameter("frame_id", args.frame_id).value)
        if args.camera_info_topic is not None:
            calibration = wait_for_camera_info(node, args.camera_info_topic, args.frame_timeout)
        sparse = _subscribe_sparse_depth(args, node)
        with _open_source(args, node) as source:
            return _publish(args, node, source, calibration, frame_id, sparse)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _open_source(args: argparse.Namespace, node: Any) -> Source:
    if args.image_topic is None:
        uri = args.camera if args.camera is not None else args.input
        return open_source(uri, source_options(args), camera=args.camera is not None)
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    source = TopicSource(args.image_topic, args.frame_timeout)
    # Sensor-data QoS (best effort) receives from reliable and best-effort publishers alike.
    node.create_subscription(Image, args.image_topic, source.on_image, qos_profile_sensor_data)
    return source


def _subscribe_sparse_depth(args: argparse.Namespace, node: Any) -> Optional[TopicSparseDepth]:
    if args.sparse_depth_topic is None:
        return None
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    sparse = TopicSparseDepth(args.sparse_depth_topic, args.sparse_max_age)
    node.create_subscription(Image, args.sparse_depth_topic, sparse.on_image, qos_profile_sensor_data)
    return sparse


def _publish(args: argparse.Namespace, node: Any, source: Source, calibration: Any, frame_id: str,
             sparse: Optional[TopicSparseDepth] = None) -> int:
    plan = inference_plan(args, source)  # frames at once and threads each, as depth-run plans them
    with open_backend(args.model, args.backend, **planned_backend_options(args, plan)) as backend:
        camera = depth_camera(args.model, backend, calibration, "depth-ros2 (camera_info, points)")
        clock = source if isinstance(source, TopicSource) else FrameClock(live=source.live, fps=source.fps)
        publisher = Ros2Publisher(node, Topics(args.topic_prefix), frame_id, FrameClouds(camera, args.points_stride),
                                  clock)
        options = PipelineOptions(max_frames=args.max_frames, progress_every_s=0 if args.quiet else 5.0,
                                  streams=plan.streams)
        pipeline = DepthPipeline(source, backend, Outputs(frame_sinks=[publisher]), options,
                                 depth_stages(args, camera, sparse))
        LOG.info("publishing on %s/{depth,image,camera_info,points}", Topics(args.topic_prefix).prefix)
        with stop_between_frames(pipeline):
            result = pipeline.run()
    LOG.info("%d frames published; stopped: %s", publisher.published, result.exit_reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
