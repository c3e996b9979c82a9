"""The training camera a run records in its ModelSpec (training/data/intrinsics.py)."""
from __future__ import annotations

import numpy as np
import pytest

from edgedepth.camera import PinholeIntrinsics
from edgedepth.errors import ConfigError
from edgedepth.training.config import load_config, spec_from_config
from edgedepth.training.data.intrinsics import (
    KITTI_2011_09_26,
    NYU_BORDER_CROP,
    NYU_KINECT_RGB,
    dataset_camera,
    training_intrinsics,
)
from edgedepth.training.data.render import camera_rays
from edgedepth.training.data.scene import Camera


def test_a_synthetic_run_records_the_camera_the_renderer_casts_its_rays_with():
    spec = spec_from_config(load_config(None, ["data.height=64", "data.width=96"]))
    camera = spec.intrinsics
    assert camera is not None and camera.size == (96, 64) and spec.depth_kind == "metric"
    # The renderer's ray through pixel (u, v) has camera-frame direction ((u - cx)/fx, (v - cy)/fy, 1).
    _, dirs = camera_rays(Camera(position=(0.0, 0.0, 0.0)), 64, 96)
    local = dirs @ Camera(position=(0.0, 0.0, 0.0)).rotation()  # world -> camera frame
    v, u = np.mgrid[0:64, 0:96]
    assert np.allclose(local[:, 0], ((u - camera.cx) / camera.fx).ravel())
    assert np.allclose(local[:, 1], ((v - camera.cy) / camera.fy).ravel())


def test_nyu_uses_the_toolbox_camera_in_0_based_pixels_and_its_border_crop():
    data = {"dataset": "nyu", "height": 224, "width": 288}
    assert dataset_camera(data) == NYU_KINECT_RGB
    assert (NYU_KINECT_RGB.cx, NYU_KINECT_RGB.cy) == pytest.approx((324.582449, 252.736166))
    cropped = dataset_camera({**data, "border_crop": True})
    assert cropped == NYU_KINECT_RGB.cropped(43, 45, 565, 427)
    assert training_intrinsics({**data, "border_crop": True}) == cropped.scaled_to(288, 224)


def test_the_nyu_crop_box_is_the_one_the_dataset_applies():
    nyu = pytest.importorskip("edgedepth.training.data.nyu")
    if not hasattr(nyu, "border_crop"):
        pytest.skip("training/data/nyu.py has no border crop in this tree")
    rows, cols = np.mgrid[0:480, 0:640]
    kept_rows, kept_cols = nyu.border_crop(rows), nyu.border_crop(cols)
    left, top, width, height = NYU_BORDER_CROP
    assert (kept_cols[0, 0], kept_rows[0, 0], kept_cols.shape[1], kept_rows.shape[0]) == (left, top, width, height)


def test_kitti_folder_and_configured_cameras():
    kitti = {"dataset": "kitti", "height": 128, "width": 416}
    assert training_intrinsics(kitti) == KITTI_2011_09_26.scaled_to(416, 128)
    assert training_intrinsics({"dataset": "folder", "height": 96, "width": 128}) is None
    given = {"dataset": "folder", "height": 96, "width": 128, "intrinsics": [500.0, 500.0, 319.5, 239.5, 640, 480]}
    assert training_intrinsics(given) == PinholeIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480).scaled_to(128, 96)
    diode = ["data.dataset=diode", "data.intrinsics=[886.81,886.81,512,384,1024,768]"]
    spec = spec_from_config(load_config(None, diode))
    assert spec.intrinsics == PinholeIntrinsics(886.81, 886.81, 512.0, 384.0, 1024, 768).scaled_to(128, 96)


@pytest.mark.parametrize("data", [
    {"dataset": "folder", "intrinsics": [500.0, 500.0, 320.0, 240.0]},
    {"dataset": "folder", "intrinsics": [0.0, 500.0, 320.0, 240.0, 640, 480]},
    {"dataset": "folder", "intrinsics": [500.0, 500.0, 320.0, 240.0, 640.5, 480]},
    {"dataset": "synthetic", "intrinsics": [500.0, 500.0, 320.0, 240.0, 640, 480]},
])
def test_a_configured_camera_that_is_none_is_a_config_error(data):
    with pytest.raises(ConfigError, match="data.intrinsics"):
        training_intrinsics({"height": 96, "width": 128, **data})
