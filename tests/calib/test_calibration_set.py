"""The calibration set: sources, even sampling, held-out split, the shared preprocessing, saved sets."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgedepth.calib import calibration_set
from edgedepth.calib.calibration_set import (
    MIN_CALIBRATION_IMAGES,
    allocate,
    build_calibration_set,
    load_calibration_set,
    open_calibration_source,
    save_calibration_set,
    set_sidecar_path,
)
from edgedepth.calib.errors import CalibrationError
from edgedepth.preprocess import preprocess
from edgedepth.spec import ModelSpec

from calib_helpers import moving_frames, write_small_config
from media_helpers import write_video

SPEC = ModelSpec(height=64, width=96)


def _write_images(folder, frames, prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{prefix}{index:03d}.png"), frame)
    return folder


def _frame_index(batch_item: np.ndarray, spec: ModelSpec) -> int:
    """Undo the preprocessing of the blue channel to read the frame index back (RGB spec: channel 2)."""
    blue = batch_item[2].mean() * spec.std[2] + spec.mean[2]
    return int(round(blue * 255 / 5))


def test_allocate_shares_picks_evenly_and_gives_a_small_sources_rest_to_the_others():
    assert allocate([100, 100], 10) == [5, 5]
    assert allocate([3, 100, 100], 30) == [3, 14, 13] or allocate([3, 100, 100], 30) == [3, 13, 14]
    assert sum(allocate([2, 2], 10)) == 4


def test_folder_images_are_preprocessed_by_the_shared_preprocessing(tmp_path):
    frames = moving_frames(10)
    _write_images(tmp_path / "imgs", frames)
    cset = build_calibration_set(SPEC, [str(tmp_path / "imgs")], num_images=8, num_eval=2)
    assert cset.calibration.shape == (8, 3, 64, 96) and cset.held_out.shape == (2, 3, 64, 96)
    first = cset.calibration_names[0]
    expected = preprocess(cv2.imread(first), SPEC, input_order="BGR")[0]
    index = int(first[-7:-4])
    assert np.array_equal(cset.calibration[0], expected)
    assert _frame_index(cset.calibration[0], SPEC) == index


def test_held_out_images_are_never_calibration_images(tmp_path):
    _write_images(tmp_path / "imgs", moving_frames(40))
    cset = build_calibration_set(SPEC, [str(tmp_path / "imgs")], num_images=30, num_eval=10)
    assert len(cset.calibration) == 30 and len(cset.held_out) == 10
    assert not set(cset.calibration_names) & set(cset.held_out_names)
    held = sorted(int(name[-7:-4]) for name in cset.held_out_names)
    assert held[0] < 8 and held[-1] > 32  # interleaved across the source, not its tail


def test_video_frames_are_sampled_evenly_across_the_video(tmp_path):
    video = write_video(tmp_path / "clip.avi", moving_frames(50))
    cset = build_calibration_set(SPEC, [str(video)], num_images=5, num_eval=0)
    indices = [_frame_index(item, SPEC) for item in cset.calibration]
    assert indices == [5, 15, 25, 35, 45]
    assert cset.calibration_names[0] == "clip.avi#frame5"


def test_several_sources_are_covered_evenly(tmp_path):
    _write_images(tmp_path / "a", moving_frames(30), "a")
    _write_images(tmp_path / "b", moving_frames(6), "b")
    cset = build_calibration_set(SPEC, [str(tmp_path / "a"), str(tmp_path / "b")], num_images=12, num_eval=0)
    from_b = [name for name in cset.calibration_names if "/b/" in name]
    assert len(from_b) == 6 and len(cset.calibration) == 12


def test_dataset_config_source_reads_rgb_samples(tmp_path):
    config = write_small_config(tmp_path / "small.yaml", tmp_path / "synthetic", num_val=6)
    cset = build_calibration_set(SPEC, [str(config)], num_images=4, num_eval=2)
    assert cset.calibration.shape == (4, 3, 64, 96) and len(cset.held_out) == 2
    assert "split val" in cset.sources[0] and cset.calibration_names[0].startswith("synthetic/val/")
    from edgedepth.training.config import load_config
    from edgedepth.training.data import build_raw_dataset

    sample = build_raw_dataset(load_config(config).data, "val")[int(cset.calibration_names[0][-6:])]
    assert np.array_equal(cset.calibration[0], preprocess(sample["rgb"], SPEC, input_order="RGB")[0])


def test_a_shipped_config_name_is_a_dataset_source(monkeypatch):
    opened = []

    def fake_dataset_source(config, split):
        opened.append((config, split))
        return "source"

    monkeypatch.setattr(calibration_set, "DatasetSource", fake_dataset_source)
    assert open_calibration_source("demo", split="train") == "source"
    assert opened == [("demo", "train")]


def test_unknown_source_and_saved_set_give_clear_errors(tmp_path):
    with pytest.raises(CalibrationError, match="neither a folder"):
        open_calibration_source(str(tmp_path / "missing_dir"))
    (tmp_path / "set.npy").write_bytes(b"")
    with pytest.raises(CalibrationError, match="--load-set"):
        open_calibration_source(str(tmp_path / "set.npy"))


def test_zero_images_is_an_error_and_few_images_warn(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="found no calibration images"):
        build_calibration_set(SPEC, [str(tmp_path / "empty")])
    _write_images(tmp_path / "few", moving_frames(10))
    cset = build_calibration_set(SPEC, [str(tmp_path / "few")], num_images=500, num_eval=50)
    assert len(cset.calibration) < MIN_CALIBRATION_IMAGES
    assert any("calibration images" in warning for warning in cset.warnings)


def test_one_image_cannot_both_calibrate_and_check(tmp_path):
    _write_images(tmp_path / "one", moving_frames(1))
    with pytest.raises(CalibrationError, match="--eval-data"):
        build_calibration_set(SPEC, [str(tmp_path / "one")])


def test_unreadable_images_are_skipped_with_a_warning(tmp_path):
    folder = _write_images(tmp_path / "imgs", moving_frames(6))
    (folder / "broken.png").write_bytes(b"not a png")
    cset = build_calibration_set(SPEC, [str(folder)], num_images=10, num_eval=1)
    assert len(cset.calibration) + len(cset.held_out) == 6
    assert any("broken.png" in warning for warning in cset.warnings)


def test_eval_data_replaces_the_held_out_split(tmp_path):
    _write_images(tmp_path / "cal", moving_frames(12))
    _write_images(tmp_path / "eval", moving_frames(20), "e")
    cset = build_calibration_set(SPEC, [str(tmp_path / "cal")], num_images=12, num_eval=5,
                                 eval_sources=[str(tmp_path / "eval")])
    assert len(cset.calibration) == 12 and len(cset.held_out) == 5
    assert all("/eval/" in name for name in cset.held_out_names)


def test_saved_set_round_trips_and_is_refused_for_other_preprocessing(tmp_path):
    _write_images(tmp_path / "imgs", moving_frames(12))
    cset = build_calibration_set(SPEC, [str(tmp_path / "imgs")], num_images=9, num_eval=3)
    path = tmp_path / "calib.npy"
    save_calibration_set(path, cset, SPEC)
    loaded = load_calibration_set(path, SPEC)
    assert np.array_equal(loaded.calibration, cset.calibration) and np.array_equal(loaded.held_out, cset.held_out)
    assert loaded.calibration_names == cset.calibration_names
    other = SPEC.replace(mean=(0.5, 0.5, 0.5))
    assert other.preprocessing_key() != SPEC.preprocessing_key()
    with pytest.raises(CalibrationError, match="was preprocessed for 64x96 RGB mean"):
        load_calibration_set(path, other)
    with pytest.raises(CalibrationError, match="was preprocessed for"):
        load_calibration_set(path, SPEC.replace(height=96))


def test_saved_set_without_sidecar_or_modified_is_refused(tmp_path):
    _write_images(tmp_path / "imgs", moving_frames(6))
    cset = build_calibration_set(SPEC, [str(tmp_path / "imgs")], num_images=4, num_eval=2)
    path = tmp_path / "calib.npy"
    save_calibration_set(path, cset, SPEC)
    np.save(path, np.zeros((6, 3, 64, 96), np.float32))
    with pytest.raises(CalibrationError, match="changed after saving"):
        load_calibration_set(path, SPEC)
    set_sidecar_path(path).unlink()
    with pytest.raises(CalibrationError, match="preprocessing is unknown"):
        load_calibration_set(path, SPEC)
