"""The pinhole camera model (edgedepth.camera) and the training camera in the ModelSpec."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgedepth.camera import CameraCalibration, PinholeIntrinsics, is_number, parse_intrinsics
from edgedepth.errors import SpecError, UsageError
from edgedepth.spec import ModelSpec

NYU = PinholeIntrinsics(518.857901, 519.469611, 325.582449, 253.736166, 640, 480)


def test_scaling_follows_the_image_content_as_cv2_resize_moves_it():
    """Resize an image whose pixels hold their own source coordinates (a ramp) as the runtime does
    (INTER_LINEAR): at the scaled principal point the resized image shows the source principal point."""
    camera = PinholeIntrinsics(500.0, 510.0, 301.3, 203.7, 640, 480)
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
    for width, height in ((160, 120), (96, 64), (1280, 960)):
        scaled = camera.scaled_to(width, height)
        small_x = cv2.resize(xs, (width, height), interpolation=cv2.INTER_LINEAR)[0]
        small_y = cv2.resize(ys, (width, height), interpolation=cv2.INTER_LINEAR)[:, 0]
        assert np.interp(scaled.cx, np.arange(width), small_x) == pytest.approx(camera.cx, abs=1e-3)
        assert np.interp(scaled.cy, np.arange(height), small_y) == pytest.approx(camera.cy, abs=1e-3)
        assert scaled.fx == pytest.approx(500.0 * width / 640) and scaled.size == (width, height)
    # Scaling twice equals scaling once.
    twice = camera.scaled_to(320, 240).scaled_to(160, 120)
    assert np.allclose(list(twice.to_dict().values()), list(camera.scaled_to(160, 120).to_dict().values()),
                       rtol=1e-12)


def test_crop_moves_the_principal_point_and_refuses_a_window_outside():
    crop = NYU.cropped(16, 12, 608, 456)
    assert (crop.cx, crop.cy, crop.fx, crop.size) == (NYU.cx - 16, NYU.cy - 12, NYU.fx, (608, 456))
    with pytest.raises(SpecError, match="does not fit"):
        NYU.cropped(40, 0, 640, 480)


@pytest.mark.parametrize("values", [(0, 1, 1, 1), (1, -2, 1, 1), (float("nan"), 1, 1, 1)])
def test_a_camera_without_positive_finite_focal_lengths_is_refused(values):
    with pytest.raises(SpecError, match="camera intrinsics"):
        PinholeIntrinsics(*values, 64, 64)


def test_fx_fy_cx_cy_holds_at_the_frames_size():
    calibration = parse_intrinsics("600, 610,319.5,239.5")
    assert calibration.size is None
    assert calibration.at_size(640, 480) == PinholeIntrinsics(600.0, 610.0, 319.5, 239.5, 640, 480)


@pytest.mark.parametrize("text", ["600,600,320", "a,b,c,d", "nofile.yaml", "0,600,320,240", "600,600,inf,240"])
def test_intrinsics_text_that_is_neither_a_file_nor_four_numbers_is_one_usage_error(text):
    with pytest.raises(UsageError, match="--intrinsics") as info:
        parse_intrinsics(text)
    assert "\n" not in str(info.value)


OPENCV_YAML = """%YAML:1.0
---
calibration_time: "Sat 05 Dec 2026"
image_width: 1280
image_height: 720
camera_matrix: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 9.1e+02, 0., 6.41e+02, 0., 9.05e+02, 3.62e+02, 0., 0., 1. ]
distortion_coefficients: !!opencv-matrix
   rows: 1
   cols: 5
   dt: d
   data: [ 0.1, -0.2, 0., 0., 0. ]
"""
ROS_YAML = """image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [518.857901, 0, 325.582449, 0, 519.469611, 253.736166, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [0, 0, 0, 0, 0]
projection_matrix:
  rows: 3
  cols: 4
  data: [518.857901, 0, 325.582449, 0, 0, 519.469611, 253.736166, 0, 0, 0, 1, 0]
"""
CAMERA_INFO_ECHO = """header:
  stamp:
    sec: 1
    nanosec: 0
  frame_id: camera_color_optical_frame
height: 480
width: 640
distortion_model: plumb_bob
d: [0.0, 0.0, 0.0, 0.0, 0.0]
k: [518.857901, 0.0, 325.582449, 0.0, 519.469611, 253.736166, 0.0, 0.0, 1.0]
"""


def test_opencv_filestorage_yaml_is_read(tmp_path):
    path = tmp_path / "cam.yml"
    path.write_text(OPENCV_YAML)
    # The file as cv2.FileStorage itself reads it: the same matrix.
    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    matrix = storage.getNode("camera_matrix").mat()
    storage.release()
    calibration = parse_intrinsics(str(path))
    assert calibration.size == (1280, 720)
    assert (calibration.fx, calibration.fy, calibration.cx, calibration.cy) == (
        matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2])


@pytest.mark.parametrize("text", [ROS_YAML, CAMERA_INFO_ECHO])
def test_ros_calibration_and_echoed_camera_info_are_read(tmp_path, text):
    path = tmp_path / "cam.yaml"
    path.write_text(text)
    assert parse_intrinsics(str(path)).at_size(640, 480) == NYU


@pytest.mark.parametrize("text", ["just text", "camera_matrix: {rows: 3, cols: 3, data: [1, 2]}\nimage_width: 4\n"
                                  "image_height: 4\n", "k: [1,0,1,0,1,1,0,0,1]\nwidth: 0\nheight: 4\n", "a: [b\n"])
def test_a_yaml_that_is_no_calibration_is_one_usage_error(tmp_path, text):
    path = tmp_path / "cam.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=str(path)) as info:
        parse_intrinsics(str(path))
    assert "\n" not in str(info.value)


def test_a_calibration_scales_to_a_frame_of_its_aspect_ratio_and_refuses_another():
    calibration = CameraCalibration(600.0, 600.0, 639.5, 359.5, size=(1280, 720), origin="cam.yaml")
    assert calibration.at_size(640, 360) == PinholeIntrinsics(600.0, 600.0, 639.5, 359.5, 1280, 720).scaled_to(640, 360)
    with pytest.raises(UsageError, match="another aspect ratio"):
        calibration.at_size(640, 480)


def test_the_spec_carries_the_training_camera_through_json_and_a_resize():
    spec = ModelSpec(height=480, width=640, intrinsics=NYU)
    again = ModelSpec.from_json(spec.to_json())
    assert again.intrinsics == NYU and again.depth_kind == "metric" and again == spec
    resized = spec.replace(height=256, width=320)  # the export size: the camera as the network sees it there
    assert resized.intrinsics == NYU.scaled_to(320, 256)
    # An older spec (no intrinsics, no depth_kind) still loads.
    old = {key: value for key, value in spec.to_dict().items() if key not in ("intrinsics", "depth_kind")}
    assert ModelSpec.from_dict(old).intrinsics is None


@pytest.mark.parametrize("change, message", [
    ({"intrinsics": {"fx": 1}}, "exactly"),
    ({"intrinsics": {"fx": "a", "fy": 1, "cx": 1, "cy": 1, "width": 640, "height": 480}}, "field fx"),
    ({"intrinsics": {"fx": 1, "fy": 1, "cx": 1, "cy": 1, "width": 320, "height": 240}}, "are for 320x240"),
    ({"depth_kind": "relative"}, "depth_kind"),
    ({"depth_kind": 3}, "depth_kind"),
])
def test_a_hand_edited_camera_in_a_spec_is_one_spec_error(change, message):
    data = {**ModelSpec(height=480, width=640, intrinsics=NYU).to_dict(), **change}
    with pytest.raises(SpecError, match=message) as info:
        ModelSpec.from_json(json.dumps(data))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("values", [(float("nan"), 600.0, 320.0, 240.0), (600.0, 600.0, float("inf"), 240.0),
                                    (0.0, 600.0, 320.0, 240.0)])
def test_a_calibration_that_is_no_camera_is_refused_however_it_was_made(values):
    # A file, fx,fy,cx,cy and a CameraInfo topic all build a CameraCalibration: the check is there.
    with pytest.raises(UsageError, match="not a camera"):
        CameraCalibration(*values, size=(640, 480), origin="cam.yaml")


def test_numpy_numbers_are_numbers_in_a_camera_and_a_spec():
    # A spec or calibration written from numpy values (np.float32 focal lengths) reads back.
    data = {"fx": np.float32(600.0), "fy": np.float64(600.0), "cx": 319.5, "cy": 239.5, "width": 640, "height": 480}
    assert PinholeIntrinsics.from_dict(data).fx == 600.0
    assert not is_number(True) and is_number(np.float32(1.5)) and is_number(3)
