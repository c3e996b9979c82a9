"""Random scenes: furnished rooms, camera, light and objects drawn from a seed (numpy only).

Every sample is a pure function of ``(seed, split, index)``: splits draw from disjoint seed
streams (:func:`scene_rng`), so train, val and test never share a scene.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgedepth.errors import DataError
from edgedepth.training.data.scene import Box, Camera, Cylinder, Light, Material, Room, Scene, SceneObject, Sphere, Vec3
from edgedepth.training.data.textures import TEXTURE_KINDS

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}

SeedLike = Union[int, np.random.Generator]


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
    return pair


#: Per surface role: texture kinds to draw from and the log-uniform range of pattern periods (m).
_SURFACE_STYLES: Dict[str, Tuple[Tuple[str, ...], Tuple[float, float]]] = {
    "floor": (("wood", "wood", "tiles", "checker", "noise", "marble", "plain"), (0.15, 0.7)),
    "wall": (("plain", "plain", "stripes", "noise", "bricks", "tiles", "checker", "marble"), (0.08, 0.6)),
    "ceiling": (("plain", "plain", "noise", "tiles"), (0.3, 0.8)),
    "object": (TEXTURE_KINDS, (0.04, 0.35)),
}


def _vec(values: Union[Sequence[float], np.ndarray]) -> Vec3:
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
