"""Source URIs: classify an address (camera, CSI, stream, pipeline, video, images) and open it."""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

from edgedepth.errors import SourceError
from edgedepth.runtime.sources.base import Source, SourceOptions
from edgedepth.runtime.sources.files import IMAGE_SUFFIXES, ImageSequenceSource, VideoFileSource, image_paths
from edgedepth.runtime.sources.live import LiveSource
from edgedepth.runtime.sources.streams import csi_pipeline, open_gstreamer, open_stream, redact_url
from edgedepth.runtime.sources.v4l2 import check_not_csi_sensor, open_v4l2

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "rtp://")


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
