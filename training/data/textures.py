"""Procedural textures: value noise, fractal noise and the surface patterns of the synthetic rooms.

Texture coordinates are in world metres, so patterns shrink with distance (a texture gradient, a
depth cue). Texture detail finer than a pixel's footprint fades to its mean, which keeps far and
grazing surfaces free of aliasing noise. numpy only.
"""
from __future__ import annotations

import math
from typing import Callable, Dict

import numpy as np

from edgedepth.errors import DataError
from edgedepth.training.data.scene import Material

TEXTURE_KINDS = ("plain", "checker", "stripes", "noise", "wood", "tiles", "bricks", "marble")


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
