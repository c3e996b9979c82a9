"""File sources: a video file or a sequence of images, every frame delivered in order."""
from __future__ import annotations

import glob
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from edgedepth.errors import SourceError
from edgedepth.preprocess import import_cv2
from edgedepth.runtime.sources.base import Frame, Source, normalize_image

LOG = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class VideoFileSource(Source):
    """A video file decoded by OpenCV (FFmpeg); ``loop`` starts over at the end."""

    def __init__(self, path: str, loop: bool = False, opener: Optional[Callable[[str], Any]] = None) -> None:
        super().__init__(f"video file {path}")
        self.path = path
        self.loop = loop
        self._opener = opener or _open_video_file
        self._capture = self._opener(path)
        self._index = 0
        self._frames_this_pass = 0
        # The pipeline's reader thread reads while the main thread may close: one VideoCapture
        # must never be used by both at once, and a closed source must not reopen on --loop.
        self._lock = threading.Lock()
        self._closed = False
        value = float(self._capture.get(import_cv2().CAP_PROP_FPS) or 0.0)
        self._fps = value if 0 < value < 1000 else None

    @property
    def fps(self) -> Optional[float]:
        return self._fps

    def read(self) -> Optional[Frame]:
        with self._lock:
            return self._read_unlocked()

    def _read_unlocked(self) -> Optional[Frame]:
        while not self._closed:
            start = time.perf_counter()
            ok, image = self._capture.read()
            if not ok:
                if not self._rewind():
                    return None
                continue
            self.counters.read += 1
            image = normalize_image(image)
            if image is None:
                self.counters.corrupt += 1
                continue
            return self._deliver(image, start)
        return None

    def _deliver(self, image: np.ndarray, start: float) -> Frame:
        now = time.perf_counter()
        frame = Frame(index=self._index, image=image, captured_at=start, capture_s=now - start)
        self._index += 1
        self._frames_this_pass += 1
        self.counters.delivered += 1
        return frame

    def _rewind(self) -> bool:
        """Start the file over when looping (reopening is the seek every container supports)."""
        if not self.loop or self._frames_this_pass == 0:
            return False
        self._capture.release()
        self._capture = self._opener(self.path)
        self._frames_this_pass = 0
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._capture.release()


def _open_video_file(path: str) -> Any:
    cv2 = import_cv2()
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise SourceError(
            f"cannot open video file {path}: OpenCV's FFmpeg cannot decode it; check the file plays "
            "(`ffprobe FILE`) or convert it to H.264/MP4"
        )
    return capture


class ImageSequenceSource(Source):
    """Images from a folder (sorted by name), a glob, or one file; unreadable files are skipped."""

    def __init__(self, paths: Sequence[str], description: str, loop: bool = False) -> None:
        super().__init__(description)
        if not paths:
            raise SourceError(f"{description} holds no images; expected files ending in {', '.join(IMAGE_SUFFIXES)}")
        self.paths = list(paths)
        self.loop = loop
        self._position = 0
        self._index = 0
        self._good_this_pass = 0

    def read(self) -> Optional[Frame]:
        cv2 = import_cv2()
        while True:
            if self._position >= len(self.paths):
                if not (self.loop and self._good_this_pass):
                    return None
                self._position, self._good_this_pass = 0, 0
            path = self.paths[self._position]
            self._position += 1
            start = time.perf_counter()
            image = normalize_image(cv2.imread(path, cv2.IMREAD_COLOR))
            self.counters.read += 1
            if image is None:
                self.counters.corrupt += 1
                LOG.warning("skipping unreadable image %s", path)
                continue
            return self._deliver(image, start, Path(path).stem)

    def _deliver(self, image: np.ndarray, start: float, stem: str) -> Frame:
        name = stem if not self.loop else f"{self._index:06d}_{stem}"
        frame = Frame(self._index, image, start, time.perf_counter() - start, name)
        self._index += 1
        self._good_this_pass += 1
        self.counters.delivered += 1
        return frame


def image_paths(target: str) -> List[str]:
    """Image files of a folder (sorted) or matched by a glob (sorted), or the one file."""
    if os.path.isdir(target):
        candidates = [str(p) for p in Path(target).iterdir()]
    elif glob.has_magic(target):
        candidates = glob.glob(target)
    else:
        candidates = [target]
    return sorted(p for p in candidates if Path(p).suffix.lower() in IMAGE_SUFFIXES and os.path.isfile(p))
