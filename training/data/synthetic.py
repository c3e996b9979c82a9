"""Procedural RGB-D rooms with exact metric depth: the ``synthetic`` dataset.

Each sample is a room (floor, ceiling, four walls) holding boxes, spheres and capped cylinders,
every surface with its own procedural texture, lit by one point light (distance falloff, ambient
term, cast shadows) and seen by a pinhole camera with NYU-like intrinsics. Rendering is
vectorised numpy ray casting: one ray per pixel, analytic intersections, the nearest hit wins.

Depth is what a depth sensor reports: the distance along the optical axis (camera-frame z), not
the ray length. Camera rays are built with camera-frame z = 1, so the ray parameter of a hit *is*
its depth and no conversion can drift.

The scenes carry the cues a monocular network learns depth from: perspective (the floor recedes
to the horizon), occlusion, shading and shadows, and texture gradients (texture coordinates are in
world metres, so patterns shrink with distance). Texture detail finer than a pixel's footprint
fades to its mean, which keeps far and grazing surfaces free of aliasing noise.

Every sample is a pure function of ``(seed, split, index)``: splits draw from disjoint seed
streams, so train, val and test never share a scene. Rendered splits are cached as one
memory-mapped ``.npy`` of records per split, keyed by generator version, split, size, count,
seed and depth range.
"""
from __future__ import annotations

import colorsys
import dataclasses
import concurrent.futures
import concurrent.futures.process
import logging
import math
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from edgedepth.errors import DataError
from edgedepth.io import atomic_path

LOGGER = logging.getLogger(__name__)

#: Bump whenever a change alters rendered pixels: it is part of every cache key.
GENERATOR_VERSION = 4
#: NYU Depth v2 RGB intrinsics (fx, fy, cx, cy) at 640x480, scaled to the output size.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_SIZE = (480, 640)
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
TEXTURE_KINDS = ("plain", "checker", "stripes", "noise", "wood", "tiles", "bricks", "marble")
#: Rays meeting a surface more obliquely than this (|cos| below it) get no depth, like a sensor.
GRAZING_COS = 0.035
#: Splits smaller than this render in-process: a worker pool costs more to start than it saves.
MIN_SAMPLES_FOR_POOL = 64
#: A progress bar is shown when rendering more samples than this.
PROGRESS_THRESHOLD = 100

_HIT_EPS = 1e-7
_SHADOW_OFFSET = 1e-4

Vec3 = Tuple[float, float, float]
SeedLike = Union[int, np.random.Generator]


# ----------------------------------------------------------------------------------------------
# Scene description
# ----------------------------------------------------------------------------------------------


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

    def scaled_intrinsics(self, height: int, width: int) -> Tuple[float, float, float, float]:
        """(fx, fy, cx, cy) at ``height`` x ``width`` (pixel centres at integer coordinates)."""
        fx, fy, cx, cy = self.intrinsics
        sx, sy = width / self.reference_size[1], height / self.reference_size[0]
        return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5

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


# ----------------------------------------------------------------------------------------------
# Procedural textures
# ----------------------------------------------------------------------------------------------


#: One noise lattice for every texture: 256x256 random values, padded by one row and column
#: that wrap around, so the four corners of a cell are plain offsets into the flat array.
_LATTICE = np.pad(np.random.default_rng(20240601).random((256, 256)), ((0, 1), (0, 1)), mode="wrap").ravel()
_LATTICE_STRIDE = 257


def _seed_offset(seed: int) -> np.ndarray:
    """A per-seed shift of the lattice: different seeds see different, independent-looking noise."""
    return np.array([(seed * 7919) % 251 + 0.37, (seed * 104729) % 241 + 0.61])


def _lattice_hash(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A value in [0, 1) per integer lattice point (period 256)."""
    return _LATTICE[(x & 255) * _LATTICE_STRIDE + (y & 255)]


def _value_noise(coords: np.ndarray, seed: int) -> np.ndarray:
    """Smoothly interpolated lattice noise in [0, 1] at (M, 2) coordinates (lattice period 1)."""
    coords = coords + _seed_offset(seed)
    cell = np.floor(coords)
    frac = coords - cell
    corner = cell.astype(np.int64) & 255
    flat = corner[:, 0] * _LATTICE_STRIDE + corner[:, 1]
    sx, sy = (frac * frac * (3.0 - 2.0 * frac)).T
    n00, n01 = _LATTICE[flat], _LATTICE[flat + 1]
    n10, n11 = _LATTICE[flat + _LATTICE_STRIDE], _LATTICE[flat + _LATTICE_STRIDE + 1]
    top = n00 + sx * (n10 - n00)
    bottom = n01 + sx * (n11 - n01)
    return top + sy * (bottom - top)


def _resolvable(period: float, footprint: np.ndarray) -> np.ndarray:
    """1 where a pattern of ``period`` metres spans 4+ pixels, 0 at 2 or fewer (it would alias)."""
    return np.clip(0.5 * period / footprint - 1.0, 0.0, 1.0)


def _fbm(uv: np.ndarray, footprint: np.ndarray, period: float, seed: int, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1]; octaves too fine for the pixel footprint fade to their mean."""
    total = np.zeros(len(uv))
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        weight = _resolvable(period, footprint)
        if weight.any():
            noise = _value_noise(uv / period + 17.31 * octave, seed + octave)
            total += amplitude * weight * (noise - 0.5)
        norm += amplitude
        amplitude, period = amplitude * 0.5, period * 0.5
    # Sums of octaves cluster around 0.5; the gain spreads them over most of [0, 1].
    return 0.5 + total / norm * 1.6


def _fade(pattern: np.ndarray, mean: float, weight: np.ndarray) -> np.ndarray:
    return mean + weight * (pattern - mean)


def _plain(m: Material, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    return np.zeros(len(uv))


def _checker(m: Material, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    parity = (np.floor(uv[:, 0] / m.scale) + np.floor(uv[:, 1] / m.scale)) % 2
    return _fade(parity, 0.5, _resolvable(2 * m.scale, footprint))


def _stripes(m: Material, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    stripe = (np.mod(uv[:, 0] / m.scale, 1.0) < 0.5).astype(float)
    return _fade(stripe, 0.5, _resolvable(m.scale, footprint))


def _noise(m: Material, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    return np.clip(_fbm(uv, footprint, m.scale, m.seed, octaves=5), 0.0, 1.0)


def _wood(m: Material, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    # Rings around a far-away centre, stretched along u: long grain as on sawn planks.
    centre = 1.0 + np.mod(_seed_offset(m.seed), 4.0)
    radius = np.hypot(0.15 * uv[:, 0] + centre[0], uv[:, 1] + centre[1])
    warp = _fbm(uv * np.array([0.25, 1.0]), footprint, 4 * m.scale, m.seed, octaves=2)
    rings = np.mod(radius / m.scale + 3.0 * warp, 1.0) ** 2
    return _fade(rings, 1.0 / 3.0, _resolvable(m.scale, footprint))


def _tiles(m: Material, uv: np.ndarray, footprint: np.ndarray, stagger: bool = False,
           aspect: float = 1.0) -> np.ndarray:
    """Tiles ``aspect * scale`` x ``scale`` with grout lines (1) and a shade per tile (0-0.35)."""
    row = np.floor(uv[:, 1] / m.scale)
    across = uv[:, 0] / (aspect * m.scale) + (0.5 * np.mod(row, 2) if stagger else 0.0)
    col = np.floor(across)
    in_x, in_y = (across - col) * aspect * m.scale, uv[:, 1] - row * m.scale  # metres into the tile
    edge = np.minimum(np.minimum(in_x, aspect * m.scale - in_x), np.minimum(in_y, m.scale - in_y))
    tile_shade = 0.35 * _lattice_hash(col.astype(np.int64) + m.seed, row.astype(np.int64))
    pattern = np.where(edge < 0.05 * m.scale, 1.0, tile_shade)
    return _fade(pattern, 0.3, _resolvable(m.scale, footprint))


def _bricks(m: Material, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    return _tiles(m, uv, footprint, stagger=True, aspect=2.0)


def _marble(m: Material, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    warp = _fbm(uv, footprint, 2 * m.scale, m.seed, octaves=4)
    veins = (0.5 + 0.5 * np.sin(2 * np.pi * (uv[:, 0] / m.scale + 2.5 * warp))) ** 4
    return _fade(veins, 0.27, _resolvable(m.scale, footprint))


_PATTERNS: Dict[str, Callable[[Material, np.ndarray, np.ndarray], np.ndarray]] = {
    "plain": _plain, "checker": _checker, "stripes": _stripes, "noise": _noise,
    "wood": _wood, "tiles": _tiles, "bricks": _bricks, "marble": _marble,
}


def texture_albedo(material: Material, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Linear-RGB albedo (M, 3) of ``material`` at (M, 2) texture coordinates in metres.

    ``footprint`` (M,) is the size of a pixel on the surface in metres: detail finer than it
    fades to its mean instead of aliasing.
    """
    if material.kind not in _PATTERNS:
        raise DataError(f"texture kind {material.kind!r} is unknown; choose one of {', '.join(TEXTURE_KINDS)}")
    c, s = math.cos(material.angle), math.sin(material.angle)
    uv = uv @ np.array([[c, -s], [s, c]])
    pattern = _PATTERNS[material.kind](material, uv, footprint)
    color_a, color_b = np.asarray(material.color_a), np.asarray(material.color_b)
    albedo = color_a + pattern[:, None] * (color_b - color_a)
    if material.grain > 0:
        grain = _fbm(uv, footprint, 0.4, material.seed + 101, octaves=4)
        albedo = albedo * (1.0 + material.grain * (2.0 * grain[:, None] - 1.0))
    return np.clip(albedo, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def camera_rays(camera: Camera, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Origin (1, 3) and world directions (H*W, 3) whose camera-frame z is exactly 1."""
    fx, fy, cx, cy = camera.scaled_intrinsics(height, width)
    x = (np.arange(width) - cx) / fx
    y = (np.arange(height) - cy) / fy
    xx, yy = np.meshgrid(x, y)
    dirs_camera = np.stack([xx.ravel(), yy.ravel(), np.ones(height * width)], axis=1)
    return np.asarray(camera.position, dtype=float)[None, :], dirs_camera @ camera.rotation().T


def _rays_towards(obj: object, apex: np.ndarray, unit_dirs: np.ndarray) -> Optional[np.ndarray]:
    """Indices of the rays from ``apex`` inside the cone of ``obj``'s bounding sphere (None: all).

    One matrix-vector product per object, so the exact intersection only runs on the few rays
    that can hit: objects cover a small part of the image.
    """
    if not hasattr(obj, "bounding_sphere"):
        return None
    center, radius = obj.bounding_sphere()
    axis = center - apex
    distance = float(np.linalg.norm(axis))
    if distance <= radius * 1.001:
        return None
    cos_half_angle = math.sqrt(1.0 - (radius / distance) ** 2) - 1e-9
    return np.flatnonzero(unit_dirs @ (axis / distance) >= cos_half_angle)


def _nearest_hit(surfaces: Sequence[object], origin: np.ndarray, dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Ray parameter of the nearest hit over all surfaces and which surface it was (-1: none)."""
    best = np.full(len(dirs), np.inf)
    index = np.full(len(dirs), -1)
    unit_dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    for k, surface in enumerate(surfaces):
        rows = _rays_towards(surface, origin[0], unit_dirs)
        subset = slice(None) if rows is None else rows
        t = surface.intersect(origin, dirs[subset])
        closer = t < best[subset]
        targets = np.flatnonzero(closer) if rows is None else rows[closer]
        best[targets], index[targets] = t[closer], k
    return best, index


def _shade_surfaces(
    surfaces: Sequence[object], index: np.ndarray, points: np.ndarray, dirs: np.ndarray, pixel_footprint: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-facing normals, albedo and |cos(incidence)| of every hit pixel.

    ``pixel_footprint`` is a pixel's width in metres at the hit distance, facing the camera.
    """
    normals, albedo, cosine = np.zeros_like(points), np.zeros_like(points), np.zeros(len(points))
    unit_dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    for k, surface in enumerate(surfaces):
        rows = np.flatnonzero(index == k)
        if rows.size == 0:
            continue
        n, uv = surface.surface(points[rows])
        facing = np.einsum("ij,ij->i", n, unit_dirs[rows])
        normals[rows] = np.where(facing[:, None] > 0, -n, n)
        cosine[rows] = np.abs(facing)
        # A pixel's footprint grows with distance and stretches on oblique surfaces (sqrt: a
        # compromise between the stretched and the unstretched direction).
        footprint = pixel_footprint[rows] / np.sqrt(np.maximum(cosine[rows], 0.05))
        albedo[rows] = texture_albedo(surface.material, uv, footprint)
    return normals, albedo, cosine


def _occluded(objects: Sequence[SceneObject], points: np.ndarray, normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    """True where an object lies between the point and the light (the room is convex: it never does)."""
    origins = points + _SHADOW_OFFSET * normals
    dirs = light - origins
    from_light = -dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    blocked = np.zeros(len(points), dtype=bool)
    for obj in objects:
        rows = _rays_towards(obj, light, from_light)
        rows = np.arange(len(points)) if rows is None else rows
        blocked[rows[obj.intersect(origins[rows], dirs[rows]) < 1.0]] = True
    return blocked


def _irradiance(scene: Scene, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Ambient plus Lambertian direct light with distance falloff and cast shadows, (N, 3)."""
    light = scene.light
    to_light = np.asarray(light.position) - points
    distance = np.linalg.norm(to_light, axis=1)
    lambert = np.maximum(np.einsum("ij,ij->i", normals, to_light) / np.maximum(distance, 1e-9), 0.0)
    direct = lambert / (1.0 + (distance / light.falloff) ** 2)
    if light.shadows and scene.objects:
        lit = np.flatnonzero(direct > 0)
        direct[lit[_occluded(scene.objects, points[lit], normals[lit], np.asarray(light.position))]] = 0.0
    level = light.ambient + direct
    return level[:, None] * np.asarray(light.color)


#: Gamma 1/2.2 on 16-bit linear levels, in 8-bit units (a table look-up beats a power per pixel).
_GAMMA_LUT = (np.linspace(0.0, 1.0, 65536) ** (1.0 / 2.2) * 255.0).astype(np.float32)


def _expose(radiance: np.ndarray, scene: Scene, height: int, width: int) -> np.ndarray:
    """Auto-exposure, sRGB-like gamma and sensor noise -> uint8 HxWx3."""
    luma = radiance @ np.array([0.2126, 0.7152, 0.0722])
    white = max(float(np.percentile(luma, 97)), 1e-6)
    levels = np.clip(radiance * (scene.exposure / white * 65535.0), 0.0, 65535.0).astype(np.int32)
    image = _GAMMA_LUT[levels]
    if scene.noise > 0:
        noise = np.random.default_rng(scene.noise_seed).normal(0.0, 255.0 * scene.noise, image.shape)
        image += noise.astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8).reshape(height, width, 3)


def render_scene(
    scene: Union[Scene, SeedLike], height: int, width: int, min_depth: float = 0.1, max_depth: float = 10.0
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``scene`` (or a random scene from a seed / Generator) at ``height`` x ``width``.

    Returns ``(rgb uint8 HxWx3, depth float32 HxW metres, mask bool HxW)``. Depth is camera-frame
    z; pixels that see nothing, lie outside ``[min_depth, max_depth]`` or meet their surface at a
    grazing angle are invalid: depth 0 and mask False.
    """
    if not isinstance(scene, Scene):
        scene = sample_scene(scene)
    surfaces = room_planes(scene.room) + list(scene.objects)
    origin, dirs = camera_rays(scene.camera, height, width)
    t, index = _nearest_hit(surfaces, origin, dirs)
    hit = np.isfinite(t)
    points = origin + np.where(hit, t, 0.0)[:, None] * dirs
    fx, fy, _, _ = scene.camera.scaled_intrinsics(height, width)
    pixel_footprint = np.where(hit, t, 0.0) * np.linalg.norm(dirs, axis=1) / math.sqrt(fx * fy)
    normals, albedo, cosine = _shade_surfaces(surfaces, index, points, dirs, pixel_footprint)
    radiance = albedo * _irradiance(scene, points, normals) * hit[:, None]
    valid = hit & (t >= min_depth) & (t <= max_depth) & (cosine >= GRAZING_COS)
    depth = np.where(valid, t, 0.0).astype(np.float32).reshape(height, width)
    return _expose(radiance, scene, height, width), depth, valid.reshape(height, width)


# ----------------------------------------------------------------------------------------------
# Random scenes
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CameraRig:
    """Where the synthetic camera sits: height above the floor (m) and pitch (degrees, positive
    looks up), each drawn uniformly from its ``(low, high)`` range (equal ends = fixed).

    The defaults span a hand-held camera or a robot mast held roughly level (NYU-like). A robot
    whose camera is bolted on renders training data that matches its mount, e.g.
    ``CameraRig(height=(1.25, 1.35), pitch_deg=(-9, -3))``: the floor's depth at each image row
    is then nearly fixed, which is the metric cue such a robot has and a network learns fast.
    """

    height: Tuple[float, float] = (1.1, 1.5)
    pitch_deg: Tuple[float, float] = (-14.0, 3.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "height", _range_pair(self.height, "camera_height", 0.2, 2.3, "m"))
        object.__setattr__(self, "pitch_deg", _range_pair(self.pitch_deg, "camera_pitch_deg", -60.0, 60.0, "deg"))

    def key(self) -> str:
        """The rig's part of a cache file name."""
        return f"cam{self.height[0]:g}-{self.height[1]:g}m{self.pitch_deg[0]:g}_{self.pitch_deg[1]:g}deg"


def _range_pair(values: Sequence[float], name: str, lowest: float, highest: float, unit: str) -> Tuple[float, float]:
    """``values`` as a checked ``(low, high)`` inside ``[lowest, highest]``; DataError otherwise."""
    pair = tuple(float(v) for v in values)
    if len(pair) != 2 or not lowest <= pair[0] <= pair[1] <= highest:
        raise DataError(
            f"data.synthetic.{name}={list(values)} is invalid: expected [low, high] with "
            f"{lowest:g} <= low <= high <= {highest:g} {unit} (equal values fix it)"
        )
    return pair  # type: ignore[return-value]


#: Per surface role: texture kinds to draw from and the log-uniform range of pattern periods (m).
_SURFACE_STYLES: Dict[str, Tuple[Tuple[str, ...], Tuple[float, float]]] = {
    "floor": (("wood", "wood", "tiles", "checker", "noise", "marble", "plain"), (0.15, 0.7)),
    "wall": (("plain", "plain", "stripes", "noise", "bricks", "tiles", "checker", "marble"), (0.08, 0.6)),
    "ceiling": (("plain", "plain", "noise", "tiles"), (0.3, 0.8)),
    "object": (TEXTURE_KINDS, (0.04, 0.35)),
}


def _vec(values: Sequence[float]) -> Vec3:
    """Three plain floats (scene descriptions hold no numpy scalars)."""
    return (float(values[0]), float(values[1]), float(values[2]))


def _random_color(rng: np.random.Generator, hue: Tuple[float, float] = (0.0, 1.0),
                  saturation: Tuple[float, float] = (0.0, 0.9), value: Tuple[float, float] = (0.2, 0.95)) -> Vec3:
    return _vec(colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*saturation), rng.uniform(*value)))


def _second_color(rng: np.random.Generator, color: Vec3) -> Vec3:
    """Most patterns pair a colour with a darker or lighter shade of itself, some with another colour."""
    if rng.random() < 0.35:
        return _random_color(rng)
    factor = rng.uniform(0.3, 0.7) if rng.random() < 0.75 else rng.uniform(1.3, 1.8)
    return _vec(np.minimum(np.asarray(color) * factor, 1.0))


def _first_color(rng: np.random.Generator, role: str, kind: str) -> Vec3:
    if kind == "wood":
        return _random_color(rng, hue=(0.04, 0.11), saturation=(0.35, 0.75), value=(0.25, 0.8))
    if role in ("wall", "ceiling"):
        return _random_color(rng, saturation=(0.0, 0.35), value=(0.45, 0.95))
    return _random_color(rng)


def sample_material(rng: np.random.Generator, role: str) -> Material:
    """A random texture for a ``floor``, ``wall``, ``ceiling`` or ``object`` surface."""
    kinds, (low, high) = _SURFACE_STYLES[role]
    kind = str(rng.choice(kinds))
    color_a = _first_color(rng, role, kind)
    scale = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if kind == "wood":
        scale *= 0.3  # ring spacing: 5-20 cm, visible at the low resolutions training uses
    # Room surfaces keep their patterns aligned with the room, as floors and walls are built.
    angle = float(rng.choice([0.0, math.pi / 2])) if role != "object" else float(rng.uniform(0, math.pi))
    return Material(kind, color_a, _second_color(rng, color_a), scale, angle,
                    grain=float(rng.uniform(0.05, 0.3)), seed=int(rng.integers(2**31)))


def sample_room(rng: np.random.Generator) -> Room:
    """A room 3-8 m wide and long, 2.6-3.2 m high; walls share one material 60% of the time.

    Ceiling and camera heights vary only as much as they do in real homes and offices: these
    are the cues that tie the picture to metres, as they do for NYU's hand-held Kinect.
    """
    size = _vec(rng.uniform([3.0, 2.6, 3.0], [8.0, 3.2, 8.0]))
    floor, ceiling = sample_material(rng, "floor"), sample_material(rng, "ceiling")
    shared = sample_material(rng, "wall")
    if rng.random() < 0.6:
        return Room(size, floor, ceiling, (shared, shared, shared, shared))
    others = [sample_material(rng, "wall") for _ in range(3)]
    return Room(size, floor, ceiling, (shared, others[0], others[1], others[2]))


def sample_camera(rng: np.random.Generator, room_size: Vec3, rig: Optional[CameraRig] = None) -> Camera:
    """A camera at the rig's height and pitch (defaults: 1.1-1.5 m, -14..+3 deg), somewhere in the
    room, looking towards its middle."""
    rig = rig or CameraRig()
    width, height, length = room_size
    position = (float(rng.uniform(0.4, width - 0.4)), float(rng.uniform(*rig.height)),
                float(rng.uniform(0.4, length - 0.4)))
    target = (rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * length)
    yaw = math.atan2(target[0] - position[0], target[1] - position[2]) + rng.normal(0.0, 0.35)
    pitch = math.radians(rng.uniform(*rig.pitch_deg))
    return Camera(position, yaw=float(yaw), pitch=float(pitch), roll=float(rng.normal(0.0, 0.03)))


def sample_light(rng: np.random.Generator, room_size: Vec3) -> Light:
    """A slightly tinted point light under the ceiling."""
    width, height, length = room_size
    position = _vec((rng.uniform(0.2, 0.8) * width, height - rng.uniform(0.15, 0.6), rng.uniform(0.2, 0.8) * length))
    tint = _vec(colorsys.hsv_to_rgb(rng.uniform(0.05, 0.6), rng.uniform(0.0, 0.15), 1.0))
    return Light(position, tint, falloff=float(rng.uniform(1.5, 4.0)), ambient=float(rng.uniform(0.06, 0.3)))


def _floor_position(rng: np.random.Generator, room_size: Vec3, camera: Camera) -> Tuple[float, float]:
    """(x, z) of an object: 65% of them 1.5-6 m in front of the camera, the rest anywhere.

    From 1.5 m on, a camera at table height or above sees where an object in front of it meets
    the floor, the cue that gives the object's distance; nearer, the contact is below the frame.
    """
    width, _, length = room_size
    if rng.random() < 0.65:
        angle, distance = camera.yaw + rng.uniform(-0.5, 0.5), rng.uniform(1.5, 6.0)
        x = camera.position[0] + distance * math.sin(angle)
        z = camera.position[2] + distance * math.cos(angle)
        return float(np.clip(x, 0.2, width - 0.2)), float(np.clip(z, 0.2, length - 0.2))
    return float(rng.uniform(0.2, width - 0.2)), float(rng.uniform(0.2, length - 0.2))


def _random_box(rng: np.random.Generator, room_size: Vec3, camera: Camera, floating: bool) -> Box:
    height = room_size[1]
    half = _vec((rng.uniform(0.08, 0.5), rng.uniform(0.08, min(0.6, height / 2 - 0.2)), rng.uniform(0.08, 0.5)))
    x, z = _floor_position(rng, room_size, camera)
    if floating:
        center, orientation = _vec((x, rng.uniform(0.8, height - 0.8), z)), _vec(rng.uniform(-math.pi, math.pi, 3))
    else:  # resting on the floor, turned about the vertical
        center, orientation = (x, half[1], z), (float(rng.uniform(0, 2 * math.pi)), 0.0, 0.0)
    return Box(center, half, orientation, sample_material(rng, "object"))


def _random_sphere(rng: np.random.Generator, room_size: Vec3, camera: Camera, floating: bool) -> Sphere:
    radius = float(rng.uniform(0.08, 0.45))
    x, z = _floor_position(rng, room_size, camera)
    y = float(rng.uniform(radius + 0.3, room_size[1] - radius - 0.6)) if floating else radius
    return Sphere((x, y, z), radius, sample_material(rng, "object"))


def _random_cylinder(rng: np.random.Generator, room_size: Vec3, camera: Camera, floating: bool) -> Cylinder:
    height = room_size[1]
    radius, half_height = float(rng.uniform(0.06, 0.35)), float(rng.uniform(0.08, min(0.8, height / 2 - 0.2)))
    (x, z), yaw = _floor_position(rng, room_size, camera), float(rng.uniform(0, 2 * math.pi))
    if floating:
        center, orientation = _vec((x, rng.uniform(0.8, height - 0.8), z)), _vec(rng.uniform(-math.pi, math.pi, 3))
    elif rng.random() < 0.3:  # lying on its side
        center, orientation = (x, radius, z), (yaw, math.pi / 2, 0.0)
    else:
        center, orientation = (x, half_height, z), (yaw, 0.0, 0.0)
    return Cylinder(center, radius, half_height, orientation, sample_material(rng, "object"))


def _furniture(rng: np.random.Generator, room_size: Vec3) -> Box:
    """A cabinet-like box standing against a random wall."""
    width, _, length = room_size
    along, depth, high = rng.uniform(0.3, 1.1), rng.uniform(0.18, 0.35), rng.uniform(0.25, 1.0)
    wall = int(rng.integers(4))
    if wall < 2:
        along = min(along, length / 2 - 0.05)
        center = (depth if wall == 0 else width - depth, high, rng.uniform(along, length - along))
        half = (depth, high, along)
    else:
        along = min(along, width / 2 - 0.05)
        center = (rng.uniform(along, width - along), high, depth if wall == 2 else length - depth)
        half = (along, high, depth)
    return Box(_vec(center), _vec(half), (0.0, 0.0, 0.0), sample_material(rng, "object"))


def sample_objects(rng: np.random.Generator, room_size: Vec3, camera: Camera, light: Vec3) -> List[SceneObject]:
    """0-2 pieces of furniture against walls and 3-10 boxes, spheres and cylinders (5% floating,
    most of them in front of the camera).

    Objects that would come within 0.35 m of the camera or 0.15 m of the light are dropped, so
    nothing is nearer than the minimum depth and the light is never enclosed.
    """
    candidates: List[SceneObject] = [_furniture(rng, room_size) for _ in range(int(rng.integers(0, 3)))]
    makers = (_random_box, _random_sphere, _random_cylinder)
    for _ in range(int(rng.integers(3, 11))):
        maker = makers[int(rng.choice(3, p=[0.45, 0.25, 0.3]))]
        candidates.append(maker(rng, room_size, camera, bool(rng.random() < 0.05)))
    return [obj for obj in candidates if obj.distance_to(camera.position) > 0.35 and obj.distance_to(light) > 0.15]


def sample_scene(seed: SeedLike, rig: Optional[CameraRig] = None) -> Scene:
    """A random furnished room, camera (placed as ``rig`` says) and light drawn from ``seed`` (an
    int or a Generator)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    room = sample_room(rng)
    camera = sample_camera(rng, room.size, rig)
    light = sample_light(rng, room.size)
    objects = sample_objects(rng, room.size, camera, light.position)
    return Scene(camera, room, light, tuple(objects), exposure=float(rng.uniform(0.55, 0.95)),
                 noise=float(rng.uniform(0.004, 0.015)), noise_seed=int(rng.integers(2**31)))


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``split``: splits draw from disjoint seed streams."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_STREAMS[split], index]))


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------


def record_dtype(height: int, width: int) -> np.dtype:
    """One cached sample; the mask is not stored: it is ``depth > 0`` (invalid depth is 0)."""
    return np.dtype([("rgb", np.uint8, (height, width, 3)), ("depth", np.float32, (height, width))])


#: (seed, split, index, height, width, min_depth, max_depth, rig)
RenderJob = Tuple[int, str, int, int, int, float, float, CameraRig]


def _render_job(job: RenderJob) -> Tuple[np.ndarray, np.ndarray]:
    seed, split, index, height, width, min_depth, max_depth, rig = job
    scene = sample_scene(scene_rng(seed, split, index), rig)
    rgb, depth, _ = render_scene(scene, height, width, min_depth, max_depth)
    return rgb, depth


def _check_arguments(split: str, height: int, width: int, num_samples: int, seed: int,
                     min_depth: float, max_depth: float) -> None:
    if split not in SPLIT_STREAMS:
        raise DataError(f"synthetic split {split!r} is unknown: use one of {', '.join(SPLIT_STREAMS)}")
    if height < 1 or width < 1 or num_samples < 1:
        raise DataError(f"synthetic dataset of {num_samples} samples of {height}x{width}: all three must be >= 1")
    if seed < 0:
        raise DataError(f"synthetic seed {seed} is negative: use a seed >= 0")
    if not 0 < min_depth < max_depth:
        raise DataError(f"synthetic depth range [{min_depth}, {max_depth}]: expected 0 < min_depth < max_depth")


class SyntheticScenes(Dataset):
    """``num_samples`` procedural rooms of ``height`` x ``width`` for ``split`` (train, val, test).

    ``__getitem__`` returns ``{"rgb": uint8 HxWx3 RGB, "depth": float32 HxW metres, "mask": bool
    HxW, "name": str}``. Samples are rendered once at construction (``workers`` processes for
    large splits) and, with ``cache_dir``, stored there and memory-mapped on later runs.
    """

    def __init__(self, split: str, height: int, width: int, num_samples: int, seed: int = 0,
                 cache_dir: Optional[str] = None, min_depth: float = 0.1, max_depth: float = 10.0,
                 workers: int = 2, rig: Optional[CameraRig] = None) -> None:
        _check_arguments(split, height, width, num_samples, seed, min_depth, max_depth)
        self.rig = rig or CameraRig()
        self.split, self.height, self.width = split, int(height), int(width)
        self.num_samples, self.seed, self.workers = int(num_samples), int(seed), int(workers)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.cache_path: Optional[Path] = None if cache_dir is None else Path(cache_dir) / self.cache_name()
        self._records: Optional[np.ndarray] = None
        self._records = self._load_or_render()

    @classmethod
    def from_config(cls, data_cfg, split: str) -> "SyntheticScenes":
        """Build from a ``DataConfig``: size, depth range and ``data.synthetic`` (counts, seed,
        cache, camera rig).

        ``train`` gets ``num_train`` samples; ``val`` and ``test`` get ``num_val`` each.
        """
        synthetic = data_cfg.synthetic
        count = synthetic.num_train if split == "train" else synthetic.num_val
        rig = CameraRig(tuple(synthetic.camera_height), tuple(synthetic.camera_pitch_deg))
        return cls(split, data_cfg.height, data_cfg.width, count, seed=synthetic.seed,
                   cache_dir=synthetic.cache_dir or None, min_depth=data_cfg.min_depth, max_depth=data_cfg.max_depth,
                   rig=rig)

    def cache_name(self) -> str:
        """File name of this split's cache: every setting that changes the pixels is in it."""
        return (f"synthetic-v{GENERATOR_VERSION}-{self.split}-{self.height}x{self.width}-n{self.num_samples}"
                f"-seed{self.seed}-depth{self.min_depth:g}-{self.max_depth:g}-{self.rig.key()}.npy")

    def scene(self, index: int) -> Scene:
        """The scene description of sample ``index``."""
        return sample_scene(scene_rng(self.seed, self.split, index), self.rig)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Dict[str, object]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} is out of range for {self.num_samples} synthetic samples")
        index %= self.num_samples
        record = self._array()[index]
        depth = np.array(record["depth"], dtype=np.float32)  # a private copy, off the memory map
        return {"rgb": np.array(record["rgb"]), "depth": depth, "mask": depth > 0,
                "name": f"synthetic/{self.split}/{index:06d}"}

    def __getstate__(self) -> Dict[str, object]:
        # DataLoader workers reopen the memory map instead of receiving a pickled copy of it.
        state = dict(self.__dict__)
        if self.cache_path is not None:
            state["_records"] = None
        return state

    def _array(self) -> np.ndarray:
        if self._records is None:
            self._records = np.load(self.cache_path, mmap_mode="r")
        return self._records

    def _load_or_render(self) -> np.ndarray:
        if self.cache_path is None:
            return self._render_into(np.empty(self.num_samples, dtype=record_dtype(self.height, self.width)))
        cached = self._open_cache()
        if cached is not None:
            LOGGER.info("synthetic %s: %d samples loaded from cache %s", self.split, self.num_samples,
                        self.cache_path.resolve())
            return cached
        LOGGER.info("synthetic %s: rendering %d samples of %dx%d into cache %s", self.split, self.num_samples,
                    self.height, self.width, self.cache_path.resolve())
        with atomic_path(self.cache_path) as tmp:
            records = np.lib.format.open_memmap(tmp, mode="w+", dtype=record_dtype(self.height, self.width),
                                                shape=(self.num_samples,))
            self._render_into(records)
            records.flush()
            del records
        return np.load(self.cache_path, mmap_mode="r")

    def _open_cache(self) -> Optional[np.ndarray]:
        assert self.cache_path is not None
        if not self.cache_path.is_file():
            return None
        try:
            records = np.load(self.cache_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            LOGGER.warning("synthetic cache %s is unreadable (%s): rendering it again", self.cache_path, exc)
            return None
        if records.dtype != record_dtype(self.height, self.width) or records.shape != (self.num_samples,):
            LOGGER.warning("synthetic cache %s holds %s %s, not %d samples of %dx%d: rendering it again",
                           self.cache_path, records.shape, records.dtype, self.num_samples, self.height, self.width)
            return None
        return records

    def _render_into(self, records: np.ndarray) -> np.ndarray:
        jobs = [(self.seed, self.split, i, self.height, self.width, self.min_depth, self.max_depth, self.rig)
                for i in range(self.num_samples)]
        with tqdm(total=len(jobs), disable=len(jobs) <= PROGRESS_THRESHOLD, unit="sample",
                  desc=f"rendering synthetic {self.split}") as progress:
            done = 0
            try:
                for rgb, depth in self._render_jobs(jobs):
                    records["rgb"][done], records["depth"][done] = rgb, depth
                    done += 1
                    progress.update()
            except concurrent.futures.process.BrokenProcessPool as exc:
                # Worker start-up fails where __main__ cannot be re-imported (``python -``, some
                # notebooks); rendering is deterministic per index, so finish in this process.
                LOGGER.warning("synthetic render workers failed (%s): rendering in this process", exc)
                for rgb, depth in map(_render_job, jobs[done:]):
                    records["rgb"][done], records["depth"][done] = rgb, depth
                    done += 1
                    progress.update()
        return records

    def _render_jobs(self, jobs: List[RenderJob]):
        if self.workers <= 1 or len(jobs) < MIN_SAMPLES_FOR_POOL:
            yield from map(_render_job, jobs)
            return
        # forkserver: forking a parent that holds torch's thread pools can deadlock the children,
        # and the server imports this module (and torch) once instead of once per worker.
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
        else:
            context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context) as pool:
            yield from pool.map(_render_job, jobs, chunksize=8)


# ----------------------------------------------------------------------------------------------
# Clips: a short camera pan through one room, for demos and runtime tests
# ----------------------------------------------------------------------------------------------


def render_clip(seed: int, frames: int, height: int, width: int):
    """Yield ``frames`` (rgb, depth, mask) of one room while the camera pans and drifts sideways."""
    scene = sample_scene(np.random.default_rng(np.random.SeedSequence([seed, 7919])))
    camera = scene.camera
    for index in range(frames):
        phase = 2.0 * math.pi * index / max(frames, 1)
        moved = dataclasses.replace(
            camera,
            yaw=camera.yaw + 0.35 * math.sin(phase),
            position=(camera.position[0] + 0.25 * math.sin(phase), camera.position[1], camera.position[2]),
        )
        yield render_scene(dataclasses.replace(scene, camera=moved), height, width)


def write_clip(path: Union[str, Path], frames: int = 48, height: int = 240, width: int = 320, seed: int = 0,
               fps: float = 15.0) -> Path:
    """Write a synthetic pan as a video file (mp4v), atomically; returns the path."""
    from edgedepth.preprocess import import_cv2

    cv2 = import_cv2()
    path = Path(path)
    with atomic_path(path) as tmp:
        staged = tmp.with_suffix(path.suffix)  # OpenCV picks the container from the extension
        writer = cv2.VideoWriter(str(staged), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise DataError(f"OpenCV cannot write {path}: use an .mp4 or .avi path")
        for rgb, _, _ in render_clip(seed, frames, height, width):
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        writer.release()
        staged.replace(tmp)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m edgedepth.training.data.synthetic --clip demo.mp4``: write a synthetic clip."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--clip", required=True, help="output video path (.mp4 or .avi)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="240x320", help="HEIGHTxWIDTH")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    print(write_clip(args.clip, args.frames, height, width, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
