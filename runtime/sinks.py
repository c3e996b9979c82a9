"""Where depth goes: a window, a video file, raw metric depth files; and the side-by-side view."""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Optional, Sequence, Tuple

import numpy as np

from edgedepth.errors import EdgeDepthError
from edgedepth.io import atomic_path, write_bytes_atomic
from edgedepth.preprocess import import_cv2

LOG = logging.getLogger(__name__)

DEPTH_FORMATS = ("png", "npy")
#: 16-bit PNG depth unit: millimetres, the convention of NYUv2/TUM-style depth PNGs (max 65.535 m).
PNG_DEPTH_SCALE = 1000.0
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc


# ---------------------------------------------------------------------------------------------
# The view: input | colourised depth, with an overlay
# ---------------------------------------------------------------------------------------------


def side_by_side(image: np.ndarray, depth_color: np.ndarray) -> np.ndarray:
    """Input frame and colourised depth (scaled to the frame's size) side by side."""
    cv2 = import_cv2()
    height, width = image.shape[:2]
    if depth_color.shape[:2] != (height, width):
        depth_color = cv2.resize(depth_color, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.hconcat([image, depth_color])


def draw_overlay(view: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write ``lines`` in the top-left corner, white on a dark outline so any background reads."""
    cv2 = import_cv2()
    scale = max(0.4, view.shape[0] / 720.0 * 0.7)
    step = int(28 * scale / 0.7)
    for row, text in enumerate(lines):
        origin = (10, step * (row + 1))
        cv2.putText(view, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(view, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return view


# ---------------------------------------------------------------------------------------------
# Raw metric depth
# ---------------------------------------------------------------------------------------------


def depth_to_png_mm(depth: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres; NaN/inf and negatives become 0 (no depth), far values saturate."""
    # float64: in float32, metres x 1000 is off by up to 4 um at 60 m, enough to flip a rounding.
    millimetres = np.nan_to_num(np.asarray(depth, dtype=np.float64) * PNG_DEPTH_SCALE, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.rint(millimetres), 0, 65535).astype(np.uint16)


def encode_depth(depth: np.ndarray, depth_format: str) -> bytes:
    """File bytes of an HxW metre depth map as a 16-bit millimetre PNG or a float32 .npy."""
    if depth_format == "png":
        ok, encoded = import_cv2().imencode(".png", depth_to_png_mm(depth))
        if not ok:
            raise EdgeDepthError(f"OpenCV could not encode a {depth.shape} depth PNG")
        return encoded.tobytes()
    if depth_format == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(depth, dtype=np.float32))
        return buffer.getvalue()
    raise EdgeDepthError(f"depth format {depth_format!r} is unknown; use one of {', '.join(DEPTH_FORMATS)}")


class DepthWriter:
    """Writes each frame's metric depth as ``DIR/<name>.png`` (uint16 mm) or ``.npy`` (float32 m)."""

    def __init__(self, directory: str, depth_format: str = "png") -> None:
        if depth_format not in DEPTH_FORMATS:
            raise EdgeDepthError(f"depth format {depth_format!r} is unknown; use one of {', '.join(DEPTH_FORMATS)}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.depth_format = depth_format
        self.written = 0

    def write(self, name: str, depth: np.ndarray) -> Path:
        path = self.directory / f"{name}.{self.depth_format}"
        write_bytes_atomic(path, encode_depth(depth, self.depth_format))  # an OSError names ``path``
        self.written += 1
        return path

    def close(self) -> None:
        """Nothing is held open; present so every sink closes the same way."""


# ---------------------------------------------------------------------------------------------
# Video file
# ---------------------------------------------------------------------------------------------


class VideoSink:
    """A video file (mp4v by default: pip OpenCV cannot encode H.264) written atomically.

    The size is fixed by the first frame; later frames of another size (a camera that changed
    mode) are scaled to it, since a video stream cannot change size. OpenCV's writer reports no
    write error, so a full disk is watched for while writing, and the finished file is reopened and
    checked before it is moved into place: a video that does not play never reaches the final path.
    """

    def __init__(self, path: str, fps: float = 30.0, fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.fourcc = fourcc
        self.frames = 0
        self.size: Optional[Tuple[int, int]] = None
        self._writer: Any = None
        self._atomic = contextlib.ExitStack()
        self._placeholder: Optional[Path] = None
        self._staging: Optional[Path] = None
        self._failed: Optional[BaseException] = None

    def _open(self, width: int, height: int) -> None:
        cv2 = import_cv2()
        self._placeholder = self._atomic.enter_context(atomic_path(self.path))
        # The writer picks the container from the extension, so stage under the real suffix.
        self._staging = self._placeholder.with_name(self._placeholder.name + self.path.suffix)
        writer = cv2.VideoWriter(str(self._staging), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
        if not writer.isOpened():
            self._fail(EdgeDepthError(
                f"OpenCV cannot write {self.path} with codec {self.fourcc!r}; use an .mp4 (mp4v) or .avi (MJPG) name"
            ))
        self._writer, self.size = writer, (width, height)

    def _fail(self, error: BaseException) -> NoReturn:
        """Remove everything staged and raise ``error``; later writes raise it again."""
        self._failed = error
        self._abort(error)
        raise error

    def _abort(self, error: BaseException) -> None:
        """Leave nothing behind: the staged file and the placeholder are removed, the target untouched."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.release()
        if self._staging is not None:
            with contextlib.suppress(OSError):
                self._staging.unlink()
        self._atomic.__exit__(type(error), error, None)

    def write(self, view: np.ndarray) -> None:
        if self._failed is not None:
            raise self._failed
        height, width = view.shape[:2]
        if self._writer is None:
            self._open(width, height)
        elif (width, height) != self.size:
            view = import_cv2().resize(view, self.size, interpolation=import_cv2().INTER_AREA)
        self._writer.write(view)
        self.frames += 1
        # The writer drops frames silently on a full disk; stop at once rather than record nothing for hours.
        if free_bytes(self.path.parent) == 0:
            self._fail(OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: the video cannot be finished",
                               str(self.path)))

    def close(self) -> None:
        """Finish the file (the container index is written on release), check that it plays and
        holds every frame written, and move it into place; on any failure remove it and raise."""
        if self._writer is None or self._staging is None or self._placeholder is None:
            return
        try:
            self._writer.release()
            self._writer = None
            self._check_staged(self._staging)
            os.replace(self._staging, self._placeholder)  # atomic_path then moves it to the target
            self._atomic.close()
        except BaseException as exc:  # a second Ctrl-C too: nothing half-written stays
            self._abort(exc)
            raise

    def _check_staged(self, staged: Path) -> None:
        problem = check_video_file(staged, self.frames)
        if problem is None:
            return
        free = free_bytes(self.path.parent)
        if free is not None and free < FULL_DISK_BYTES:
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: the video writer lost frames ({problem})",
                          str(self.path))
        # No full disk to blame: before a recording is thrown away, decode it all (a container
        # header or a seek OpenCV got wrong must not cost a good file).
        decoded = count_decodable_frames(staged)
        if decoded == self.frames:
            return
        raise EdgeDepthError(
            f"{self.path}: the video writer failed ({problem}; {decoded} of {self.frames} frames decode); the disk "
            f"may be full: check the free space (df -h {self.path.parent}) or write elsewhere"
        )


#: A video that fails its check with less than this free in its folder is put down to a full disk.
FULL_DISK_BYTES = 64 << 20


def free_bytes(folder: Path) -> Optional[int]:
    """Bytes this process may still write on ``folder``'s file system (root may use the reserved
    blocks); None when that cannot be asked, or the file system does not say (FUSE mounts without
    statfs report zero blocks in all)."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # a folder that vanished, or no statvfs (Windows): do not guess
        return None
    if stats.f_blocks == 0:
        return None
    is_root = getattr(os, "geteuid", lambda: -1)() == 0
    return (stats.f_bfree if is_root else stats.f_bavail) * stats.f_frsize


def check_video_file(path: Path, frames: int) -> Optional[str]:
    """None when the video at ``path`` opens (its container was finalised), announces ``frames``
    frames, and its first and last frames decode; else what is wrong with it.

    The first and last frames rather than every one: a finished hour of 720p takes minutes to
    decode, and a stop signal (docker gives 10 s) must not wait for that. A failed write loses the
    end of a file (FFmpeg writes nothing after its first error), which the count and the last
    frame catch.
    """
    cv2 = import_cv2()
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return "the file does not open: its container was not finalised"
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count != frames:
            return f"the file holds {max(count, 0)} of the {frames} frames written"
        if not capture.read()[0]:
            return "its first frame does not decode"
        if frames == 1:  # after a read OpenCV cannot seek back to frame 0
            return None
        capture.set(cv2.CAP_PROP_POS_FRAMES, frames - 1)
        return None if capture.read()[0] else "its last frame does not decode"
    finally:
        capture.release()


def count_decodable_frames(path: Path) -> int:
    """How many frames of the video at ``path`` decode, read from the start."""
    capture = import_cv2().VideoCapture(str(path))
    try:
        count = 0
        while capture.grab():
            count += 1
        return count
    finally:
        capture.release()


# ---------------------------------------------------------------------------------------------
# Window
# ---------------------------------------------------------------------------------------------


def opencv_has_gui(build_info: Optional[str] = None) -> bool:
    """False for headless OpenCV builds (``GUI: NONE``), whose imshow raises."""
    info = import_cv2().getBuildInformation() if build_info is None else build_info
    match = re.search(r"^\s*GUI:\s*(\S+)", info, re.MULTILINE)
    return not (match and match.group(1).upper() == "NONE")


def display_decision(
    no_display: bool, environ: Mapping[str, str], build_info: Optional[str] = None
) -> Tuple[bool, str]:
    """(show a window?, why not): no window with --no-display, without a display, or headless OpenCV."""
    if no_display:
        return False, ""
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY and WAYLAND_DISPLAY are unset): running headless"
    if not opencv_has_gui(build_info):
        return False, "this OpenCV is a headless build (no GUI): running headless"
    return True, ""


def probe_window(timeout_s: float = 15.0) -> bool:
    """Open a window in a child process: with no usable X server, Qt's imshow aborts the whole
    process (SIGABRT, not catchable), so only a child may find that out."""
    code = "import cv2; cv2.namedWindow('edgedepth-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


class WindowSink:
    """An OpenCV window; ``show`` returns False once the user pressed q or Esc (or closed it)."""

    def __init__(
        self,
        title: str = "depth-run",
        imshow: Optional[Callable[[str, np.ndarray], None]] = None,
        wait_key: Optional[Callable[[int], int]] = None,
    ) -> None:
        cv2 = import_cv2()
        self.title = title
        self._imshow = imshow or cv2.imshow
        self._wait_key = wait_key or cv2.waitKey
        self.available = True

    def show(self, view: np.ndarray) -> bool:
        """Display ``view``; False when the user asked to quit."""
        if not self.available:
            return True
        try:
            self._imshow(self.title, view)
        except import_cv2().error as exc:  # headless OpenCV raises instead of showing
            LOG.warning("cannot open a window (%s); continuing headless", str(exc).strip().splitlines()[-1])
            self.available = False
            return True
        return self.poll()

    def poll(self) -> bool:
        """Process window events; False when q/Esc was pressed."""
        if not self.available:
            return True
        return (self._wait_key(1) & 0xFF) not in QUIT_KEYS

    def close(self) -> None:
        if self.available:
            with contextlib.suppress(Exception):
                import_cv2().destroyWindow(self.title)
