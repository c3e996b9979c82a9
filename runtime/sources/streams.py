"""GStreamer pipelines (CSI cameras on Jetson, custom pipelines) and network streams (FFmpeg)."""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Optional

from edgedepth.errors import SourceError
from edgedepth.preprocess import import_cv2

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
        "the `runtime-jetson` extra, and check "
        "`python3 -c \"import cv2; print(cv2.getBuildInformation())\" | grep GStreamer`"
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


def redact_url(url: str) -> str:
    """Hide the password of ``rtsp://user:pass@host`` in messages and stats."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)
