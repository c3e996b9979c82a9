"""V4L2 cameras: list /dev/video*, refuse raw CSI sensor nodes, open with size/fps/fourcc."""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from edgedepth.errors import SourceError
from edgedepth.preprocess import import_cv2
from edgedepth.runtime.sources.base import SourceOptions

#: V4L2 pixel formats of raw Bayer sensors (what a CSI sensor node offers without the ISP).
BAYER_FOURCCS = {"RG10", "BG10", "GB10", "GR10", "RG12", "BG12", "GB12", "GR12",
                 "RGGB", "BGGR", "GBRG", "GRBG", "BA81", "BA10", "pRAA"}
#: Names CSI sensor nodes report in /sys/class/video4linux/videoN/name ("vi-output, imx219 8-0010").
CSI_NAME_PATTERN = re.compile(r"vi-output|tegra-capture|nvcsi|\b(imx\d{3}|ov\d{4}|ar\d{4}|gc\d{4})\b", re.IGNORECASE)


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
