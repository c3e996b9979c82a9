"""Point clouds: the depth image back-projected through its pinhole camera, and PLY files of it.

A pixel (u, v) with depth z > 0 becomes ``x = (u - cx) * z / fx``, ``y = (v - cy) * z / fy``, ``z``,
in float32 in that order of operations (the native kernel's, native/src/kernels_common.hpp), in
the camera's optical frame: x right, y down, z forward, metres (ROS REP 103's ``*_optical_frame``).
Pixels without depth (<= 0, NaN, inf) give no point. ``--points-stride N`` keeps every N-th pixel
of every N-th row, starting at (0, 0).

:class:`FrameClouds` back-projects each frame once for every sink that writes it (``--save-points``,
``--record`` and the ROS 2 publisher share one).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from edgedepth.camera import PinholeIntrinsics
from edgedepth.errors import UsageError
from edgedepth.io import write_bytes_atomic
from edgedepth.preprocess import import_cv2
from edgedepth.runtime.focal import DepthCamera
from edgedepth.runtime.sources import Frame


def back_project(depth: np.ndarray, camera: PinholeIntrinsics, stride: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """(N x 3 float32 points, the boolean grid ``depth[::stride, ::stride]`` of the pixels they come
    from): one point per valid pixel, in row-major order."""
    if depth.shape != (camera.height, camera.width):
        raise UsageError(f"depth of {depth.shape[1]}x{depth.shape[0]} with a camera for "
                         f"{camera.width}x{camera.height}: back-project the depth with the intrinsics of its own size")
    z = np.asarray(depth, dtype=np.float32)[::stride, ::stride]
    valid = np.isfinite(z) & (z > 0)
    u = np.arange(0, camera.width, stride, dtype=np.float32)[None, :]
    v = np.arange(0, camera.height, stride, dtype=np.float32)[:, None]
    # Over the whole grid, then one boolean gather: cheaper than gathering per coordinate.
    x = (u - np.float32(camera.cx)) * z / np.float32(camera.fx)
    y = (v - np.float32(camera.cy)) * z / np.float32(camera.fy)
    return np.stack([x, y, z], axis=-1)[valid], valid


def colour_at_depth_size(image: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """The BGR frame resized to the depth image (as the model input was: bilinear, stretched), so
    the colour pixel (u, v) is the one the depth pixel (u, v) was computed from."""
    height, width = depth.shape
    if image.shape[:2] == (height, width):
        return image
    cv2 = import_cv2()
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def encode_ply(points: np.ndarray, colours: Optional[np.ndarray] = None) -> bytes:
    """A binary little-endian PLY of N x 3 float32 points, with N x 3 uint8 RGB colours if given."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colours is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=np.dtype(fields))
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    if colours is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertices[name] = colours[:, channel]
    properties = "".join(f"property {'float' if kind == '<f4' else 'uchar'} {name}\n" for name, kind in fields)
    header = ("ply\nformat binary_little_endian 1.0\n"
              "comment edgedepth depth-run: metres, camera optical frame (x right, y down, z forward)\n"
              f"element vertex {len(points)}\n{properties}end_header\n")
    return header.encode("ascii") + vertices.tobytes()


@dataclass(frozen=True)
class FrameCloud:
    """One frame's depth image as a point cloud, with what the sinks write beside it."""

    #: The depth image's pinhole camera.
    camera: PinholeIntrinsics
    #: N x 3 float32 points (:func:`back_project`).
    points: np.ndarray
    #: The ``depth[::stride, ::stride]`` grid of the pixels the points come from.
    valid: np.ndarray
    #: The BGR frame at the depth image's size (:func:`colour_at_depth_size`), every pixel.
    colour: np.ndarray


class FrameClouds:
    """Each frame's :class:`FrameCloud` at ``stride``, computed once however many sinks ask for it.

    The sinks run one after another on the render thread with the same ``(frame, depth)``; the
    last frame's cloud is kept (and only it: a cloud is megabytes)."""

    def __init__(self, camera: DepthCamera, stride: int = 1) -> None:
        self.camera = camera
        self.stride = int(stride)
        self._last: Optional[Tuple[Frame, np.ndarray, FrameCloud]] = None

    def __call__(self, frame: Frame, depth: np.ndarray) -> FrameCloud:
        if self._last is not None and self._last[0] is frame and self._last[1] is depth:
            return self._last[2]
        camera = self.camera.for_frame(frame, depth)
        points, valid = back_project(depth, camera, self.stride)
        cloud = FrameCloud(camera, points, valid, colour_at_depth_size(frame.image, depth))
        self._last = (frame, depth, cloud)
        return cloud


class PointsWriter:
    """``--save-points DIR``: one PLY per frame, ``DIR/<name>.ply`` (the ``--save-depth`` name)."""

    def __init__(self, directory: str, clouds: FrameClouds, colour: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clouds = clouds
        self.colour = colour
        self.written = 0

    def write(self, frame: Frame, depth: np.ndarray) -> Path:
        cloud = self.clouds(frame, depth)
        colours = None
        if self.colour:
            stride = self.clouds.stride
            colours = cloud.colour[::stride, ::stride][cloud.valid][:, ::-1]
        path = self.directory / f"{frame.name}.ply"
        write_bytes_atomic(path, encode_ply(cloud.points, colours))  # an OSError names ``path``
        self.written += 1
        return path

    def close(self) -> None:
        """Nothing is held open; present so every sink closes the same way."""
