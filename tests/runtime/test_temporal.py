"""Temporal stability (runtime/temporal.py): flicker on a static clip, no lag on motion, a steady scale.

The clip is one synthetic room seen by a still camera; each frame's "prediction" is its ground
truth times a per-frame global factor and per-pixel log-normal noise (what a network does frame
to frame on a still scene: the same answer, jittered), and each image is the room's rendering plus
+-2 grey levels of sensor noise.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgedepth.errors import UsageError
from edgedepth.metrics import compute_depth_metrics
from edgedepth.runtime.align import SparseAlignment
from edgedepth.runtime.sources import Frame
from edgedepth.runtime.sparse import SparseDepthReader, simulate_sparse
from edgedepth.runtime.temporal import ScaleKalman, TemporalDepthFilter, flicker, grey_on_grid, static_mask
from edgedepth.training.data.render import render_scene

FRAMES = 30


@pytest.fixture(scope="module")
def still_room():
    rgb, gt, valid = render_scene(3, 96, 128, 0.1, 10.0)
    return rgb[:, :, ::-1].copy(), gt, valid


def noisy_clip(bgr, gt, seed=0, global_std=0.02, pixel_std=0.03):
    rng = np.random.default_rng(seed)
    for index in range(FRAMES):
        image = np.clip(bgr.astype(np.int16) + rng.integers(-2, 3, bgr.shape), 0, 255).astype(np.uint8)
        factor = math.exp(rng.normal(0.0, global_std))
        depth = (gt * factor * np.exp(rng.normal(0.0, pixel_std, gt.shape))).astype(np.float32)
        yield Frame(index, image, 0.0, 0.0), depth


def abs_rel(pred, gt, valid):
    return compute_depth_metrics(pred, gt, valid, min_depth=0.1, max_depth=10.0)["abs_rel"]


def test_smoothing_lowers_flicker_on_a_static_clip_without_raising_abs_rel(still_room):
    bgr, gt, valid = still_room
    stage = TemporalDepthFilter(alpha=0.3)
    raw_errors, filtered_errors = [], []
    for frame, depth in noisy_clip(bgr, gt):
        out = stage(frame, depth)
        if frame.index >= 5:  # past the filter's start-up
            raw_errors.append(abs_rel(depth, gt, valid))
            filtered_errors.append(abs_rel(out, gt, valid))
    summary = stage.summary()
    assert summary["flicker_frames"] == FRAMES - 1 and summary["static_fraction"] > 0.99
    assert summary["flicker_filtered"] < 0.5 * summary["flicker_raw"], summary
    assert np.mean(filtered_errors) <= np.mean(raw_errors), (np.mean(filtered_errors), np.mean(raw_errors))


def test_alpha_one_is_the_identity_and_the_flicker_figures_agree(still_room):
    """Both figures use the same static pixels: with no smoothing they are equal."""
    bgr, gt, _ = still_room
    stage = TemporalDepthFilter(alpha=1.0)
    for frame, depth in noisy_clip(bgr, gt):
        np.testing.assert_allclose(stage(frame, depth), depth, rtol=1e-5)
    summary = stage.summary()
    assert summary["flicker_filtered"] == pytest.approx(summary["flicker_raw"], rel=1e-4)
    assert summary["flicker_raw"] > 0.02


@pytest.mark.parametrize("step", [0.8, 1.2, 0.5, 2.0])
def test_a_depth_step_on_a_still_image_is_followed_at_once(still_room, step):
    """A real change of depth (beyond the 15% threshold) takes the new value in the same frame."""
    bgr, gt, _ = still_room
    stage = TemporalDepthFilter(alpha=0.2)
    for index in range(10):
        stage(Frame(index, bgr, 0.0, 0.0), gt)
    moved = (gt * step).astype(np.float32)
    out = stage(Frame(10, bgr, 0.0, 0.0), moved)
    np.testing.assert_allclose(out, moved, rtol=1e-4)


def test_a_moving_object_is_followed_where_the_image_changed(still_room):
    """An object comes 5% closer in one region and the image changes there: that region follows at
    once (the image says it moved), the rest keeps its smoothed value."""
    bgr, gt, _ = still_room
    stage = TemporalDepthFilter(alpha=0.2)
    for index in range(10):
        stage(Frame(index, bgr, 0.0, 0.0), gt)
    image, moved = bgr.copy(), gt.copy()
    # Every channel moved by 128 (mod 256): the grey level changes by at least 22 whatever the colour.
    image[30:60, 40:80] += np.uint8(128)
    moved[30:60, 40:80] *= 0.95
    out = stage(Frame(10, image, 0.0, 0.0), moved)
    np.testing.assert_allclose(out[30:60, 40:80], moved[30:60, 40:80], rtol=1e-4)
    # The same 5% change with a still image is noise-sized: smoothed, not followed at once.
    still = TemporalDepthFilter(alpha=0.2)
    for index in range(10):
        still(Frame(index, bgr, 0.0, 0.0), gt)
    out = still(Frame(10, bgr, 0.0, 0.0), moved)
    assert np.abs(out[30:60, 40:80] / gt[30:60, 40:80] - 1).mean() < 0.02


def test_static_pixels_and_flicker_are_defined_on_the_depth_grid():
    grey = grey_on_grid(np.full((480, 640, 3), 100, np.uint8), (96, 128))
    assert grey.shape == (96, 128) and grey.dtype == np.float32
    changed = grey.copy()
    changed[0, 0] += 7
    static = static_mask(grey, changed, 6.0)
    assert not static[0, 0] and static.sum() == 96 * 128 - 1
    previous, depth = np.full((2, 2), 2.0), np.array([[2.2, 2.0], [1.0, np.nan]])
    assert flicker(previous, depth, np.array([[True, True], [False, True]])) == pytest.approx(0.05)
    assert flicker(previous, depth, np.zeros((2, 2), bool)) is None


def test_bad_alpha_is_a_usage_error():
    for alpha in (0.0, 1.5, -0.1):
        with pytest.raises(UsageError, match="0 < ALPHA <= 1"):
            TemporalDepthFilter(alpha)


def test_scale_kalman_steadies_noise_ignores_one_outlier_and_follows_a_jump():
    rng = np.random.default_rng(0)
    kalman = ScaleKalman(process_std=0.005)
    measured = rng.normal(0.0, 0.03, 40)
    filtered = [kalman.update(float(m), 0.03**2) for m in measured]
    assert np.std(filtered[10:]) < 0.4 * np.std(measured[10:])
    state = filtered[-1]
    assert kalman.update(-0.5, 0.03**2) == state  # one wild frame: gated
    jump = math.log(1.3)
    kalman.update(jump, 0.03**2)
    after = kalman.update(jump, 0.03**2)
    assert after is not None and after == pytest.approx(jump, abs=1e-9)  # two frames on the same side: followed
    assert kalman.summary()["restarts"] == 1 and kalman.summary()["gated"] >= 2
    assert kalman.update(None, math.inf) == after  # no measurement: the state carries over


def test_alignment_with_the_scale_filter_is_steadier(still_room, tmp_path):
    """Few sparse points that differ frame to frame (0.2%, 8% noise each) on a prediction whose
    scale does not change: the filtered scale varies far less than the per-frame fits, and the
    aligned depth is no worse."""
    bgr, gt, valid = still_room
    rng = np.random.default_rng(1)
    for index in range(FRAMES):
        sparse = simulate_sparse(gt, 0.002, "uniform", rng)
        noisy = np.where(sparse > 0, sparse * np.exp(rng.normal(0, 0.08, gt.shape)), 0)
        np.save(tmp_path / f"{index:06d}.npy", noisy.astype(np.float32))
    errors = {}
    scales = {}
    for name, scale_filter in (("raw", None), ("filtered", ScaleKalman(process_std=0.005))):
        stage = SparseAlignment(SparseDepthReader(str(tmp_path), "index"), "scale", 0.1, 10.0, scale_filter)
        clip = noisy_clip(bgr, gt * 1.5, 2, global_std=0.0)
        errors[name] = [abs_rel(stage(frame, depth), gt, valid) for frame, depth in clip]
        scales[name] = [r["scale"] for r in stage.summary()["per_frame"]]
    assert np.std(scales["filtered"][5:]) < 0.5 * np.std(scales["raw"][5:])
    assert np.mean(errors["filtered"][5:]) <= np.mean(errors["raw"][5:]) * 1.02
    assert "scale_filter" in stage.summary() and stage.summary()["per_frame"][0]["scale_measured"] > 0


def test_invalid_pixels_pass_through_as_they_came(still_room):
    bgr, gt, _ = still_room
    stage = TemporalDepthFilter(alpha=0.3)
    stage(Frame(0, bgr, 0.0, 0.0), gt)
    depth = gt.copy()
    depth[0, :3] = (0.0, -1.0, np.nan)
    out = stage(Frame(1, bgr, 0.0, 0.0), depth)
    assert out[0, 0] == 0.0 and out[0, 1] == -1.0 and np.isnan(out[0, 2])
    out = stage(Frame(2, bgr, 0.0, 0.0), gt)  # and they recover at once when valid again
    np.testing.assert_allclose(out[0, :3], gt[0, :3], rtol=1e-6)
