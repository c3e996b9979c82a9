"""Frame sources addressed by URI: cameras (V4L2, CSI), network streams, video files, images.

``--camera 0`` means ``/dev/video0`` through V4L2, as in OpenCV (jetson-utils reads a bare number
as CSI instead; here CSI is always spelled ``csi://0``). Live sources (cameras, streams) are read
by a capture thread that keeps only the newest frame, so latency never grows when inference is
slower than the camera; file sources deliver every frame in order.
"""
from __future__ import annotations

import abc
import glob
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.errors import SourceError
from edgedepth.preprocess import import_cv2

LOG = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "rtp://")
#: nvvidconv flip-method values (JetsonHacks CSI-Camera README, from gst-inspect).
FLIP_METHODS = (
    "none",
    "counterclockwise",
    "rotate-180",
    "clockwise",
    "horizontal",
    "upper-right-diagonal",
    "vertical",
    "upper-left-diagonal",
)
#: V4L2 pixel formats of raw Bayer sensors (what a CSI sensor node offers without the ISP).
BAYER_FOURCCS = {"RG10", "BG10", "GB10", "GR10", "RG12", "BG12", "GB12", "GR12", "RGGB", "BGGR", "GBRG", "GRBG", "BA81", "BA10", "pRAA"}
#: Names CSI sensor nodes report in /sys/class/video4linux/videoN/name ("vi-output, imx219 8-0010").
CSI_NAME_PATTERN = re.compile(r"vi-output|tegra-capture|nvcsi|\b(imx\d{3}|ov\d{4}|ar\d{4}|gc\d{4})\b", re.IGNORECASE)


@dataclass
class Frame:
    """One BGR image from a source, with when it was captured and what it is called."""

    index: int
    image: np.ndarray
    #: time.perf_counter() when the source obtained it (end-to-end latency starts here).
    captured_at: float
    #: Seconds the source spent reading/decoding it.
    capture_s: float
    #: Name for saved outputs: the file stem for images, else the zero-padded index.
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

    @abc.abstractmethod
    def read(self) -> Optional[Frame]:
        """The next frame, or None when the stream has ended (or the source was closed)."""

    @property
    def fps(self) -> Optional[float]:
        """Nominal frame rate when the source knows it."""
        return None

    def close(self) -> None:
        """Release the device or file."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# File sources: every frame, in order
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Live sources: a capture thread keeps the newest frame; reconnect with back-off
# ---------------------------------------------------------------------------------------------


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


class LiveSource(Source):
    """A camera or stream read by a background thread that keeps only the newest frame.

    ``opener`` returns an opened ``cv2.VideoCapture``-like object (``read()``, ``release()``) or
    raises SourceError; it is called again to reconnect after the stream drops.
    """

    live = True

    def __init__(
        self,
        opener: Callable[[], Any],
        description: str,
        reconnect: Optional[ReconnectPolicy] = None,
        frame_timeout_s: float = 10.0,
        nominal_fps: Optional[float] = None,
    ) -> None:
        super().__init__(description)
        self._opener = opener
        self._policy = reconnect or ReconnectPolicy()
        self._frame_timeout_s = frame_timeout_s
        self._nominal_fps = nominal_fps
        self._capture = opener()  # first open in the caller's thread: errors surface at once
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._latest: Optional[Frame] = None
        self._error: Optional[SourceError] = None
        self._finished = False
        self._reconnecting = False
        self._index = 0
        self._thread = threading.Thread(target=self._capture_loop, name=f"capture {description}", daemon=True)
        self._thread.start()

    @property
    def fps(self) -> Optional[float]:
        return self._nominal_fps

    # --- capture thread ---

    def _capture_loop(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                ok, image = self._capture.read()
                if self._stop.is_set():
                    break
                if not ok:
                    failures += 1
                    if failures >= self._policy.failures_before_reconnect:
                        if not self._reconnect():
                            break
                        failures = 0
                    continue
                failures = 0
                self._publish(image, start)
        except Exception as exc:  # a capture backend crash must reach the consumer, not vanish
            self._fail(SourceError(f"{self.description} failed while reading: {type(exc).__name__}: {exc}"))
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _publish(self, image: Any, start: float) -> None:
        now = time.perf_counter()
        image = normalize_image(image)
        with self._cond:
            self.counters.read += 1
            if image is None:
                self.counters.corrupt += 1
                return
            if self._latest is not None:
                self.counters.dropped += 1  # the consumer never took the previous one
            self._latest = Frame(self._index, image, now, now - start)
            self._index += 1
            self._cond.notify_all()

    def _reconnect(self) -> bool:
        """Reopen with back-off; False (and a stored error) when every attempt failed."""
        self._set_reconnecting(True)
        self._release_capture()
        last_error = "the stream ended"
        for attempt, delay in enumerate(self._policy.delays(), start=1):
            LOG.warning("%s dropped; reconnect attempt %d/%d in %.1f s", self.description, attempt, self._policy.attempts, delay)
            if self._stop.wait(delay):
                return False
            try:
                self._capture = self._opener()
            except SourceError as exc:
                last_error = str(exc)
                continue
            self.counters.reconnects += 1
            self._set_reconnecting(False)
            return True
        self._fail(SourceError(self._lost_message(last_error)))
        return False

    def _lost_message(self, last_error: str) -> str:
        if not self._policy.attempts:
            return f"{self.description} stopped delivering frames and reconnecting is off (--reconnect-attempts 0)"
        return (
            f"{self.description} stopped delivering frames and {self._policy.attempts} reconnect attempts over "
            f"{sum(self._policy.delays()):.0f} s failed (last: {last_error}); check the cable, power or network and run again"
        )

    def _set_reconnecting(self, value: bool) -> None:
        with self._cond:
            self._reconnecting = value
            self._cond.notify_all()

    def _fail(self, error: SourceError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def _release_capture(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    # --- consumer side ---

    def read(self) -> Optional[Frame]:
        """The newest frame not yet returned; waits for one. None once closed.

        Raises SourceError when the stream is lost for good, or when no frame arrives for
        ``frame_timeout_s`` outside reconnection (a stalled device).
        """
        deadline = time.monotonic() + self._frame_timeout_s
        with self._cond:
            while True:
                if self._latest is not None:
                    frame, self._latest = self._latest, None
                    self.counters.delivered += 1
                    return frame
                if self._error is not None:
                    raise self._error
                if self._finished or self._stop.is_set():
                    return None
                if self._reconnecting:
                    deadline = time.monotonic() + self._frame_timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(
                        f"no frame from {self.description} for {self._frame_timeout_s:.1f} s: the device stalled; "
                        "check it (another process may hold it) or raise --frame-timeout"
                    )
                self._cond.wait(min(remaining, 0.1))

    def close(self, join_timeout_s: float = 5.0) -> None:
        """Stop the thread, then release the capture (never while a read may still be running)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=join_timeout_s)
        if self._thread.is_alive():
            LOG.warning("%s: capture thread still blocked in read(); leaving the device to process exit", self.description)
            return
        self._release_capture()


# ---------------------------------------------------------------------------------------------
# URIs
# ---------------------------------------------------------------------------------------------


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


@dataclass
class SourceURI:
    """A parsed source address: ``kind`` is v4l2, csi, stream, gstreamer, video or images."""

    kind: str
    target: str


def parse_source_uri(uri: str, camera: bool = False) -> SourceURI:
    """Classify ``uri``; ``camera=True`` (``--camera``) accepts only devices, CSI, streams and pipelines."""
    text = str(uri).strip()
    parsed = _parse_live_uri(text)
    if parsed is not None:
        return parsed
    if camera:
        raise SourceError(
            f"--camera {text!r} is not a camera: expected 0, /dev/video0, csi://0 or a stream URL like "
            "rtsp://host/path; pass files and folders with --input"
        )
    return _parse_file_uri(text[len("file://") :] if text.startswith("file://") else text)


def _parse_live_uri(text: str) -> Optional[SourceURI]:
    if text.isdigit():
        return SourceURI("v4l2", f"/dev/video{int(text)}")
    if text.startswith("v4l2://"):
        return SourceURI("v4l2", text[len("v4l2://") :])
    if re.fullmatch(r"/dev/video\d+", text):
        return SourceURI("v4l2", text)
    if text.startswith("csi://"):
        sensor = text[len("csi://") :]
        if not sensor.isdigit():
            raise SourceError(f"CSI source {text!r} needs a sensor number, e.g. csi://0")
        return SourceURI("csi", sensor)
    if text.lower().startswith(STREAM_SCHEMES):
        return SourceURI("stream", text)
    if " ! " in text:
        return SourceURI("gstreamer", text)
    return None


def _parse_file_uri(path: str) -> SourceURI:
    if os.path.isdir(path) or glob.has_magic(path):
        return SourceURI("images", path)
    if os.path.isfile(path):
        return SourceURI("images" if Path(path).suffix.lower() in IMAGE_SUFFIXES else "video", path)
    raise SourceError(
        f"input {path!r} does not exist: expected a video file, an image, a folder or glob of images, "
        "a camera (0, /dev/video0, csi://0) or a stream URL (rtsp://...)"
    )


def open_source(uri: str, options: Optional[SourceOptions] = None, camera: bool = False) -> Source:
    """Open the source ``uri`` names (see :func:`parse_source_uri`)."""
    options = options or SourceOptions()
    parsed = parse_source_uri(uri, camera=camera)
    if parsed.kind == "video":
        return VideoFileSource(parsed.target, loop=options.loop)
    if parsed.kind == "images":
        return ImageSequenceSource(image_paths(parsed.target), f"images {parsed.target}", loop=options.loop)
    opener, description = _live_opener(parsed, options)
    return LiveSource(opener, description, options.reconnect, options.frame_timeout_s, options.camera_fps)


def _live_opener(parsed: SourceURI, options: SourceOptions) -> Tuple[Callable[[], Any], str]:
    if parsed.kind == "v4l2":
        check_not_csi_sensor(parsed.target, options)
        return (lambda: open_v4l2(parsed.target, options)), f"camera {parsed.target}"
    if parsed.kind == "csi":
        pipeline = csi_pipeline(int(parsed.target), *_csi_size(options), fps=_csi_fps(options), flip=options.flip)
        return (lambda: open_gstreamer(pipeline, f"csi://{parsed.target}")), f"CSI camera csi://{parsed.target}"
    if parsed.kind == "gstreamer":
        return (lambda: open_gstreamer(parsed.target, "GStreamer pipeline")), "GStreamer pipeline"
    return (lambda: open_stream(parsed.target, options.stream_timeout_s)), f"stream {redact_url(parsed.target)}"


def _csi_size(options: SourceOptions) -> Tuple[int, int]:
    return options.camera_size or options.csi_default_size


def _csi_fps(options: SourceOptions) -> int:
    return int(round(options.camera_fps)) if options.camera_fps else 30


def redact_url(url: str) -> str:
    """Hide the password of ``rtsp://user:pass@host`` in messages and stats."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


# ---------------------------------------------------------------------------------------------
# V4L2 cameras
# ---------------------------------------------------------------------------------------------


def list_video_devices(dev_root: str = "/dev", sysfs_root: str = "/sys/class/video4linux") -> List[Tuple[str, str]]:
    """(device path, V4L2 name) for every /dev/videoN, numerically sorted; name "" when unknown."""
    devices = []
    for path in glob.glob(os.path.join(dev_root, "video*")):
        number = re.fullmatch(r"video(\d+)", os.path.basename(path))
        if number:
            devices.append((int(number.group(1)), path, _read_v4l2_name(path, sysfs_root)))
    return [(path, name) for _, path, name in sorted(devices)]


def _read_v4l2_name(device_path: str, sysfs_root: str) -> str:
    try:
        return Path(sysfs_root, os.path.basename(device_path), "name").read_text().strip()
    except OSError:
        return ""


def is_csi_sensor_name(name: str) -> bool:
    """Whether a V4L2 device name is a Jetson CSI sensor node (raw Bayer, no ISP)."""
    return bool(CSI_NAME_PATTERN.search(name or ""))


def check_not_csi_sensor(device_path: str, options: SourceOptions) -> None:
    """Refuse a /dev/videoN that is a raw CSI sensor: through V4L2 it gives Bayer data, not an image."""
    devices = list_video_devices(options.dev_root, options.sysfs_root)
    name = dict(devices).get(device_path, "") or _read_v4l2_name(device_path, options.sysfs_root)
    if is_csi_sensor_name(name):
        sensors = [path for path, dev_name in devices if is_csi_sensor_name(dev_name)]
        sensor_id = sensors.index(device_path) if device_path in sensors else 0
        raise SourceError(
            f"{device_path} is a CSI camera sensor ({name}): V4L2 would give raw Bayer without the ISP; "
            f"use --camera csi://{sensor_id} (nvarguscamerasrc) instead"
        )


def describe_devices(options: SourceOptions) -> str:
    """'/dev/video0 (USB Camera), /dev/video1 (...)' or how to look for cameras when there are none."""
    devices = list_video_devices(options.dev_root, options.sysfs_root)
    if not devices:
        return "no /dev/video* devices exist (is the camera plugged in? check `v4l2-ctl --list-devices`)"
    parts = []
    for path, name in devices:
        note = "; CSI sensor: use csi://N" if is_csi_sensor_name(name) else ""
        parts.append(f"{path} ({name or 'unknown'}{note})")
    return "video devices here: " + ", ".join(parts)


def open_v4l2(device_path: str, options: SourceOptions, capture_factory: Optional[Callable[..., Any]] = None) -> Any:
    """Open a V4L2 camera with the requested size/fps/fourcc; SourceError naming the devices that exist."""
    cv2 = import_cv2()
    factory = capture_factory or cv2.VideoCapture
    # By index: every OpenCV build's V4L2 backend opens /dev/videoN that way; not all open by path.
    number = re.fullmatch(r".*video(\d+)", device_path)
    capture = factory(int(number.group(1)) if number else device_path, cv2.CAP_V4L2)
    if not capture.isOpened():
        raise SourceError(f"cannot open camera {device_path}; {describe_devices(options)}")
    _configure_v4l2(capture, options)
    fourcc = fourcc_text(capture.get(cv2.CAP_PROP_FOURCC))
    if fourcc in BAYER_FOURCCS:
        capture.release()
        raise SourceError(f"{device_path} delivers raw Bayer ({fourcc}): it is a CSI sensor; use --camera csi://0")
    return capture


def _configure_v4l2(capture: Any, options: SourceOptions) -> None:
    cv2 = import_cv2()
    if options.camera_fourcc:  # set first: changing the format restarts the stream
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*options.camera_fourcc[:4].ljust(4)))
    if options.camera_size:  # V4L2 applies a new size once both width and height are set
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, options.camera_size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, options.camera_size[1])
    if options.camera_fps:
        capture.set(cv2.CAP_PROP_FPS, options.camera_fps)


def fourcc_text(code: float) -> str:
    """OpenCV's FOURCC property (a float) -> its four characters."""
    value = int(code)
    return "".join(chr((value >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00")


# ---------------------------------------------------------------------------------------------
# GStreamer (CSI on Jetson, custom pipelines) and network streams
# ---------------------------------------------------------------------------------------------


def gstreamer_available(build_info: Optional[str] = None) -> bool:
    """Whether the OpenCV in use was built with GStreamer (pip wheels never are)."""
    info = import_cv2().getBuildInformation() if build_info is None else build_info
    return bool(re.search(r"^\s*GStreamer:\s*YES", info, re.MULTILINE))


def flip_method(flip: str) -> int:
    """nvvidconv flip-method number for a name (``rotate-180``) or a number 0-7."""
    text = str(flip).strip().lower()
    if text.isdigit() and int(text) < len(FLIP_METHODS):
        return int(text)
    if text in FLIP_METHODS:
        return FLIP_METHODS.index(text)
    raise SourceError(f"flip {flip!r} is unknown; use 0-7 or one of {', '.join(FLIP_METHODS)}")


def csi_pipeline(sensor_id: int, width: int, height: int, fps: int = 30, flip: str = "none") -> str:
    """nvarguscamerasrc -> BGR appsink (CAMERA.md §1.1); the appsink keeps only the newest buffer.

    The sensor outputs NV12 in NVMM memory; nvvidconv converts to BGRx (and flips) in hardware,
    videoconvert packs BGR for OpenCV. ``sync=false`` must be written by hand: OpenCV sets it only
    for pipelines it builds itself.
    """
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM),width={int(width)},height={int(height)},framerate={int(fps)}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip_method(flip)} ! "
        f"video/x-raw,width={int(width)},height={int(height)},format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def gstreamer_missing_message(what: str) -> str:
    """How to fix an OpenCV without GStreamer (the usual Jetson breakage: a pip wheel shadows JetPack's)."""
    cv2 = import_cv2()
    return (
        f"{what} needs OpenCV with GStreamer, but the cv2 in use ({cv2.__version__} at {cv2.__file__}) has none; "
        "pip's opencv-python wheels never do. On a Jetson: `pip uninstall opencv-python opencv-python-headless "
        "opencv-contrib-python`, use JetPack's OpenCV (a venv needs --system-site-packages), install edgedepth with "
        "the `runtime-jetson` extra, and check `python3 -c \"import cv2; print(cv2.getBuildInformation())\" | grep GStreamer`"
    )


def open_gstreamer(pipeline: str, what: str, capture_factory: Optional[Callable[..., Any]] = None) -> Any:
    """Open a GStreamer pipeline ending in appsink; SourceError with the fix when it cannot."""
    cv2 = import_cv2()
    if not gstreamer_available():
        raise SourceError(gstreamer_missing_message(what))
    capture = (capture_factory or cv2.VideoCapture)(pipeline, cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        hint = (
            "; if it worked before, a crashed run may still hold the sensor: `sudo systemctl restart nvargus-daemon`"
            if "nvarguscamerasrc" in pipeline
            else ""
        )
        raise SourceError(f"GStreamer could not start {what} (pipeline: {pipeline}){hint}")
    return capture


def open_stream(url: str, timeout_s: float = 5.0, capture_factory: Optional[Callable[..., Any]] = None) -> Any:
    """Open a network stream through FFmpeg (TCP for RTSP, bounded open/read timeouts)."""
    cv2 = import_cv2()
    # Set before each open (OpenCV reads it there); a user's own setting wins.
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    factory = capture_factory or cv2.VideoCapture
    timeout_ms = int(timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    capture = factory(url, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        raise SourceError(
            f"cannot open stream {redact_url(url)} within {timeout_s:.0f} s: check the URL, credentials and that "
            "the server is reachable (try `ffplay URL`)"
        )
    return capture
