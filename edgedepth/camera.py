"""The pinhole camera model: intrinsics, how they follow a resize or a crop, and how they are read.

Pixel-centre convention: pixel ``(u, v)`` covers ``[u - 0.5, u + 0.5]`` and its centre is at the
integer coordinate (OpenCV's, ROS's). A resize by ``sx = new_width / width`` maps a point at
``x`` to ``(x + 0.5) * sx - 0.5``: this is how ``cv2.resize`` places its samples (INTER_LINEAR and
INTER_NEAREST_EXACT alike), so the principal point moves with the image content exactly; the plain
``cx * sx`` would misplace it by ``(1 - sx) / 2`` pixels (a quarter pixel when halving, 3/8 px when
a 1280-wide frame becomes 320 wide). The synthetic renderer uses the same rule
(training/data/scene.py), so rendered rooms and resized real frames agree.

Files read by :func:`read_intrinsics`:

* OpenCV calibration YAML as cv2.FileStorage writes it (``%YAML:1.0``, ``camera_matrix: !!opencv-matrix``
  with ``rows``/``cols``/``data``, ``image_width``, ``image_height``);
* ROS camera_calibration / camera_info_manager YAML (``camera_matrix: {rows, cols, data}``,
  ``image_width``, ``image_height``);
* a sensor_msgs/CameraInfo as ``ros2 topic echo --once`` prints it (``width``, ``height``, ``k``;
  ROS 1's ``K`` too).

Distortion coefficients are ignored: the network sees the distorted image and the points are the
pinhole back-projection of it; use a rectified image (``image_rect``) where the lens distorts much.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from edgedepth.errors import SpecError, UsageError

#: The keys of :meth:`PinholeIntrinsics.to_dict`, in order.
FIELDS = ("fx", "fy", "cx", "cy", "width", "height")
#: Two image sizes whose width/height ratios differ by more than this are "another aspect ratio".
ASPECT_TOLERANCE = 0.01


def same_aspect(width: float, height: float, other_width: float, other_height: float) -> bool:
    """True when two image sizes have one aspect ratio (within ASPECT_TOLERANCE: an odd size's rounding)."""
    return abs((width / height) / (other_width / other_height) - 1.0) <= ASPECT_TOLERANCE


def is_number(value: Any) -> bool:
    """A real number as a file or a config holds it (int, float, numpy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class PinholeIntrinsics:
    """A pinhole camera at an image size: focal lengths and principal point in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise SpecError(f"camera intrinsics {self.describe()}: {problem}")

    @property
    def focal(self) -> float:
        """The focal length a depth network's scale follows: sqrt(fx * fy) (fx for square pixels)."""
        return math.sqrt(self.fx * self.fy)

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def scaled_to(self, width: int, height: int) -> "PinholeIntrinsics":
        """These intrinsics after resizing the image to ``width`` x ``height`` (stretching, as
        ``cv2.resize`` does; pixel centres move by ``(x + 0.5) * s - 0.5``)."""
        sx, sy = width / self.width, height / self.height
        return PinholeIntrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                                 int(width), int(height))

    def cropped(self, left: int, top: int, width: int, height: int) -> "PinholeIntrinsics":
        """These intrinsics for the ``width`` x ``height`` window whose top-left pixel is (``left``, ``top``)."""
        if left < 0 or top < 0 or left + width > self.width or top + height > self.height:
            raise SpecError(f"crop {width}x{height} at ({left}, {top}) does not fit in a {self.width}x{self.height} "
                            "image; give a window inside the image")
        return PinholeIntrinsics(self.fx, self.fy, self.cx - left, self.cy - top, int(width), int(height))

    def matrix(self) -> List[float]:
        """K, 3x3 row-major (as sensor_msgs/CameraInfo.k)."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def same_aspect(self, width: int, height: int) -> bool:
        """True when a ``width`` x ``height`` image has this image's aspect ratio (within 1%)."""
        return same_aspect(width, height, self.width, self.height)

    def describe(self) -> str:
        return (f"fx={self.fx:.6g} fy={self.fy:.6g} cx={self.cx:.6g} cy={self.cy:.6g} at "
                f"{self.width}x{self.height}")

    def to_dict(self) -> Dict[str, Any]:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width,
                "height": self.height}

    @classmethod
    def from_dict(cls, data: Any, where: str = "intrinsics") -> "PinholeIntrinsics":
        """From :meth:`to_dict` output; SpecError naming ``where`` for anything else."""
        if not isinstance(data, Mapping) or sorted(data) != sorted(FIELDS):
            keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise SpecError(f"{where} is {keys!r:.80}, expected an object with exactly {list(FIELDS)}; "
                            "the file carrying it is corrupt or hand-edited: re-export it")
        wrong = [name for name in FIELDS if not is_number(data[name])]
        wrong += [name for name in ("width", "height") if not isinstance(data[name], int)]
        if wrong:
            raise SpecError(f"{where} field {wrong[0]} is {data[wrong[0]]!r:.40}, expected a number (width and "
                            "height whole numbers); the file carrying it is corrupt or hand-edited: re-export it")
        return cls(float(data["fx"]), float(data["fy"]), float(data["cx"]), float(data["cy"]), int(data["width"]),
                   int(data["height"]))


def _problem(camera: PinholeIntrinsics) -> Optional[str]:
    values = (camera.fx, camera.fy, camera.cx, camera.cy)
    if not all(is_number(v) and math.isfinite(v) for v in values):
        return "fx, fy, cx, cy must be finite numbers"
    if camera.fx <= 0 or camera.fy <= 0:
        return "focal lengths fx and fy must be > 0 pixels"
    size = (camera.width, camera.height)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        return "width and height must be whole numbers >= 1"
    return None


# ---------------------------------------------------------------------------------------------
# What --intrinsics names: a calibration file, or fx,fy,cx,cy at the frames' own size
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraCalibration:
    """Intrinsics as the user gave them: with their image size (a file), or without (``fx,fy,cx,cy``,
    which hold at the size of the frames)."""

    fx: float
    fy: float
    cx: float
    cy: float
    #: (width, height) the values hold at; None: the frames' size.
    size: Optional[Tuple[int, int]]
    #: Where they came from, for messages.
    origin: str

    def __post_init__(self) -> None:
        # Every way in (a file, fx,fy,cx,cy, a CameraInfo topic) meets this one check, so a NaN or
        # a zero focal length is refused here rather than on the first frame.
        _check_values((self.fx, self.fy, self.cx, self.cy), self.origin)

    def at_size(self, width: int, height: int) -> PinholeIntrinsics:
        """The intrinsics of a ``width`` x ``height`` frame: the calibration itself, or scaled from a
        calibration of the same aspect ratio (a camera mode that bins or scales the sensor);
        UsageError for another aspect ratio (a cropped mode: calibrate that mode)."""
        if self.size is None:
            return PinholeIntrinsics(self.fx, self.fy, self.cx, self.cy, int(width), int(height))
        calibrated = PinholeIntrinsics(self.fx, self.fy, self.cx, self.cy, *self.size)
        if calibrated.size == (width, height):
            return calibrated
        if not calibrated.same_aspect(width, height):
            raise UsageError(
                f"--intrinsics {self.origin} holds for {self.size[0]}x{self.size[1]} images but the frames are "
                f"{width}x{height}, another aspect ratio (a cropped camera mode): calibrate the camera in this mode, "
                f"or capture at {self.size[0]}x{self.size[1]}"
            )
        return calibrated.scaled_to(width, height)


def parse_intrinsics(text: str) -> CameraCalibration:
    """``--intrinsics``: a calibration YAML file, or ``fx,fy,cx,cy`` (pixels, at the frames' size)."""
    if Path(text).is_file():
        return read_intrinsics(Path(text))
    parts = [part.strip() for part in text.split(",")]
    if len(parts) == 4:
        try:
            values = [float(part) for part in parts]
        except ValueError:
            values = []
        if values:
            return CameraCalibration(values[0], values[1], values[2], values[3], size=None, origin=text)
    raise UsageError(
        f"--intrinsics {text!r} is neither a file nor fx,fy,cx,cy: give four numbers in pixels at the camera's "
        "resolution (e.g. 600,600,319.5,239.5) or an OpenCV / ROS camera_info YAML file"
    )


def _check_values(values: Sequence[float], origin: str) -> None:
    if not all(is_number(v) and math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise UsageError(f"--intrinsics {origin}: fx={values[0]}, fy={values[1]}, cx={values[2]}, cy={values[3]} "
                         "are not a camera: fx and fy must be > 0 and all four finite (pixels)")


#: OpenCV's YAML 1.0 header and type tags, which a YAML 1.1 parser refuses.
_OPENCV_HEADER = re.compile(r"\A%YAML[: ]1\.0[^\n]*\n(---[^\n]*\n)?")
_OPENCV_TAG = re.compile(r"!!opencv-(matrix|nd-matrix)")


def read_intrinsics(path: Path) -> CameraCalibration:
    """Intrinsics from an OpenCV or ROS calibration YAML, or an echoed CameraInfo (module docstring)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--intrinsics {path}: cannot read it ({exc}); give a camera calibration YAML") from exc
    try:
        data = yaml.safe_load(_OPENCV_TAG.sub("", _OPENCV_HEADER.sub("", text)))
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise UsageError(f"--intrinsics {path} is not YAML ({problem:.120}); give an OpenCV or ROS camera_info "
                         "calibration file") from exc
    values, size = _calibration_fields(data, path)
    return CameraCalibration(values[0], values[1], values[2], values[3], size=size, origin=str(path))


def _calibration_fields(data: Any, path: Path) -> Tuple[List[float], Tuple[int, int]]:
    """(fx, fy, cx, cy) and (width, height) from a parsed calibration file."""
    data = data if isinstance(data, Mapping) else {}
    matrix = data.get("camera_matrix")
    if isinstance(matrix, Mapping):  # OpenCV and ROS calibration files
        flat, size = matrix.get("data"), (data.get("image_width"), data.get("image_height"))
    else:  # an echoed CameraInfo (ROS 2 lower-case k, ROS 1 upper-case K)
        flat, size = data.get("k", data.get("K")), (data.get("width"), data.get("height"))
    if not (isinstance(flat, list) and len(flat) == 9 and all(is_number(v) for v in flat)
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise UsageError(
            f"--intrinsics {path} is not a camera calibration: expected camera_matrix (rows 3, cols 3, data of 9 "
            "numbers) with image_width and image_height (OpenCV / ROS camera_calibration), or k (9 numbers) with "
            f"width and height (CameraInfo); found keys {sorted(map(str, data))[:12]}"
        )
    return [float(flat[0]), float(flat[4]), float(flat[2]), float(flat[5])], (int(size[0]), int(size[1]))
