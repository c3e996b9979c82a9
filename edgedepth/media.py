"""Image files and video frames read at chosen positions: the readers calibration and parity share.

A source is sized and read at indices in increasing order, so a caller picks its images with
:func:`evenly_spaced` and a 20 000-frame recording is covered from start to end, not its first
seconds. Images come as uint8 HxWx3 in the channel order ``input_order`` says (BGR from OpenCV).
The live capture sources of ``depth-run`` (cameras, streams) are another thing:
:mod:`edgedepth.runtime.sources`. OpenCV is imported inside the functions that read.
"""
from __future__ import annotations

import abc
import glob
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgedepth.errors import SourceError
from edgedepth.preprocess import import_cv2

if TYPE_CHECKING:  # OpenCV is imported lazily (import_cv2); its type only annotates
    import cv2

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ts")
PathLike = Union[str, Path]


def evenly_spaced(total: int, count: int) -> List[int]:
    """``count`` distinct indices spread over ``range(total)`` (all of them when count >= total).

    Centred strides: index i is ``floor((i + 0.5) * total / count)``, so neither end is favoured.
    """
    if count <= 0 or total <= 0:
        return []
    if count >= total:
        return list(range(total))
    return [int((i + 0.5) * total / count) for i in range(count)]


class ImageSource(abc.ABC):
    """A sized collection of images that can be read at chosen indices (in increasing order)."""

    description: str = ""
    #: Channel order the images come in ("BGR" from OpenCV, "RGB" from datasets).
    input_order: str = "BGR"

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    @abc.abstractmethod
    def read(self, indices: Sequence[int]) -> Iterator[Tuple[str, np.ndarray]]:
        """Yield ``(name, uint8 HxWx3 image)`` for ``indices`` (sorted); unreadable items are skipped."""


class ImageFiles(ImageSource):
    """A list of image files read by OpenCV; the paths of unreadable ones collect in ``skipped``."""

    def __init__(self, files: Sequence[Path], description: str) -> None:
        self.files = list(files)
        self.description = description
        self.skipped: List[str] = []

    def __len__(self) -> int:
        return len(self.files)

    def read(self, indices: Sequence[int]) -> Iterator[Tuple[str, np.ndarray]]:
        cv2 = import_cv2()
        for index in sorted(indices):
            path = self.files[index]
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grey/alpha/16-bit -> 8-bit BGR
            if image is None:
                self.skipped.append(str(path))
                continue
            yield str(path), image


class FolderSource(ImageFiles):
    """Image files in a folder and its subfolders (sorted by relative path), or one image file."""

    def __init__(self, path: PathLike) -> None:
        root = Path(path)
        if root.is_file():
            files = [root]
        else:
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        super().__init__(files, f"folder {root} ({len(files)} images)" if root.is_dir() else f"image {root}")


class GlobSource(ImageFiles):
    """The image files a glob pattern matches (sorted), read like a folder's."""

    def __init__(self, pattern: str) -> None:
        files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_EXTENSIONS)
        super().__init__(files, f"glob {pattern} ({len(files)} images)")


class VideoSource(ImageSource):
    """Frames of a video file, read sequentially (seeking is unreliable in many codecs)."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.frame_count = self._count_frames()
        self.description = f"video {self.path} ({self.frame_count} frames)"

    def _open(self) -> cv2.VideoCapture:
        cv2 = import_cv2()
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise SourceError(
                f"video {self.path} cannot be opened by OpenCV: convert it to H.264 MP4 (ffmpeg -i in -c:v libx264 "
                "out.mp4) or extract frames into a folder"
            )
        return capture

    def _count_frames(self) -> int:
        cv2 = import_cv2()
        capture = self._open()
        try:
            reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if reported > 0:
                return reported
            count = 0  # some containers do not report a count: count by decoding headers
            while capture.grab():
                count += 1
            return count
        finally:
            capture.release()

    def __len__(self) -> int:
        return self.frame_count

    def read(self, indices: Sequence[int]) -> Iterator[Tuple[str, np.ndarray]]:
        wanted = sorted(set(indices))
        capture = self._open()
        try:
            position = 0
            for index in wanted:
                while position < index and capture.grab():
                    position += 1
                ok, frame = capture.read()
                if not ok:
                    return  # the container over-reported its frame count
                position += 1
                yield f"{self.path.name}#frame{index}", frame
        finally:
            capture.release()


def open_media(source: PathLike) -> Optional[ImageSource]:
    """A folder or image file as a :class:`FolderSource`, a video file as a :class:`VideoSource`;
    None when ``source`` is neither (the caller says what else it accepts)."""
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_dir() or (path.is_file() and suffix in IMAGE_EXTENSIONS):
        return FolderSource(path)
    if path.is_file() and suffix in VIDEO_EXTENSIONS:
        return VideoSource(path)
    return None
