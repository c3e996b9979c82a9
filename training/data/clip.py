"""Clips: a short camera pan through one synthetic room, for demos and runtime tests (no torch).

    python -m edgedepth.training.data.clip --clip demo.mp4 --frames 48 --size 240x320
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from edgedepth.errors import DataError
from edgedepth.io import atomic_path
from edgedepth.training.data.random_scenes import sample_scene
from edgedepth.training.data.render import render_scene


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
    """``python -m edgedepth.training.data.clip --clip demo.mp4``: write a synthetic clip."""
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
