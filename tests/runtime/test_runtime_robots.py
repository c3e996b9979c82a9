"""depth-run for robots (issue 16): --intrinsics, --save-points (PLY) and --record (ROS 2 MCAP), read
back with an independent reader (rosbags) and checked against the saved depth."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from edgedepth.camera import PinholeIntrinsics
from edgedepth.preprocess import preprocess
from edgedepth.runtime import open_backend
from edgedepth.runtime.cli import run_main

#: The tiny model's training camera at its 96x64 input.
TRAIN_CAMERA = PinholeIntrinsics(80.0, 78.0, 47.5, 31.5, 96, 64)
#: The user's camera at the 320x240 frames of the test images.
USER = (300.0, 290.0, 161.0, 118.0)


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def read_ply(path: Path) -> np.ndarray:
    """The vertices of a binary little-endian PLY as a structured array (parsed from its header)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    count = next(int(line.split()[2]) for line in lines if line.startswith("element vertex"))
    kinds = {"float": "<f4", "uchar": "u1"}
    fields = [(line.split()[2], kinds[line.split()[1]]) for line in lines if line.startswith("property")]
    vertices = np.frombuffer(data[end:], dtype=np.dtype(fields))
    assert len(vertices) == count
    return vertices


def read_mcap(path: Path) -> Dict[str, List[Tuple[int, object]]]:
    """Topic -> [(log time, message)] decoded by rosbags, which shares no code with the writer."""
    from rosbags.highlevel import AnyReader

    topics: Dict[str, List[Tuple[int, object]]] = {}
    with AnyReader([path]) as reader:
        for connection, timestamp, raw in reader.messages():
            topics.setdefault(connection.topic, []).append((timestamp, reader.deserialize(raw, connection.msgtype)))
    return topics


def image_folder(folder: Path, frames) -> Path:
    folder.mkdir()
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"view{index}.png"), frame)
    return folder


def expected_points(depth: np.ndarray, camera: PinholeIntrinsics) -> np.ndarray:
    """Back-projection written out independently: pixel (u, v) with depth z -> ((u-cx)z/fx, (v-cy)z/fy, z)."""
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    return np.stack([(u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z], axis=1)


def test_image_folder_with_intrinsics_depth_points_and_recording_agree(tiny_model_factory, make_frames, tmp_path):
    """The issue's first "done when": one message per topic per frame, CameraInfo K = the intrinsics
    scaled to the depth image, PointCloud2 and PLY points back-project the saved depth (z within 1 mm)."""
    pytest.importorskip("rosbags")
    model = tiny_model_factory("cam.onnx", intrinsics=TRAIN_CAMERA)
    frames = make_frames(3, 320, 240)
    images = image_folder(tmp_path / "images", frames)
    calibration = tmp_path / "camera.yaml"
    calibration.write_text(  # a ROS camera_calibration file, at the capture resolution
        "image_width: 320\nimage_height: 240\ncamera_name: test\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
        f"  data: [{USER[0]}, 0, {USER[2]}, 0, {USER[1]}, {USER[3]}, 0, 0, 1]\n"
        "distortion_model: plumb_bob\ndistortion_coefficients:\n  rows: 1\n  cols: 5\n  data: [0, 0, 0, 0, 0]\n")
    depth_dir, points_dir, record, stats = (tmp_path / "depth", tmp_path / "points", tmp_path / "run.mcap",
                                            tmp_path / "stats.json")
    code = run_main(["--model", str(model.path), "--input", str(images), "--no-display", "--quiet",
                     "--intrinsics", str(calibration), "--save-depth", str(depth_dir), "--depth-format", "npy",
                     "--save-points", str(points_dir), "--record", str(record), "--stats-json", str(stats),
                     "--frame-id", "cam_optical"])
    assert code == 0

    # The user's camera as the depth image (the 96x64 model input) sees it: pixel centres by OpenCV's rule.
    sx, sy = 96 / 320, 64 / 240
    camera = PinholeIntrinsics(USER[0] * sx, USER[1] * sy, (USER[2] + 0.5) * sx - 0.5, (USER[3] + 0.5) * sy - 0.5,
                               96, 64)
    factor = np.sqrt(camera.fx * camera.fy / (TRAIN_CAMERA.fx * TRAIN_CAMERA.fy))
    report = json.loads(stats.read_text())
    assert report["focal_rescale"]["factor"] == pytest.approx(factor, rel=1e-9)

    names = [f"view{index}" for index in range(3)]
    saved = {name: np.load(depth_dir / f"{name}.npy") for name in names}
    with open_backend(str(model.path)) as backend:  # the saved depth is the network's, rescaled
        for name, frame in zip(names, frames):
            network = backend.infer(preprocess(frame, backend.spec))[0, 0]
            assert np.allclose(saved[name], network * factor, rtol=1e-6)

    for name, frame in zip(names, frames):  # PLY: every valid pixel, exactly where the depth puts it
        vertices = read_ply(points_dir / f"{name}.ply")
        xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1).astype(np.float64)
        assert xyz.shape[0] == (saved[name] > 0).sum() == 96 * 64
        assert np.abs(xyz - expected_points(saved[name], camera)).max() < 1e-3
        colour = cv2.resize(frame, (96, 64), interpolation=cv2.INTER_LINEAR)[..., ::-1].reshape(-1, 3)
        assert np.array_equal(np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1), colour)

    topics = read_mcap(record)
    assert sorted(topics) == ["/edgedepth/camera_info", "/edgedepth/depth", "/edgedepth/image", "/edgedepth/points"]
    assert all(len(messages) == 3 for messages in topics.values())
    stamps = [time for time, _ in topics["/edgedepth/depth"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # an image folder: monotonic synthetic time
    for index, name in enumerate(names):
        depth_msg = topics["/edgedepth/depth"][index][1]
        info = topics["/edgedepth/camera_info"][index][1]
        cloud = topics["/edgedepth/points"][index][1]
        image = topics["/edgedepth/image"][index][1]
        assert depth_msg.encoding == "32FC1" and (depth_msg.height, depth_msg.width) == (64, 96)
        published = np.frombuffer(bytes(depth_msg.data), dtype="<f4").reshape(64, 96)
        assert np.array_equal(published, saved[name])
        assert (info.height, info.width) == (64, 96) and info.distortion_model == "plumb_bob"
        assert np.allclose(info.k, camera.matrix(), rtol=1e-12) and not np.any(info.d)
        assert np.allclose(info.p, [camera.fx, 0, camera.cx, 0, 0, camera.fy, camera.cy, 0, 0, 0, 1, 0])
        assert image.encoding == "bgr8" and (image.height, image.width) == (64, 96)
        heads = [depth_msg.header, info.header, cloud.header, image.header]
        assert {head.frame_id for head in heads} == {"cam_optical"}
        assert len({(head.stamp.sec, head.stamp.nanosec) for head in heads}) == 1
        assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)]
        xyz = np.frombuffer(bytes(cloud.data), dtype="<f4").reshape(-1, 3).astype(np.float64)
        assert cloud.point_step == 12 and cloud.is_dense and xyz.shape[0] == cloud.width == 96 * 64
        assert np.abs(xyz - expected_points(saved[name], camera)).max() < 1e-3


def test_robot_options_that_cannot_work_are_refused_before_any_work(tiny_model, tiny_model_factory, make_frames,
                                                                    tmp_path, capsys):
    """One line and exit 2 each, nothing written: a model without a training camera given --intrinsics or
    asked for points, a recording that is no .mcap, points into the input folder, a calibration overwritten."""
    images = image_folder(tmp_path / "images", make_frames(2, 160, 120))
    camera_model = tiny_model_factory("cam.onnx", intrinsics=TRAIN_CAMERA)
    calibration = tmp_path / "cam.yaml"
    calibration.write_text("k: [300, 0, 160, 0, 300, 120, 0, 0, 1]\nwidth: 160\nheight: 120\n")
    plain = ["--model", str(tiny_model.path), "--input", str(images), "--no-display"]
    with_camera = ["--model", str(camera_model.path), "--input", str(images), "--no-display"]
    cases = [
        (plain + ["--intrinsics", "300,300,80,60"], "--intrinsics needs the camera the model was trained with"),
        (plain + ["--save-points", str(tmp_path / "p")], "--save-points needs the camera's intrinsics"),
        (plain + ["--record", str(tmp_path / "r.mcap")], "--record needs the camera's intrinsics"),
        (with_camera + ["--record", str(tmp_path / "r.bag")], "--record"),
        (with_camera + ["--save-points", str(images)], "--save-points"),
        (with_camera + ["--intrinsics", "300,300"], "--intrinsics '300,300' is neither a file nor fx,fy,cx,cy"),
        (with_camera + ["--intrinsics", str(calibration), "--stats-json", str(calibration)], "--stats-json"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert run_main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("depth-run: error: ") and message in err[0], (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.onnx", "cam.yaml", "images", "tiny.onnx"]
    assert sorted(p.name for p in images.iterdir()) == ["view0.png", "view1.png"]


def test_without_intrinsics_points_use_the_training_camera(tiny_model_factory, make_frames, tmp_path):
    """No --intrinsics: the camera is taken to be the training camera (no rescale), and the points use it."""
    model = tiny_model_factory("cam.onnx", intrinsics=TRAIN_CAMERA)
    images = image_folder(tmp_path / "images", make_frames(1, 160, 120))
    assert run_main(["--model", str(model.path), "--input", str(images), "--no-display", "--quiet", "--save-depth",
                     str(tmp_path / "d"), "--depth-format", "npy", "--save-points", str(tmp_path / "p"),
                     "--points-stride", "3", "--no-points-color"]) == 0
    depth = np.load(tmp_path / "d" / "view0.npy")
    vertices = read_ply(tmp_path / "p" / "view0.ply")
    assert vertices.dtype.names == ("x", "y", "z") and len(vertices) == 22 * 32  # every 3rd pixel of 64x96
    xyz = np.stack([vertices[name] for name in "xyz"], axis=1).astype(np.float64)
    strided = np.zeros_like(depth)
    strided[::3, ::3] = depth[::3, ::3]
    assert np.abs(xyz - expected_points(strided, TRAIN_CAMERA)).max() < 1e-4
