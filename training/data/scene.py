"""What a procedural room is: camera, light, room, objects and their materials.

A scene is a room (floor, ceiling, four walls) holding boxes, spheres and capped cylinders, every
surface with its own procedural texture (:mod:`edgedepth.training.data.textures`), lit by one
point light and seen by a pinhole camera with NYU-like intrinsics. Each surface knows its analytic
ray intersection, its normals and its texture coordinates (in world metres). numpy only: the
renderer runs where torch is not installed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple, Union

import numpy as np

from edgedepth.camera import PinholeIntrinsics

#: NYU Depth v2 RGB intrinsics (fx, fy, cx, cy) at 640x480, scaled to the output size.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_SIZE = (480, 640)

_HIT_EPS = 1e-7

Vec3 = Tuple[float, float, float]


@dataclass
class Material:
    """A procedural texture: pattern ``kind`` mixing two linear-RGB colours.

    ``scale`` is the pattern period in metres, ``angle`` rotates the pattern in the surface
    plane, ``grain`` is the amplitude of a fractal-noise albedo variation (0 = none) and
    ``seed`` picks the noise lattice.
    """

    kind: str = "plain"
    color_a: Vec3 = (0.7, 0.7, 0.7)
    color_b: Vec3 = (0.3, 0.3, 0.3)
    scale: float = 0.5
    angle: float = 0.0
    grain: float = 0.0
    seed: int = 0


def rotation_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """``Ry(yaw) @ Rx(pitch) @ Rz(roll)``: columns are the local axes in world coordinates."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return ry @ rx @ rz


@dataclass
class Camera:
    """A pinhole camera. World y is up; yaw 0 looks along +z, positive pitch looks up (radians).

    ``intrinsics`` (fx, fy, cx, cy) hold at ``reference_size`` (height, width) and are scaled
    to the rendered size, as resizing a real sensor's image would.
    """

    position: Vec3
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    intrinsics: Tuple[float, float, float, float] = NYU_INTRINSICS
    reference_size: Tuple[int, int] = NYU_SIZE

    def pinhole(self, height: int, width: int) -> PinholeIntrinsics:
        """The camera at ``height`` x ``width``, scaled from ``reference_size`` by edgedepth.camera's
        rule (pixel centres at integer coordinates), as a resized real image's would be."""
        fx, fy, cx, cy = self.intrinsics
        reference = PinholeIntrinsics(fx, fy, cx, cy, self.reference_size[1], self.reference_size[0])
        return reference.scaled_to(width, height)

    def scaled_intrinsics(self, height: int, width: int) -> Tuple[float, float, float, float]:
        """(fx, fy, cx, cy) at ``height`` x ``width`` (:meth:`pinhole`)."""
        camera = self.pinhole(height, width)
        return camera.fx, camera.fy, camera.cx, camera.cy

    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation; columns are the camera's right, down and forward axes."""
        # Camera axes (x right, y down, z forward) expressed in the world frame at yaw=pitch=0.
        camera_to_world = np.diag([-1.0, -1.0, 1.0])
        return rotation_matrix(self.yaw, -self.pitch) @ camera_to_world @ rotation_matrix(roll=self.roll)


@dataclass
class Light:
    """A point light: direct light falls off as ``1 / (1 + (d / falloff)^2)`` (1 at the light);
    ``ambient`` is the light every surface gets, shadowed or not, on the same scale."""

    position: Vec3
    color: Vec3 = (1.0, 1.0, 1.0)
    falloff: float = 2.5
    ambient: float = 0.25
    shadows: bool = True


@dataclass
class Room:
    """An axis-aligned room spanning ``[0, size]``; size is (width x, height y, length z) metres.

    ``walls`` are the materials of the walls at x=0, x=width, z=0 and z=length, in that order.
    """

    size: Vec3
    floor: Material = field(default_factory=Material)
    ceiling: Material = field(default_factory=Material)
    walls: Tuple[Material, Material, Material, Material] = field(default_factory=lambda: (Material(),) * 4)


@dataclass
class Plane:
    """An infinite plane ``normal . p = offset``; texture axes ``axis_u``, ``axis_v`` (metres)."""

    normal: Vec3
    offset: float
    axis_u: Vec3
    axis_v: Vec3
    material: Material = field(default_factory=Material)

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Ray parameter of the hit (inf where the ray misses)."""
        normal = np.asarray(self.normal)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.offset - origins @ normal) / (dirs @ normal)
        return np.where(t > _HIT_EPS, t, np.inf)

    def surface(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Normals and (u, v) texture coordinates in metres at ``points`` on the plane."""
        normals = np.broadcast_to(np.asarray(self.normal, dtype=float), points.shape)
        return normals, np.stack([points @ np.asarray(self.axis_u), points @ np.asarray(self.axis_v)], axis=1)


@dataclass
class Box:
    """An oriented box: ``half_size`` along its local axes, turned by (yaw, pitch, roll)."""

    center: Vec3
    half_size: Vec3
    orientation: Vec3 = (0.0, 0.0, 0.0)
    material: Material = field(default_factory=Material)

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Ray parameter of the nearest hit (slab method in the box frame; inf on a miss)."""
        rotation, half = rotation_matrix(*self.orientation), np.asarray(self.half_size)
        local_origins, local_dirs = (origins - np.asarray(self.center)) @ rotation, dirs @ rotation
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1.0 / local_dirs
            t_low, t_high = (-half - local_origins) * inverse, (half - local_origins) * inverse
        # fmin/fmax skip the NaN of 0 * inf (a ray parallel to a slab, starting on its plane).
        entry, leave = np.fmin(t_low, t_high), np.fmax(t_low, t_high)
        near = np.fmax(np.fmax(entry[:, 0], entry[:, 1]), entry[:, 2])
        far = np.fmin(np.fmin(leave[:, 0], leave[:, 1]), leave[:, 2])
        return np.where((far >= near) & (near > _HIT_EPS), near, np.inf)

    def surface(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Face normals and the two in-face local coordinates as (u, v)."""
        rotation, half = rotation_matrix(*self.orientation), np.asarray(self.half_size)
        local = (points - np.asarray(self.center)) @ rotation
        axis = np.argmax(np.abs(local) / half, axis=1)
        rows = np.arange(len(points))
        normals_local = np.zeros_like(local)
        normals_local[rows, axis] = np.sign(local[rows, axis])
        in_face = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        return normals_local @ rotation.T, np.take_along_axis(local, in_face, axis=1)

    def bounding_sphere(self) -> Tuple[np.ndarray, float]:
        """Centre and radius of a sphere enclosing the box."""
        return np.asarray(self.center, dtype=float), float(np.linalg.norm(self.half_size))

    def distance_to(self, point: Sequence[float]) -> float:
        """Distance from ``point`` to the box (0 inside)."""
        local = (np.asarray(point) - np.asarray(self.center)) @ rotation_matrix(*self.orientation)
        return float(np.linalg.norm(np.maximum(np.abs(local) - np.asarray(self.half_size), 0.0)))


@dataclass
class Sphere:
    """A sphere."""

    center: Vec3
    radius: float
    material: Material = field(default_factory=Material)

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Ray parameter of the nearest hit in front of the origin (inf on a miss)."""
        offset = origins - np.asarray(self.center)
        a = np.einsum("ij,ij->i", dirs, dirs)
        b = np.einsum("ij,ij->i", np.broadcast_to(offset, dirs.shape), dirs)
        c = np.einsum("ij,ij->i", offset, offset) - self.radius**2
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0.0))
        near, far = (-b - root) / a, (-b + root) / a
        t = np.where(near > _HIT_EPS, near, far)
        return np.where((disc >= 0) & (t > _HIT_EPS), t, np.inf)

    def surface(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Normals and (longitude, latitude) arc lengths in metres."""
        normals = (points - np.asarray(self.center)) / self.radius
        longitude = np.arctan2(normals[:, 2], normals[:, 0])
        latitude = np.arcsin(np.clip(normals[:, 1], -1.0, 1.0))
        return normals, self.radius * np.stack([longitude, latitude], axis=1)

    def bounding_sphere(self) -> Tuple[np.ndarray, float]:
        """The sphere itself."""
        return np.asarray(self.center, dtype=float), float(self.radius)

    def distance_to(self, point: Sequence[float]) -> float:
        """Distance from ``point`` to the sphere (0 inside)."""
        return max(float(np.linalg.norm(np.asarray(point) - np.asarray(self.center))) - self.radius, 0.0)


@dataclass
class Cylinder:
    """A capped cylinder around its local y axis, turned by (yaw, pitch, roll)."""

    center: Vec3
    radius: float
    half_height: float
    orientation: Vec3 = (0.0, 0.0, 0.0)
    material: Material = field(default_factory=Material)

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Ray parameter of the nearest hit on the side or a cap (inf on a miss)."""
        rotation = rotation_matrix(*self.orientation)
        o = np.broadcast_to((origins - np.asarray(self.center)) @ rotation, dirs.shape)
        d = dirs @ rotation
        (side_t, side_ok), (cap_t, cap_ok) = self._side_hits(o, d), self._cap_hits(o, d)
        candidates = np.where(np.concatenate([side_ok, cap_ok]), np.concatenate([side_t, cap_t]), np.inf)
        return np.min(candidates, axis=0)

    def _side_hits(self, o: np.ndarray, d: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        a = d[:, 0] ** 2 + d[:, 2] ** 2
        b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
        c = o[:, 0] ** 2 + o[:, 2] ** 2 - self.radius**2
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.sqrt(b * b - a * c)
            t = np.stack([(-b - root) / a, (-b + root) / a])
        valid = (t > _HIT_EPS) & (np.abs(o[:, 1] + t * d[:, 1]) <= self.half_height)
        return t, valid

    def _cap_hits(self, o: np.ndarray, d: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.stack([(self.half_height - o[:, 1]) / d[:, 1], (-self.half_height - o[:, 1]) / d[:, 1]])
            radial = (o[:, 0] + t * d[:, 0]) ** 2 + (o[:, 2] + t * d[:, 2]) ** 2
        return t, (t > _HIT_EPS) & (radial <= self.radius**2)

    def surface(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Normals; (arc length, height) on the side and local (x, z) on the caps, in metres."""
        rotation = rotation_matrix(*self.orientation)
        local = (points - np.asarray(self.center)) @ rotation
        radial = np.maximum(np.hypot(local[:, 0], local[:, 2]), 1e-12)
        on_cap = np.abs(np.abs(local[:, 1]) - self.half_height) < np.abs(radial - self.radius)
        side_normals = np.stack([local[:, 0] / radial, np.zeros_like(radial), local[:, 2] / radial], axis=1)
        cap_normals = np.zeros_like(local)
        cap_normals[:, 1] = np.sign(local[:, 1])
        normals = np.where(on_cap[:, None], cap_normals, side_normals) @ rotation.T
        side_uv = np.stack([self.radius * np.arctan2(local[:, 2], local[:, 0]), local[:, 1]], axis=1)
        return normals, np.where(on_cap[:, None], local[:, [0, 2]], side_uv)

    def bounding_sphere(self) -> Tuple[np.ndarray, float]:
        """Centre and radius of a sphere enclosing the cylinder."""
        return np.asarray(self.center, dtype=float), math.hypot(self.radius, self.half_height)

    def distance_to(self, point: Sequence[float]) -> float:
        """Distance from ``point`` to the cylinder (0 inside)."""
        local = (np.asarray(point) - np.asarray(self.center)) @ rotation_matrix(*self.orientation)
        radial = max(math.hypot(local[0], local[2]) - self.radius, 0.0)
        return math.hypot(radial, max(abs(local[1]) - self.half_height, 0.0))


SceneObject = Union[Box, Sphere, Cylinder]


@dataclass
class Scene:
    """Everything a render needs. ``exposure`` is where the bright end of the image lands (0-1);
    ``noise`` is the sensor noise standard deviation (fraction of full scale)."""

    camera: Camera
    room: Room
    light: Light
    objects: Sequence[SceneObject] = ()
    exposure: float = 0.85
    noise: float = 0.0
    noise_seed: int = 0


def room_planes(room: Room) -> List[Plane]:
    """The six inward-facing planes of a room: floor, ceiling, then walls x=0, x=W, z=0, z=L."""
    width, height, length = room.size
    x, y, z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
    neg = lambda v: (-v[0], -v[1], -v[2])  # noqa: E731 - a one-line helper for inward normals
    return [
        Plane(y, 0.0, x, z, room.floor),
        Plane(neg(y), -height, x, z, room.ceiling),
        Plane(x, 0.0, z, y, room.walls[0]),
        Plane(neg(x), -width, z, y, room.walls[1]),
        Plane(z, 0.0, x, y, room.walls[2]),
        Plane(neg(z), -length, x, y, room.walls[3]),
    ]
