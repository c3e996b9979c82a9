"""ROS 2 messages of a depth frame, built once from plain numpy for both the MCAP recorder
(edgedepth.runtime.record) and the rclpy node (edgedepth.runtime.ros2).

Each builder returns the message as a dict of its ROS 2 field names (nested dicts for nested
messages, ``bytes`` for ``uint8[]``): mcap-ros2-support encodes such dicts to CDR as they are, and
the node copies them into rclpy message objects (:func:`fill_message`). The definitions below are
the ROS 2 Humble ones without comments, in the ``ros2msg`` form MCAP schemas use (the type, then
each dependency after a ``====`` line and ``MSG: package/Type``); a test compares them with
rosbags' copy.

Conventions (REP 103/104/118): the frame is an optical frame (x right, y down, z forward); depth
is ``32FC1`` metres with NaN where there is none; the colour image ``bgr8``; CameraInfo carries K
and P of an undistorted pinhole camera (``plumb_bob`` with zero distortion) for the depth image's
size; the point cloud is unorganised (height 1), x, y, z float32, invalid points left out, so
``is_dense`` is true.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from edgedepth.camera import PinholeIntrinsics

Message = Dict[str, Any]

_SEPARATOR = "=" * 80 + "\n"
_HEADER = "builtin_interfaces/Time stamp\nstring frame_id\n"
_TIME = "int32 sec\nuint32 nanosec\n"


def _definition(main: str, *dependencies: Tuple[str, str]) -> str:
    parts = [main] + [f"MSG: {name}\n{text}" for name, text in dependencies]
    return _SEPARATOR.join(parts)


_STAMPED = (("std_msgs/Header", _HEADER), ("builtin_interfaces/Time", _TIME))

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"

#: Message type -> its ros2msg definition with dependencies.
DEFINITIONS: Dict[str, str] = {
    IMAGE: _definition(
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\n"
        "uint8[] data\n", *_STAMPED),
    CAMERA_INFO: _definition(
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\nfloat64[] d\nfloat64[9] k\n"
        "float64[9] r\nfloat64[12] p\nuint32 binning_x\nuint32 binning_y\nsensor_msgs/RegionOfInterest roi\n",
        *_STAMPED,
        ("sensor_msgs/RegionOfInterest",
         "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify\n")),
    POINT_CLOUD2: _definition(
        "std_msgs/Header header\nuint32 height\nuint32 width\nsensor_msgs/PointField[] fields\nbool is_bigendian\n"
        "uint32 point_step\nuint32 row_step\nuint8[] data\nbool is_dense\n",
        *_STAMPED,
        ("sensor_msgs/PointField",
         "uint8 INT8=1\nuint8 UINT8=2\nuint8 INT16=3\nuint8 UINT16=4\nuint8 INT32=5\nuint8 UINT32=6\n"
         "uint8 FLOAT32=7\nuint8 FLOAT64=8\nstring name\nuint32 offset\nuint8 datatype\nuint32 count\n")),
}
#: sensor_msgs/PointField.FLOAT32
POINT_FIELD_FLOAT32 = 7


@dataclass(frozen=True)
class Topics:
    """The topic names under one prefix (``--topic-prefix``, default ``/edgedepth``)."""

    prefix: str = "/edgedepth"

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", "/" + self.prefix.strip("/") if self.prefix.strip("/") else "")

    @property
    def depth(self) -> str:
        return f"{self.prefix}/depth"

    @property
    def image(self) -> str:
        return f"{self.prefix}/image"

    @property
    def camera_info(self) -> str:
        return f"{self.prefix}/camera_info"

    @property
    def points(self) -> str:
        return f"{self.prefix}/points"

    def types(self) -> Dict[str, str]:
        """Topic -> message type, in publishing order."""
        return {self.depth: IMAGE, self.image: IMAGE, self.camera_info: CAMERA_INFO, self.points: POINT_CLOUD2}


def header(stamp_ns: int, frame_id: str) -> Message:
    """std_msgs/Header at ``stamp_ns`` nanoseconds since the epoch."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": frame_id}


def depth_image(depth: np.ndarray, head: Message) -> Message:
    """sensor_msgs/Image 32FC1 metres; pixels without depth (<= 0, NaN, inf) are NaN (REP 118)."""
    values = np.asarray(depth, dtype=np.float32)
    values = np.where(np.isfinite(values) & (values > 0), values, np.float32(np.nan)).astype("<f4")
    height, width = values.shape
    return {"header": head, "height": height, "width": width, "encoding": "32FC1", "is_bigendian": 0,
            "step": 4 * width, "data": values.tobytes()}


def color_image(bgr: np.ndarray, head: Message) -> Message:
    """sensor_msgs/Image bgr8 from an H x W x 3 uint8 BGR frame."""
    pixels = np.ascontiguousarray(bgr, dtype=np.uint8)
    height, width = pixels.shape[:2]
    return {"header": head, "height": height, "width": width, "encoding": "bgr8", "is_bigendian": 0,
            "step": 3 * width, "data": pixels.tobytes()}


def camera_info(camera: PinholeIntrinsics, head: Message) -> Message:
    """sensor_msgs/CameraInfo of an undistorted pinhole camera (zero plumb_bob distortion, R = I)."""
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    return {
        "header": head, "height": camera.height, "width": camera.width, "distortion_model": "plumb_bob",
        "d": [0.0] * 5, "k": camera.matrix(), "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0], "binning_x": 0, "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


def point_cloud(points: np.ndarray, head: Message) -> Message:
    """sensor_msgs/PointCloud2, unorganised, x y z float32 metres (N x 3 finite points)."""
    xyz = np.ascontiguousarray(points, dtype="<f4").reshape(-1, 3)
    fields = [{"name": name, "offset": 4 * index, "datatype": POINT_FIELD_FLOAT32, "count": 1}
              for index, name in enumerate("xyz")]
    return {"header": head, "height": 1, "width": len(xyz), "fields": fields, "is_bigendian": False,
            "point_step": 12, "row_step": 12 * len(xyz), "data": xyz.tobytes(), "is_dense": True}


def frame_messages(topics: Topics, stamp_ns: int, frame_id: str, depth: np.ndarray, bgr: np.ndarray,
                   camera: PinholeIntrinsics, points: np.ndarray) -> Dict[str, Message]:
    """Topic -> message for one frame, every message with the same header."""
    head = header(stamp_ns, frame_id)
    return {topics.depth: depth_image(depth, head), topics.image: color_image(bgr, head),
            topics.camera_info: camera_info(camera, head), topics.points: point_cloud(points, head)}


def fill_message(message: Any, fields: Mapping[str, Any]) -> Any:
    """Copy a builder's dict into a ROS 2 (rosidl) message object, recursing into nested messages
    and sequences of them (PointCloud2.fields); returns ``message``."""
    types = message.get_fields_and_field_types()
    for name, value in fields.items():
        if isinstance(value, Mapping):
            fill_message(getattr(message, name), value)
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            element = _message_class(types[name])
            setattr(message, name, [fill_message(element(), item) for item in value])
        elif isinstance(value, bytes):  # rosidl checks a plain sequence byte by byte; array('B') is taken as is
            setattr(message, name, array.array("B", value))
        else:
            setattr(message, name, value)
    return message


def _message_class(field_type: str) -> Any:
    """``sequence<sensor_msgs/PointField>`` -> the class sensor_msgs.msg.PointField."""
    import importlib

    package, name = field_type[field_type.index("<") + 1:].rstrip(">").split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)
