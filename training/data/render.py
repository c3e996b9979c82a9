"""Renders procedural RGB-D rooms with exact metric depth, in numpy alone (no torch).

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

The scene description is in :mod:`~edgedepth.training.data.scene`, the textures in
:mod:`~edgedepth.training.data.textures`, random scenes in
:mod:`~edgedepth.training.data.random_scenes`; the torch dataset that caches rendered splits is
:mod:`~edgedepth.training.data.synthetic`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from edgedepth.training.data.random_scenes import SeedLike, sample_scene
from edgedepth.training.data.scene import Camera, Plane, Scene, SceneObject, room_planes
from edgedepth.training.data.textures import texture_albedo

#: Bump whenever a change alters rendered pixels (here, in scene.py, textures.py or
#: random_scenes.py): it is part of every cache key.
GENERATOR_VERSION = 4
#: Rays meeting a surface more obliquely than this (|cos| below it) get no depth, like a sensor.
GRAZING_COS = 0.035

_SHADOW_OFFSET = 1e-4

#: What a camera ray can hit: the room's planes and its objects.
Surface = Union[Plane, SceneObject]


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


def _nearest_hit(surfaces: Sequence[Surface], origin: np.ndarray, dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
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
    surfaces: Sequence[Surface], index: np.ndarray, points: np.ndarray, dirs: np.ndarray, pixel_footprint: np.ndarray
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
