"""The camera of the depth image, and metric depth rescaled for the user's camera's focal length.

A network trained with focal length ``f`` (pixels, at its input size) sees an object of size ``S``
at depth ``Z`` as ``S * f / Z`` pixels: that apparent size is its metric cue (training's scale
augmentation keeps it so: training/data/augment.py). On a camera whose focal length at the same
input size is ``f'``, the same object at depth ``Z`` looks ``f' / f`` times larger, so the network
answers ``Z * f / f'``. Multiplying its output by ``f' / f`` gives the metric depth back:

    depth = network_depth * f_user / f_train,   f = sqrt(fx * fy) at the model's input size

where ``f_user`` is the ``--intrinsics`` camera scaled to the model input exactly as depth-run
resizes frames (a stretch, edgedepth.preprocess.resize_to_spec; pixel centres by
edgedepth.camera's rule). sqrt(fx * fy) rather than fx: a stretch to another aspect ratio scales
fx and fy differently, and the geometric mean is the magnification averaged over directions (it
is fx for square pixels).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edgedepth.camera import CameraCalibration, PinholeIntrinsics
from edgedepth.errors import UsageError
from edgedepth.runtime.sources import Frame
from edgedepth.spec import ModelSpec

LOG = logging.getLogger(__name__)


def no_training_camera(model: str, what: str) -> UsageError:
    """The one-line refusal of ``what`` (an option) for a model whose spec has no training camera."""
    return UsageError(
        f"{what} needs the camera the model was trained with, and {model} does not record one (exported before "
        "edgedepth recorded intrinsics, or trained on a dataset without data.intrinsics): re-export it from a "
        "checkpoint trained with known intrinsics, or drop " + what
    )


def focal_factor(user: PinholeIntrinsics, train: PinholeIntrinsics) -> float:
    """``f_user / f_train`` (module docstring), both cameras taken at the user camera's image size."""
    return user.focal / train.scaled_to(user.width, user.height).focal


class DepthCamera:
    """The pinhole camera of each depth image: the ``--intrinsics`` camera scaled to the depth image
    (the model input) as frames are resized, else the training camera (the model's spec)."""

    def __init__(self, spec: ModelSpec, calibration: Optional[CameraCalibration] = None) -> None:
        self.spec = spec
        self.calibration = calibration
        self._cache: Dict[Tuple[Tuple[int, int], Tuple[int, int]], PinholeIntrinsics] = {}

    @property
    def known(self) -> bool:
        return self.calibration is not None or self.spec.intrinsics is not None

    def for_frame(self, frame: Frame, depth: np.ndarray) -> PinholeIntrinsics:
        """Intrinsics of ``depth`` (H x W) computed from ``frame``."""
        frame_size = (int(frame.image.shape[1]), int(frame.image.shape[0]))
        depth_size = (int(depth.shape[1]), int(depth.shape[0]))
        key = (frame_size, depth_size)
        if key not in self._cache:  # a camera that changes mode gets its new size's intrinsics
            self._cache[key] = self._compute(frame_size, depth_size)
        return self._cache[key]

    def _compute(self, frame_size: Tuple[int, int], depth_size: Tuple[int, int]) -> PinholeIntrinsics:
        if self.calibration is not None:
            size = self.calibration.size
            if size is not None and size != frame_size:
                LOG.warning("--intrinsics %s holds for %dx%d; scaled to the %dx%d frames", self.calibration.origin,
                            size[0], size[1], frame_size[0], frame_size[1])
            return self.calibration.at_size(*frame_size).scaled_to(*depth_size)
        if self.spec.intrinsics is None:
            raise no_training_camera("the model", "a point cloud or camera_info")
        return self.spec.intrinsics.scaled_to(*depth_size)


class FocalRescale:
    """Depth stage (edgedepth.runtime.pipeline.DepthStage): network depth x ``f_user / f_train``."""

    name = "focal_rescale"

    def __init__(self, camera: DepthCamera) -> None:
        if camera.calibration is None or camera.spec.intrinsics is None:
            raise no_training_camera("the model", "--intrinsics")
        self.camera = camera
        self.train = camera.spec.intrinsics
        self.factor: Optional[float] = None
        self.user: Optional[PinholeIntrinsics] = None

    def __call__(self, frame: Frame, depth: np.ndarray) -> np.ndarray:
        user = self.camera.for_frame(frame, depth)
        if user is not self.user:
            self.user, self.factor = user, focal_factor(user, self.train)
        assert self.factor is not None
        return depth * np.float32(self.factor)

    def summary(self) -> Dict[str, Any]:
        """The cameras and the factor applied (the last frame size's)."""
        return {
            "formula": "depth * f_user / f_train, f = sqrt(fx*fy) at the model input",
            "factor": self.factor,
            "train_intrinsics": self.train.to_dict(),
            "user_intrinsics": self.user.to_dict() if self.user is not None else None,
        }
