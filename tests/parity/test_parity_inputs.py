"""Parity inputs: the built-in set is deterministic and structured; files are sampled evenly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgedepth.parity.artifacts import ParityUsageError
from edgedepth.parity.inputs import builtin_images, image_inputs


def test_builtin_set_is_deterministic_structured_and_not_only_noise():
    pytest.importorskip("torch")  # the rooms come from the training package's renderer
    first, second = builtin_images(64, 96), builtin_images(64, 96)
    assert list(first) == list(second)
    assert all(np.array_equal(first[name][1], second[name][1]) for name in first)
    groups = {name: group for name, (group, _) in first.items()}
    assert sum(group == "scene" for group in groups.values()) >= 4
    assert {"gradient", "checkerboard_8", "edges", "saturated_white", "saturated_black", "noise"} <= set(groups)
    for name, (_, image) in first.items():
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8, name
    assert first["saturated_white"][1].min() == 255 and first["saturated_black"][1].max() == 0
    # Scenes and patterns are smooth where noise is not: neighbouring pixels agree far more often.
    def roughness(image):
        return float(np.abs(np.diff(image.astype(np.int16), axis=1)).mean())
    assert roughness(first["room_0"][1]) < roughness(first["noise"][1]) / 4


def test_builtin_set_scales_to_the_model_size():
    pytest.importorskip("torch")
    images = builtin_images(96, 128)
    assert all(image.shape == (96, 128, 3) for _, image in images.values())


def test_video_frames_are_sampled_evenly(tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    assert writer.isOpened()
    for index in range(20):
        writer.write(np.full((64, 96, 3), index * 12, np.uint8))
    writer.release()
    inputs = image_inputs(str(path), max_images=4)
    items = list(inputs)
    assert inputs.count == 4 and [item.name for item in items] == [f"clip.mp4#frame{i}" for i in (2, 7, 12, 17)]
    assert all(item.input_order == "BGR" and item.group == "scene" for item in items)
    brightness = [int(item.image.mean()) for item in items]
    assert brightness == sorted(brightness) and brightness[-1] - brightness[0] > 100


def test_folder_of_images_and_errors(tmp_path):
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"f{index}.png"), np.full((40, 60, 3), 50 * index, np.uint8))
    assert [item.name for item in image_inputs(str(tmp_path))] == ["f0.png", "f1.png", "f2.png"]
    with pytest.raises(ParityUsageError, match="neither a folder"):
        image_inputs(str(tmp_path / "missing"))
    with pytest.raises(ParityUsageError, match="no readable image"):
        image_inputs(str(tmp_path / "*.jpg"))
