"""Probe inputs: random, structured and extreme images, all preprocessed by the one preprocessing,
so the checks see what a camera would feed the network. Export's self-checks run on them, and
parity's built-in set draws its gradient, checkerboard, scene and salt-and-pepper images from here.

``random_normal`` exercises every weight; gradients, checkerboards and synthetic scenes look like
real frames (edges, smooth regions, textures); saturated white/black and high-contrast frames
drive activations to their extremes, where FP16 overflows first.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

import numpy as np

from edgedepth.preprocess import import_cv2, preprocess_batch
from edgedepth.spec import ModelSpec

#: Probe names in the order they are produced.
STRUCTURED_PROBES = ("gradient", "checkerboard", "scene")
EXTREME_PROBES = ("saturated_white", "saturated_black", "high_contrast")


def gradient_image(height: int, width: int) -> np.ndarray:
    """Horizontal ramp in one channel, vertical in another, their mix in the third (uint8 BGR)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    horizontal = xs / max(width - 1, 1)
    vertical = ys / max(height - 1, 1)
    image = np.stack([horizontal, vertical, (horizontal + vertical) / 2], axis=-1)
    return np.round(image * 255).astype(np.uint8)


def checkerboard_image(height: int, width: int, square: int = 8) -> np.ndarray:
    """Black/white checkerboard: the sharpest edges a camera can produce."""
    ys, xs = np.mgrid[0:height, 0:width]
    board = ((ys // square + xs // square) % 2).astype(np.uint8) * 255
    return np.repeat(board[:, :, None], 3, axis=2)


def scene_image(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic indoor-like frame: a lit floor/wall ramp, coloured boxes and discs, sensor noise."""
    cv2 = import_cv2()
    image = gradient_image(height, width) // 2 + 40
    for _ in range(6):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(4, max(5, width // 3))), y0 + int(rng.integers(4, max(5, height // 3)))
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, thickness=-1)
        radius = int(rng.integers(2, max(3, min(height, width) // 6)))
        cv2.circle(image, (int(rng.integers(0, width)), int(rng.integers(0, height))), radius, colour[::-1], -1)
    noise = rng.normal(0.0, 6.0, image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def high_contrast_image(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Every pixel pure black or pure white per channel: salt-and-pepper at full amplitude."""
    return (rng.integers(0, 2, (height, width, 3)) * 255).astype(np.uint8)


def _images(name: str, height: int, width: int, batch: int, rng: np.random.Generator) -> list:
    if name == "gradient":
        return [np.roll(gradient_image(height, width), 7 * i, axis=1) for i in range(batch)]
    if name == "checkerboard":
        return [checkerboard_image(height, width, square=8 * (i + 1)) for i in range(batch)]
    if name == "scene":
        return [scene_image(height, width, rng) for _ in range(batch)]
    if name == "saturated_white":
        return [np.full((height, width, 3), 255, np.uint8)] * batch
    if name == "saturated_black":
        return [np.zeros((height, width, 3), np.uint8)] * batch
    if name == "high_contrast":
        return [high_contrast_image(height, width, rng) for _ in range(batch)]
    raise ValueError(f"unknown probe {name!r}")


def probe_batch(
    name: str, spec: ModelSpec, batch: int = 1, height: int = 0, width: int = 0, seed: int = 0
) -> np.ndarray:
    """One named probe as network input ``batch x 3 x H x W`` float32 (H, W default to the spec's).

    ``random_normal`` is N(0, 1) noise straight in network space; every other probe is a uint8
    image put through :func:`edgedepth.preprocess.preprocess_batch`.
    """
    height, width = height or spec.height, width or spec.width
    rng = np.random.default_rng(seed)
    if name == "random_normal":
        return rng.standard_normal((batch, 3, height, width)).astype(np.float32)
    sized = spec.replace(height=height, width=width)
    return preprocess_batch(_images(name, height, width, batch, rng), sized, input_order="BGR")


def probe_batches(
    spec: ModelSpec,
    batch: int = 1,
    size: Tuple[int, int] = (0, 0),
    extremes: bool = True,
    seed: int = 0,
) -> Iterator[Tuple[str, np.ndarray]]:
    """``(name, input)`` for random, structured and (when ``extremes``) extreme probes."""
    names = ("random_normal",) + STRUCTURED_PROBES + (EXTREME_PROBES if extremes else ())
    for index, name in enumerate(names):
        yield name, probe_batch(name, spec, batch, size[0], size[1], seed=seed + index)


def probe_dict(spec: ModelSpec, **kwargs: Any) -> Dict[str, np.ndarray]:
    """:func:`probe_batches` as a dict."""
    return dict(probe_batches(spec, **kwargs))
