"""File sources: a video file or a sequence of images, every frame delivered in order."""
from __future__ import annotations

import collections
import glob
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, Set

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
        self._end_checked = False
        value = float(self._capture.get(import_cv2().CAP_PROP_FPS) or 0.0)
        self._fps = value if 0 < value < 1000 else None
        count = int(self._capture.get(import_cv2().CAP_PROP_FRAME_COUNT) or 0)
        self.expected_frames = count if count > 0 else None

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
                self._check_complete()
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

    def _check_complete(self) -> None:
        """At the first end of the file: warn when it ended well before the frame count its header
        announces (a copy or recording cut short). Headers that estimate the count from the
        duration may be a frame or two off, hence the margin."""
        if self._end_checked or self.expected_frames is None:
            return
        self._end_checked = True
        expected, read = self.expected_frames, self.counters.read
        if expected - read > max(1, expected // 100):
            message = (f"{self.path} ended after {read} of the {expected} frames its header announces: the file "
                       "is probably truncated (an interrupted copy or recording); the frames present were processed")
            LOG.warning("%s", message)
            self.warnings.append(message)

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
        self.expected_frames = len(self.paths)
        self._names = frame_names(self.paths)
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
            path, name = self.paths[self._position], self._names[self._position]
            self._position += 1
            start = time.perf_counter()
            image = normalize_image(cv2.imread(path, cv2.IMREAD_COLOR))
            self.counters.read += 1
            if image is None:
                self.counters.corrupt += 1
                LOG.warning("skipping unreadable image %s", path)
                continue
            return self._deliver(image, start, name)

    def _deliver(self, image: np.ndarray, start: float, name: str) -> Frame:
        name = name if not self.loop else f"{self._index:06d}_{name}"
        frame = Frame(self._index, image, start, time.perf_counter() - start, name)
        self._index += 1
        self._good_this_pass += 1
        self.counters.delivered += 1
        return frame


def frame_names(paths: Sequence[str]) -> List[str]:
    """One name per image for its saved outputs, never two alike (so files out = frames in): the
    stem (``x``); the file name where two images share a stem (``x.png``, ``x.jpg``); that name
    behind the position where even those match (a glob over several folders: ``000003_x.png``)."""
    stems = [Path(path).stem for path in paths]
    shared = _repeated(stems)
    names = [Path(path).name if stem in shared else stem for path, stem in zip(paths, stems)]
    shared = _repeated(names)
    return [f"{index:06d}_{name}" if name in shared else name for index, name in enumerate(names)]


def _repeated(items: Iterable[str]) -> Set[str]:
    return {item for item, count in collections.Counter(items).items() if count > 1}


def image_paths(target: str) -> List[str]:
    """Image files of a folder (sorted) or matched by a glob (sorted), or the one file."""
    if os.path.isdir(target):
        candidates = [str(p) for p in Path(target).iterdir()]
    elif glob.has_magic(target):
        candidates = glob.glob(target)
    else:
        candidates = [target]
    return sorted(p for p in candidates if Path(p).suffix.lower() in IMAGE_SUFFIXES and os.path.isfile(p))
