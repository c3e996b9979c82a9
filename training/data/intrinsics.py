"""The camera a training run's network learns metric depth for, at the model's input size.

One place maps a dataset to its camera, then applies what the training data pipeline does to the
frames (a dataset's crop, then the stretch to ``data.height`` x ``data.width``:
training/data/augment.py, edgedepth.camera's pixel-centre rule), so the ModelSpec can record it
and depth-run can rescale metric depth for another camera (``--intrinsics``).

* ``synthetic``: the renderer's own camera (training/data/scene.py, NYU-like), rendered directly
  at the input size.
* ``nyu``: the Kinect colour camera of the NYU Depth v2 toolbox (camera_params.m: fx 518.857901,
  fy 519.469611, cx 325.582449, cy 253.736166 at 640x480). The toolbox is MATLAB and back-projects
  pixel ``(xx, yy)`` with ``meshgrid(1:640, 1:480)``, i.e. 1-based pixel indices, so the principal
  point in 0-based pixel coordinates is one pixel less. With ``data.border_crop`` the training
  frames lose the blank registration border first (rows 45:472, columns 43:608, BTS's box;
  training/data/nyu.py).
* ``kitti``: the rectified left colour camera P_rect_02 of the 2011_09_26 drives (the raw data's
  calib_cam_to_cam.txt: fx = fy = 721.5377, cx 609.5593, cy 172.854 at 1242x375), the usual fixed
  value for the Eigen split. Other days differ by up to 2% (2011_09_28/29/30: 718.856 or 707.0493
  on 2011_10_03): a model trained on them learns their mix; give ``data.intrinsics`` for one drive.
* ``folder``, ``diode`` (and any dataset, overriding the above): ``data.intrinsics`` =
  ``[fx, fy, cx, cy, width, height]`` at the dataset's image size (0-based pixel centres, as
  OpenCV and ROS). Unset: the spec records no camera, and depth-run refuses ``--intrinsics``.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from edgedepth.camera import PinholeIntrinsics
from edgedepth.errors import ConfigError


def _get(data_cfg: Any, name: str, default: Any) -> Any:
    """``data_cfg.get(name, default)``: the ``data:`` section as a dict or an OmegaConf node (this
    module stays importable without torch, unlike augment.read_field's module)."""
    return data_cfg.get(name, default)

#: NYU Depth v2 toolbox camera_params.m (1-based MATLAB pixels) moved to 0-based pixel centres.
NYU_KINECT_RGB = PinholeIntrinsics(518.857901, 519.469611, 325.582449 - 1.0, 253.736166 - 1.0, 640, 480)
#: NYU training border crop at 640x480: (left, top, width, height) of rows 45:472, columns 43:608.
NYU_BORDER_CROP = (43, 45, 608 - 43, 472 - 45)
#: KITTI raw 2011_09_26 calib_cam_to_cam.txt P_rect_02 / S_rect_02.
KITTI_2011_09_26 = PinholeIntrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)


def dataset_camera(data_cfg: Any) -> Optional[PinholeIntrinsics]:
    """The camera of the dataset's training frames at their own size (after its crop), or None."""
    name = str(_get(data_cfg, "dataset", "synthetic"))
    configured = configured_intrinsics(data_cfg)
    if name == "synthetic":
        if configured is not None:
            raise ConfigError("data.intrinsics is set but data.dataset=synthetic renders with its own camera "
                              "(training/data/scene.py): unset data.intrinsics")
        return synthetic_camera(int(_get(data_cfg, "height", 96)), int(_get(data_cfg, "width", 128)))
    if configured is not None:
        return configured
    if name == "nyu":
        if bool(_get(data_cfg, "border_crop", False)):
            return NYU_KINECT_RGB.cropped(*NYU_BORDER_CROP)
        return NYU_KINECT_RGB
    if name == "kitti":
        return KITTI_2011_09_26
    return None


def training_intrinsics(data_cfg: Any) -> Optional[PinholeIntrinsics]:
    """The camera as the network sees it: the dataset's, stretched to ``data.width`` x ``data.height``."""
    camera = dataset_camera(data_cfg)
    if camera is None:
        return None
    return camera.scaled_to(int(_get(data_cfg, "width", 128)), int(_get(data_cfg, "height", 96)))


def synthetic_camera(height: int, width: int) -> PinholeIntrinsics:
    """The synthetic renderer's camera at ``height`` x ``width`` (what camera_rays uses)."""
    from edgedepth.training.data.scene import Camera

    return Camera(position=(0.0, 0.0, 0.0)).pinhole(height, width)


def configured_intrinsics(data_cfg: Any) -> Optional[PinholeIntrinsics]:
    """``data.intrinsics`` as a camera, or None when unset; ConfigError when it is not one."""
    values = _get(data_cfg, "intrinsics", None)
    if values is None:
        return None
    values = list(values)
    numbers = len(values) == 6 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numbers or not all(math.isfinite(v) for v in values) or min(values[0], values[1]) <= 0 or \
            any(v != int(v) or v < 1 for v in values[4:]):
        raise ConfigError(f"data.intrinsics={values} is not a camera: expected [fx, fy, cx, cy, width, height] in "
                          "pixels at the dataset's image size, fx and fy > 0, width and height whole numbers")
    fx, fy, cx, cy = (float(v) for v in values[:4])
    return PinholeIntrinsics(fx, fy, cx, cy, int(values[4]), int(values[5]))
