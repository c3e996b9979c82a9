"""Depth metrics against hand-computed values, plus crops, alignment, edges and the accumulator."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from edgedepth.errors import EdgeDepthError
from edgedepth.metrics import (
    DEPTH_KEYS,
    EDGE_KEYS,
    DepthMetricAccumulator,
    compute_depth_metrics,
    compute_edge_metrics,
    crop_mask,
    depth_edges,
    evaluate_all,
    format_metrics_table,
)

# Four pixels: pred/gt ratios 1.2, 1.0, 1.5 and 1/0.52 = 1.923, one per delta band.
GT = np.array([[1.0, 2.0], [4.0, 5.0]])
PRED = np.array([[1.2, 2.0], [6.0, 2.6]])


def step_scene(height: int = 32, width: int = 48, edge_col: int = 24):
    """A fronto-parallel step: 1 m left of ``edge_col``, 3 m from it on."""
    gt = np.ones((height, width))
    gt[:, edge_col:] = 3.0
    return gt


def horizontal_blur(depth: np.ndarray, width: int) -> np.ndarray:
    """Box blur along rows, edges replicated (a prediction smeared across the step)."""
    padded = np.pad(depth, ((0, 0), (width // 2, width // 2)), mode="edge")
    kernel = np.ones(width) / width
    return np.stack([np.convolve(row, kernel, mode="valid") for row in padded])


def test_each_metric_matches_hand_computation():
    m = compute_depth_metrics(PRED, GT)
    assert m["abs_rel"] == pytest.approx((0.2 / 1 + 0 / 2 + 2 / 4 + 2.4 / 5) / 4)
    assert m["sq_rel"] == pytest.approx((0.04 / 1 + 0 / 2 + 4 / 4 + 5.76 / 5) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.04 + 0 + 4 + 5.76) / 4))
    assert m["mae"] == pytest.approx((0.2 + 0 + 2 + 2.4) / 4)
    logs = [math.log(1.2), 0.0, math.log(1.5), math.log(2.6 / 5)]
    assert m["rmse_log"] == pytest.approx(math.sqrt(sum(d * d for d in logs) / 4))
    log10s = [math.log10(1.2), 0.0, math.log10(6) - math.log10(4), math.log10(5) - math.log10(2.6)]
    assert m["log10"] == pytest.approx(sum(log10s) / 4)
    mean_d = sum(logs) / 4
    assert m["silog"] == pytest.approx(100 * math.sqrt(sum(d * d for d in logs) / 4 - mean_d ** 2))
    # ratios 1.2 | 1.0 | 1.5 | 1.923 against 1.25, 1.5625, 1.953
    assert (m["d1"], m["d2"], m["d3"]) == (0.5, 0.75, 1.0)
    assert m["num_valid"] == 4
    assert list(m) == list(DEPTH_KEYS) + ["num_valid"]


def test_perfect_prediction():
    gt = np.random.default_rng(0).uniform(0.5, 9.0, size=(2, 1, 8, 8))
    m = compute_depth_metrics(gt.copy(), gt)
    assert m["abs_rel"] == 0 and m["rmse"] == 0 and m["silog"] == 0
    assert m["d1"] == m["d2"] == m["d3"] == 1.0
    assert m["num_valid"] == 128


def test_silog_ignores_a_global_scale_but_abs_rel_does_not():
    gt = np.random.default_rng(1).uniform(1.0, 5.0, size=(8, 8))
    m = compute_depth_metrics(gt * 1.1, gt)
    assert m["silog"] == pytest.approx(0.0, abs=1e-6)
    assert m["abs_rel"] == pytest.approx(0.1)


def test_invalid_pixels_are_excluded_and_pred_is_clipped():
    gt = np.array([[2.0, 0.0], [np.nan, 50.0]])  # zero, NaN and beyond max_depth are invalid
    pred = np.array([[100.0, 7.0], [7.0, 7.0]])
    m = compute_depth_metrics(pred, gt, max_depth=10.0)
    assert m["num_valid"] == 1
    assert m["abs_rel"] == pytest.approx((10.0 - 2.0) / 2.0)  # 100 m clipped to 10 m
    masked = compute_depth_metrics(pred, gt, mask=np.zeros((2, 2), bool), max_depth=10.0)
    assert masked["num_valid"] == 0


def test_nan_prediction_is_reported_not_hidden():
    pred = PRED.copy()
    pred[0, 0] = np.nan
    m = compute_depth_metrics(np.stack([pred, GT]), np.stack([GT, GT]))
    assert math.isnan(m["abs_rel"]) and math.isnan(m["rmse"])


def test_images_reduction_averages_images_pixels_reduction_pools_pixels():
    gt = np.full((2, 2, 2), 2.0)
    gt[0, 0, 1:] = 0.0
    gt[0, 1, :] = 0.0  # image 0 keeps one valid pixel
    pred = gt.copy()
    pred[0, 0, 0] = 4.0  # its abs_rel is 1.0; image 1 (4 pixels) is perfect
    by_image = compute_depth_metrics(pred, gt)
    by_pixel = compute_depth_metrics(pred, gt, reduction="pixels")
    assert by_image["abs_rel"] == pytest.approx((1.0 + 0.0) / 2)
    assert by_pixel["abs_rel"] == pytest.approx(1.0 / 5)
    assert by_image["num_valid"] == by_pixel["num_valid"] == 5


def test_no_valid_pixels_gives_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = evaluate_all(np.ones((4, 4)), np.zeros((4, 4)))
        p = compute_depth_metrics(np.ones((4, 4)), np.zeros((4, 4)), alignment="scale_shift", reduction="pixels")
    assert m["num_valid"] == 0 and p["num_valid"] == 0
    assert all(math.isnan(m[key]) for key in DEPTH_KEYS + EDGE_KEYS)
    assert all(math.isnan(p[key]) for key in DEPTH_KEYS)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(EdgeDepthError, match=r"\(4, 5\).*\(4, 6\)"):
        compute_depth_metrics(np.ones((4, 5)), np.ones((4, 6)))
    with pytest.raises(EdgeDepthError, match=r"\(2, 3, 4, 4\)"):
        compute_depth_metrics(np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4)))


def test_unknown_options_are_refused():
    for options in ({"crop": "eigen"}, {"alignment": "affine"}, {"reduction": "mean"}, {"min_depth": 0.0}):
        with pytest.raises(EdgeDepthError):
            compute_depth_metrics(GT, GT, **options)


def test_median_alignment_recovers_a_scaled_prediction_per_image():
    gt = np.random.default_rng(2).uniform(1.0, 8.0, size=(2, 6, 6))
    pred = gt * np.array([0.3, 7.0])[:, None, None]  # a different unknown scale per image
    assert compute_depth_metrics(pred, gt)["abs_rel"] > 0.5
    aligned = compute_depth_metrics(pred, gt, alignment="median")
    assert aligned["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert aligned["d1"] == 1.0


def test_scale_shift_alignment_recovers_scale_and_shift():
    gt = np.random.default_rng(3).uniform(1.0, 8.0, size=(2, 6, 6))
    pred = np.stack([(gt[0] - 0.5) / 2.0, gt[1] * 4.0 + 3.0])  # relative-depth outputs
    aligned = compute_depth_metrics(pred, gt, alignment="scale_shift")
    assert aligned["abs_rel"] == pytest.approx(0.0, abs=1e-9)
    assert compute_depth_metrics(pred, gt, alignment="median")["abs_rel"] > 1e-3  # a shift needs more


def test_crop_masks_have_the_published_boxes():
    nyu = crop_mask(480, 640, "eigen_nyu")
    rows, cols = np.nonzero(nyu)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 471, 41, 601)
    assert nyu.sum() == (471 - 45) * (601 - 41)
    half = crop_mask(240, 320, "eigen_nyu")
    assert half.sum() == (235 - 22) * (300 - 20)  # 45/2 -> 22, 471/2 -> 235, 41/2 -> 20, 601/2 -> 300
    # KITTI boxes as monodepth2 (Garg) and BTS (Eigen) compute them: int(fraction * size).
    h, w = 375, 1242
    garg = (int(0.40810811 * h), int(0.99189189 * h), int(0.03594771 * w), int(0.96405229 * w))
    eigen = (int(0.3324324 * h), int(0.91351351 * h), int(0.0359477 * w), int(0.96405229 * w))
    for name, (top, bottom, left, right) in (("garg_kitti", garg), ("eigen_kitti", eigen)):
        rows, cols = np.nonzero(crop_mask(h, w, name))
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (top, bottom, left, right)
    assert crop_mask(4, 4, None).all() and crop_mask(4, 4, "none").all()


def test_crop_limits_which_pixels_are_evaluated():
    gt = np.full((480, 640), 2.0)
    pred = gt.copy()
    pred[:45] = 9.0  # wrong only above the NYU crop
    assert compute_depth_metrics(pred, gt)["abs_rel"] > 0
    cropped = compute_depth_metrics(pred, gt, crop="eigen_nyu")
    assert cropped["abs_rel"] == 0 and cropped["num_valid"] == 426 * 560


def test_depth_edges_mark_both_sides_of_a_relative_jump():
    gt = step_scene(4, 6, edge_col=3)
    edges = depth_edges(gt, np.ones(gt.shape, bool), threshold=0.1)
    assert edges[:, 2:4].all() and edges.sum() == 8
    small_step = np.where(gt > 1, 1.05, 1.0)  # 5 % jump: below the 10 % threshold
    assert not depth_edges(small_step, np.ones(gt.shape, bool), threshold=0.1).any()


def test_blur_at_the_edge_hurts_edge_metrics_more_than_full_image_metrics():
    gt = step_scene()
    sharp = gt * 1.05  # a uniform 5 % error, edge kept sharp
    blurred = horizontal_blur(gt, 9)  # exact away from the edge, smeared across it
    sharp_m, blurred_m = evaluate_all(sharp, gt), evaluate_all(blurred, gt)
    assert blurred_m["edge_abs_rel"] > 3 * sharp_m["edge_abs_rel"]
    assert blurred_m["edge_rmse"] > sharp_m["edge_rmse"] and blurred_m["edge_d1"] < sharp_m["edge_d1"]
    full_ratio = blurred_m["abs_rel"] / sharp_m["abs_rel"]
    edge_ratio = blurred_m["edge_abs_rel"] / sharp_m["edge_abs_rel"]
    assert edge_ratio > 2 * full_ratio
    assert blurred_m["edge_num_valid"] == 32 * 6  # the 2-pixel edge dilated by 2 pixels each way


def test_boundary_f1_is_one_for_identical_maps_and_lower_for_blurred_or_shifted_edges():
    gt = step_scene()
    assert compute_edge_metrics(gt * 2.0, gt)["boundary_f1"] == 1.0  # relative jumps are scale-free
    blurred = compute_edge_metrics(horizontal_blur(gt, 9), gt)
    assert blurred["boundary_recall"] == 1.0 and blurred["boundary_precision"] < 1.0
    assert blurred["boundary_f1"] < 1.0
    shifted = compute_edge_metrics(step_scene(edge_col=30), gt, tolerance=2)
    assert shifted["boundary_f1"] == 0.0
    near_shift = compute_edge_metrics(step_scene(edge_col=25), gt, tolerance=2)
    assert near_shift["boundary_f1"] == 1.0  # one pixel off is within tolerance
    flat = compute_edge_metrics(np.full(gt.shape, 2.0), gt)  # no predicted edge at all
    assert flat["boundary_recall"] == 0.0 and flat["boundary_f1"] == 0.0
    assert math.isnan(flat["boundary_precision"])


def test_images_without_edges_do_not_dilute_the_edge_average():
    gt = np.stack([step_scene(), np.full((32, 48), 2.0)])
    m = compute_edge_metrics(gt * 1.1, gt)
    assert m["edge_abs_rel"] == pytest.approx(0.1) and m["boundary_f1"] == 1.0


@pytest.mark.parametrize("reduction", ["images", "pixels"])
def test_accumulator_equals_one_shot(reduction):
    rng = np.random.default_rng(4)
    gt = np.stack([step_scene()] * 4) * rng.uniform(0.5, 2.0, size=(4, 1, 1))
    gt[1, :5] = 0.0  # missing depth in one image
    pred = horizontal_blur(gt.reshape(-1, 48), 5).reshape(gt.shape) * rng.uniform(0.9, 1.1, size=gt.shape)
    options = dict(max_depth=5.0, alignment="median", reduction=reduction)
    accumulator = DepthMetricAccumulator(edge_metrics=True, **options)
    accumulator.add(pred[:1], gt[:1])
    accumulator.add(pred[1:, None], gt[1:, None])
    streamed, one_shot = accumulator.compute(), evaluate_all(pred, gt, **options)
    assert streamed.keys() == one_shot.keys()
    for key, value in one_shot.items():
        assert streamed[key] == pytest.approx(value, rel=1e-12), key
    assert accumulator.num_images == 4


def test_format_metrics_table_has_fixed_column_order():
    table = format_metrics_table({
        "onnx": {"rmse": 0.25, "abs_rel": 0.125, "num_valid": 10, "latency_ms": 3.5},
        "fp16": {"abs_rel": float("nan"), "d1": 0.9},
    })
    lines = table.splitlines()
    assert lines[0] == "| name | abs_rel | rmse | d1 | num_valid | latency_ms |"
    assert lines[2] == "| onnx | 0.1250 | 0.2500 | - | 10 | 3.5000 |"
    assert lines[3] == "| fp16 | nan | - | 0.9000 | - | - |"
