"""``--record FILE.mcap``: a ROS 2 recording (MCAP, profile ros2, ros2msg schemas, CDR messages)
of the depth, the colour frame, the CameraInfo and the point cloud of every frame.

Written like every output: into a temporary file beside the target; on close the MCAP is
finished, read back (its summary must count one message per topic per frame) and renamed into
place. A full disk, an error or a second stop signal removes it and leaves the target untouched.
``ros2 bag play FILE.mcap`` (rosbag2's mcap storage plug-in) and Foxglove read it.

Time stamps (every message of a frame has the same header stamp, and that is also the MCAP log
time): a live source's frames carry their capture time (the source's perf_counter reading moved to
the wall clock once, so stamps keep the capture spacing); a file's frames get a synthetic,
monotonic time: the wall time of the run's first frame plus ``n / fps`` for the n-th frame
recorded, fps being the video's rate (30 when unknown, e.g. an image folder).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import IO, Any, Dict, Optional

import numpy as np

from edgedepth.errors import EdgeDepthError
from edgedepth.io import atomic_path
from edgedepth.runtime.points import FrameClouds
from edgedepth.runtime.ros_messages import DEFINITIONS, Topics, frame_messages
from edgedepth.runtime.sources import Frame

#: The frame rate assumed for a file source that does not say (an image folder).
DEFAULT_FILE_FPS = 30.0
#: ROS 2 optical frame name used when --frame-id is not given (REP 103 optical frame suffix).
DEFAULT_FRAME_ID = "camera_optical_frame"


class FrameClock:
    """Nanoseconds since the epoch for each frame's header (module docstring)."""

    def __init__(self, live: bool, fps: Optional[float] = None) -> None:
        self.live = live
        self.period_ns = int(round(1e9 / (fps if fps and fps > 0 else DEFAULT_FILE_FPS)))
        # perf_counter -> wall clock, measured once so that stamps keep the capture spacing.
        self._offset_s = time.time() - time.perf_counter()
        self._start_ns: Optional[int] = None
        self._count = 0

    def stamp_ns(self, frame: Frame) -> int:
        if self.live:
            return int(round((frame.captured_at + self._offset_s) * 1e9))
        if self._start_ns is None:
            self._start_ns = int(round((frame.captured_at + self._offset_s) * 1e9))
        stamp = self._start_ns + self._count * self.period_ns
        self._count += 1
        return stamp


def mcap_message_counts(path: Path) -> Dict[str, int]:
    """Topic -> messages in the MCAP at ``path``, from its summary (EdgeDepthError when it has none:
    an unfinished file)."""
    from mcap.reader import make_reader

    with open(path, "rb") as stream:
        summary = make_reader(stream).get_summary()
    if summary is None or summary.statistics is None:
        raise EdgeDepthError(f"{path}: the MCAP has no summary: it was not finished")
    counts = summary.statistics.channel_message_counts
    return {channel.topic: counts.get(channel_id, 0) for channel_id, channel in summary.channels.items()}


class McapRecorder:
    """The ``--record`` sink; ``write(frame, depth)`` records one frame on every topic."""

    def __init__(self, path: str, clouds: FrameClouds, clock: FrameClock, topics: Optional[Topics] = None,
                 frame_id: str = DEFAULT_FRAME_ID) -> None:
        self.path = Path(path)
        self.clouds = clouds
        self.clock = clock
        self.topics = topics or Topics()
        self.frame_id = frame_id
        self.frames = 0
        self._atomic = contextlib.ExitStack()
        self._staging: Optional[Path] = None
        self._stream: Optional[IO[bytes]] = None
        self._writer: Any = None
        self._schemas: Dict[str, Any] = {}
        self._failed: Optional[BaseException] = None

    def _open(self) -> None:
        from mcap.writer import CompressionType
        from mcap_ros2.writer import Writer

        self._staging = self._atomic.enter_context(atomic_path(self.path))
        self._stream = open(self._staging, "wb")
        # LZ4 chunks: a 320x256 frame's four messages compress in 1.8 ms against zstd's 7.5 ms, for a
        # file 10% larger; the recorder runs on the render thread, so its time is the run's.
        self._writer = Writer(self._stream, compression=CompressionType.LZ4)
        self._writer.add_metadata("edgedepth", {"frame_id": self.frame_id, "depth": "32FC1 metres",
                                                "stamps": "live: capture time; files: first frame + n / fps"})
        self._schemas = {name: self._writer.register_msgdef(name, text) for name, text in DEFINITIONS.items()}

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            if self._writer is None:
                self._open()
            self._write(frame, depth)
        except BaseException as exc:
            self._failed = exc
            self._abort(exc)
            raise

    def _write(self, frame: Frame, depth: np.ndarray) -> None:
        cloud = self.clouds(frame, depth)
        stamp = self.clock.stamp_ns(frame)
        messages = frame_messages(self.topics, stamp, self.frame_id, depth, cloud.colour, cloud.camera, cloud.points)
        types = self.topics.types()
        for topic, message in messages.items():
            self._writer.write_message(topic, self._schemas[types[topic]], message, log_time=stamp,
                                       publish_time=stamp, sequence=self.frames)
        self.frames += 1

    def _abort(self, error: BaseException) -> None:
        """Leave nothing behind: the staged file is removed (atomic_path), the target untouched."""
        stream, self._stream, self._writer = self._stream, None, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
        self._atomic.__exit__(type(error), error, None)

    def close(self) -> None:
        """Finish the MCAP (summary and footer), check it holds every message, move it into place."""
        if self._writer is None or self._stream is None or self._staging is None:
            return
        try:
            self._writer.finish()
            self._stream.close()
            self._stream = None
            self._check(self._staging)
            self._atomic.close()
            self._writer = None
        except BaseException as exc:  # a full disk, a second Ctrl-C: nothing half-written stays
            self._abort(exc)
            raise

    def _check(self, staged: Path) -> None:
        counts = mcap_message_counts(staged)
        expected = {topic: self.frames for topic in self.topics.types()}
        if counts != expected:
            raise EdgeDepthError(f"{self.path}: the recording holds {counts} messages, expected {expected}; the disk "
                                 f"may be full: check the free space (df -h {self.path.parent}) or record elsewhere")
