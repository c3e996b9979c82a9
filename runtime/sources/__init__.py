"""Frame sources addressed by URI: cameras (V4L2, CSI), network streams, video files, images.

``--camera 0`` means ``/dev/video0`` through V4L2, as in OpenCV (jetson-utils reads a bare number
as CSI instead; here CSI is always spelled ``csi://0``). Live sources (cameras, streams) are read
by a capture thread that keeps only the newest frame, so latency never grows when inference is
slower than the camera; file sources deliver every frame in order.

The public API is re-exported here: ``base`` (Frame, Source, options), ``files`` (video, images),
``live`` (capture thread, reconnect), ``v4l2`` (USB cameras), ``streams`` (GStreamer, CSI,
network streams) and ``uri`` (parsing, :func:`open_source`).
"""
from __future__ import annotations

from edgedepth.runtime.sources.base import (
    Frame,
    ReconnectPolicy,
    Source,
    SourceCounters,
    SourceOptions,
    normalize_image,
)
from edgedepth.runtime.sources.files import (
    IMAGE_SUFFIXES,
    ImageSequenceSource,
    VideoFileSource,
    frame_names,
    image_paths,
)
from edgedepth.runtime.sources.live import LiveSource
from edgedepth.runtime.sources.streams import (
    FLIP_METHODS,
    csi_pipeline,
    flip_method,
    gstreamer_available,
    gstreamer_missing_message,
    open_gstreamer,
    open_stream,
    redact_url,
)
from edgedepth.runtime.sources.uri import STREAM_SCHEMES, SourceURI, open_source, parse_source_uri
from edgedepth.runtime.sources.v4l2 import (
    BAYER_FOURCCS,
    CSI_NAME_PATTERN,
    check_not_csi_sensor,
    describe_devices,
    fourcc_text,
    is_csi_sensor_name,
    list_video_devices,
    open_v4l2,
)

__all__ = [
    "BAYER_FOURCCS",
    "CSI_NAME_PATTERN",
    "FLIP_METHODS",
    "Frame",
    "IMAGE_SUFFIXES",
    "ImageSequenceSource",
    "LiveSource",
    "ReconnectPolicy",
    "STREAM_SCHEMES",
    "Source",
    "SourceCounters",
    "SourceOptions",
    "SourceURI",
    "VideoFileSource",
    "check_not_csi_sensor",
    "csi_pipeline",
    "describe_devices",
    "flip_method",
    "fourcc_text",
    "frame_names",
    "gstreamer_available",
    "gstreamer_missing_message",
    "image_paths",
    "is_csi_sensor_name",
    "list_video_devices",
    "normalize_image",
    "open_gstreamer",
    "open_source",
    "open_stream",
    "open_v4l2",
    "parse_source_uri",
    "redact_url",
]
