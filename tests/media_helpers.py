"""Test media shared by the calibration and runtime tests (tests/ is on sys.path via conftest)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import cv2
import numpy as np

#: FourCC per container: MJPG in AVI decodes on every OpenCV build; mp4v is OpenCV's own MPEG-4.
FOURCC_BY_SUFFIX = {".avi": "MJPG", ".mp4": "mp4v"}


def write_video(path: Path, frames: List[np.ndarray], fps: float = 15.0) -> Path:
    """Write BGR ``frames`` to ``path`` (.avi or .mp4) and return it."""
    height, width = frames[0].shape[:2]
    fourcc = FOURCC_BY_SUFFIX[Path(path).suffix.lower()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} into {Path(path).suffix} here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
