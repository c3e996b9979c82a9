"""What every frame source shares: the Frame, its counters, the Source interface and the options."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np

from edgedepth.preprocess import import_cv2


@dataclass
class Frame:
    """One BGR image from a source, with when it was captured and what it is called."""

    index: int
    image: np.ndarray
    #: time.perf_counter() when the source obtained it (end-to-end latency starts here).
    captured_at: float
    #: Seconds the source spent reading/decoding it.
    capture_s: float
    #: Name for saved outputs: the zero-padded index, or for images the file stem, kept unique within
    #: the input (``x.png`` and ``x.jpg`` are named ``x.png`` and ``x.jpg``, not ``x`` twice).
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.index:06d}"


@dataclass
class SourceCounters:
    """What happened to frames at the source."""

    read: int = 0
    delivered: int = 0
    #: Live sources: frames replaced by a newer one before the pipeline took them.
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0


def normalize_image(image: Any) -> Optional[np.ndarray]:
    """HxWx3 uint8 BGR from what a capture returned (grey and BGRA converted); None when unusable."""
    if not isinstance(image, np.ndarray) or image.size == 0 or image.dtype != np.uint8:
        return None
    cv2 = import_cv2()
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:  # newer OpenCV hands BGRx appsink buffers through as 4 channels
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    return None


class Source(abc.ABC):
    """A stream of frames; ``read`` returns None at the end. Use as a context manager."""

    live: bool = False

    def __init__(self, description: str) -> None:
        self.description = description
        self.counters = SourceCounters()
        #: Frames per pass the input announces (a video header's count, the images found); None
        #: when unknown (live sources).
        self.expected_frames: Optional[int] = None
        #: What went wrong without stopping the run (a truncated file), for the stats.
        self.warnings: List[str] = []

    @abc.abstractmethod
    def read(self) -> Optional[Frame]:
        """The next frame, or None when the stream has ended (or the source was closed)."""

    @property
    def fps(self) -> Optional[float]:
        """Nominal frame rate when the source knows it."""
        return None

    def close(self) -> None:  # noqa: B027 - optional: a source that holds nothing has nothing to release
        """Release the device or file."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()



@dataclass
class ReconnectPolicy:
    """How a live source recovers from a dropped stream before giving up."""

    attempts: int = 5
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0
    #: Consecutive failed reads that count as a dropped stream.
    failures_before_reconnect: int = 2

    def delays(self) -> List[float]:
        """Back-off before each attempt: doubling from ``initial_delay_s``, capped at ``max_delay_s``."""
        return [min(self.initial_delay_s * 2**attempt, self.max_delay_s) for attempt in range(self.attempts)]



@dataclass
class SourceOptions:
    """Capture settings from the command line."""

    camera_size: Optional[Tuple[int, int]] = None  # (width, height)
    camera_fps: Optional[float] = None
    camera_fourcc: Optional[str] = None
    #: CSI capture size when --camera-size is not given (jetson-utils' default).
    csi_default_size: Tuple[int, int] = (1280, 720)
    flip: str = "none"
    loop: bool = False
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    frame_timeout_s: float = 10.0
    #: Network stream open/read timeout (OpenCV's default is 30 s).
    stream_timeout_s: float = 5.0
    dev_root: str = "/dev"
    sysfs_root: str = "/sys/class/video4linux"
