"""Sparse-depth alignment (runtime/align.py) on the project's synthetic rooms.

The predictions are built, not inferred: the room's ground truth under an unknown affine map of
inverse depth (the error a monocular network makes across cameras and scenes, to first order),
times a smooth multiplicative error field (a coarse 4x4 log-normal grid, bilinearly upsampled: a
network's spatially correlated error) and per-pixel log-normal noise. The sparse points are the
ground truth at the sampled pixels (simulate_sparse), so "aligned" is judged against the full
ground truth.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.errors import UsageError
from edgedepth.metrics import compute_depth_metrics
from edgedepth.runtime.align import AlignmentFit, SparseAlignment, apply_alignment, fit_alignment
from edgedepth.runtime.sources import Frame
from edgedepth.runtime.sparse import SparseDepthReader, simulate_sparse
from edgedepth.training.data.render import render_scene

MIN_DEPTH, MAX_DEPTH = 0.1, 10.0


def room(seed: int, height: int = 96, width: int = 128):
    """(rgb, depth, valid) of synthetic room ``seed``."""
    return render_scene(seed, height, width, MIN_DEPTH, MAX_DEPTH)


def distorted_prediction(gt: np.ndarray, valid: np.ndarray, seed: int, scale: float = 1.4, shift: float = -0.05,
                         smooth_std: float = 0.06, pixel_std: float = 0.03) -> np.ndarray:
    """``gt`` under 1/pred = 1/(scale gt) + shift, times smooth and per-pixel log-normal error."""
    rng = np.random.default_rng(seed)
    filled = np.where(valid, gt, np.median(gt[valid])).astype(np.float32)
    affine = apply_alignment(filled, AlignmentFit("scale_shift", scale=scale, shift=shift), MIN_DEPTH, MAX_DEPTH)
    coarse = rng.normal(0.0, smooth_std, (4, 4)).astype(np.float32)
    smooth = cv2.resize(coarse, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
    noise = smooth + rng.normal(0.0, pixel_std, gt.shape).astype(np.float32)
    return np.clip(affine * np.exp(noise), MIN_DEPTH, MAX_DEPTH).astype(np.float32)


def abs_rel(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, alignment: str = "none") -> float:
    return compute_depth_metrics(pred, gt, valid, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
                                 alignment=alignment)["abs_rel"]


def aligned(pred: np.ndarray, sparse: np.ndarray, mode: str = "scale_shift") -> np.ndarray:
    return apply_alignment(pred, fit_alignment(pred, sparse, mode), MIN_DEPTH, MAX_DEPTH)


@pytest.fixture(scope="module")
def rooms():
    """Six rooms with their distorted predictions (each with its own scale and shift)."""
    cases = []
    for seed in range(6):
        _, gt, valid = room(seed)
        scale, shift = (0.6, 1.5, 0.7, 1.6, 0.8, 1.3)[seed], (-0.06, 0.04, -0.02, 0.08, 0.0, -0.04)[seed]
        cases.append((gt, valid, distorted_prediction(gt, valid, seed, scale, shift)))
    return cases


def test_one_percent_sparse_points_match_median_scaling_with_full_ground_truth(rooms):
    """Issue 16's done-when: with 1% of the ground truth as sparse points, the aligned depth's
    AbsRel is at least as good as a global median scaling that sees all of the ground truth."""
    ours, oracle = [], []
    for index, (gt, valid, pred) in enumerate(rooms):
        sparse = simulate_sparse(gt, 0.01, "uniform", np.random.default_rng(100 + index))
        ours.append(abs_rel(aligned(pred, sparse), gt, valid))
        oracle.append(abs_rel(pred, gt, valid, alignment="median"))
    assert np.mean(ours) <= np.mean(oracle), (ours, oracle)
    assert all(a <= 1.05 * b for a, b in zip(ours, oracle)), (ours, oracle)


@pytest.mark.parametrize("pattern", ["uniform", "scanlines", "scanlines_missing_quarter", "blocked"])
@pytest.mark.parametrize("density", [0.001, 0.01, 0.1, 1.0])
def test_alignment_recovers_metric_depth_at_every_density_and_pattern(rooms, density, pattern):
    """From 0.1% to 100% of the pixels, random or LiDAR-like rows (a quarter of them missing, or a
    blocked sector): the aligned depth is within a few percent, the raw prediction is not."""
    for index, (gt, valid, pred) in enumerate(rooms[:3]):
        sparse = simulate_sparse(gt, density, pattern, np.random.default_rng(index))
        fit = fit_alignment(pred, sparse, "scale_shift")
        result = abs_rel(apply_alignment(pred, fit, MIN_DEPTH, MAX_DEPTH), gt, valid)
        assert result < 0.12, (index, fit)
        assert result < 0.5 * abs_rel(pred, gt, valid), (index, fit)
        assert fit.points == int((sparse > 0).sum()) and 0.5 <= fit.inlier_fraction <= 1.0


def test_scale_mode_fits_one_factor(rooms):
    """--align scale: a pure depth factor (shift 0); with an unshifted prediction it recovers the factor."""
    gt, valid, _ = rooms[0]
    pred = distorted_prediction(gt, valid, 0, scale=1.25, shift=0.0, smooth_std=0.0, pixel_std=0.01)
    fit = fit_alignment(pred, simulate_sparse(gt, 0.01, "scanlines"), "scale")
    assert fit.model == "scale" and fit.shift == 0.0
    assert fit.scale == pytest.approx(1 / 1.25, rel=0.01)


@pytest.mark.parametrize("share", [0.1, 0.25])
def test_wild_points_are_rejected(rooms, share):
    """10% (or 25%) of the points replaced by random depths (0.2-20 m: reflections, LiDAR seeing
    past an occluder): the fit's result barely moves, while a plain least-squares fit is dragged off."""
    rng = np.random.default_rng(7)
    plains, robusts = [], []
    for gt, valid, pred in rooms[:3]:
        clean = simulate_sparse(gt, 0.01, "uniform", rng)
        corrupt = clean.copy()
        rows, cols = np.nonzero(clean)
        wild = rng.random(rows.size) < share
        corrupt[rows[wild], cols[wild]] = rng.uniform(0.2, 20.0, int(wild.sum()))
        fit = fit_alignment(pred, corrupt)
        # A wild value can land near the truth by chance, and counts as an inlier then.
        assert 1 - share - 0.05 <= fit.inlier_fraction <= 1 - share + 0.1
        robust, reference = abs_rel(aligned(pred, corrupt), gt, valid), abs_rel(aligned(pred, clean), gt, valid)
        assert robust <= 1.1 * reference + 0.005
        z, d = corrupt[rows, cols].astype(np.float64), pred[rows, cols].astype(np.float64)
        (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(d), d], axis=1), d / z, rcond=None)
        plain = abs_rel(apply_alignment(pred, AlignmentFit("scale_shift", scale=1 / a, shift=b), MIN_DEPTH,
                                        MAX_DEPTH), gt, valid)
        plains.append(plain)
        robusts.append(robust)
    assert np.mean(plains) > 1.4 * np.mean(robusts)  # the outliers matter: without rejection the fit is worse


def test_too_few_points_fall_back_and_say_so():
    depth = np.full((8, 8), 2.0, dtype=np.float32)
    depth[:, 4:] = 4.0
    sparse = np.zeros_like(depth)
    sparse[0, 0] = 3.0
    fit = fit_alignment(depth, sparse)
    assert fit.model == "identity" and "1 points" in fit.reason
    assert apply_alignment(depth, fit, MIN_DEPTH, MAX_DEPTH) is depth
    sparse[1, 1], sparse[2, 6], sparse[3, 7] = 3.0, 6.0, 6.0
    fit = fit_alignment(depth, sparse)
    assert fit.model == "scale" and "fewer than 20" in fit.reason
    assert fit.scale == pytest.approx(1.5)


def test_points_at_one_depth_fall_back_to_scale():
    """A wall: every point at about the same depth cannot tell scale from shift."""
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 5.0, (32, 32)).astype(np.float32)
    depth[:16] = 2.0
    sparse = np.zeros_like(depth)
    sparse[:16:2, ::3] = 3.0
    fit = fit_alignment(depth, sparse, "scale_shift")
    assert fit.model == "scale" and "too narrow" in fit.reason
    assert fit.scale == pytest.approx(1.5) and fit.residual == pytest.approx(0.0, abs=1e-6)


def test_aligned_depth_is_always_positive_finite_and_in_range():
    """A fit whose inverse depth goes negative (far pixels) or below the range gives the range's
    ends, never 0, a negative or an infinite depth; a NaN from the network stays NaN."""
    depth = np.linspace(0.05, 12.0, 64, dtype=np.float32).reshape(8, 8)
    for fit in (AlignmentFit("scale_shift", scale=1.0, shift=-0.5), AlignmentFit("scale_shift", scale=0.1, shift=3.0),
                AlignmentFit("scale", scale=100.0)):
        out = apply_alignment(depth, fit, MIN_DEPTH, MAX_DEPTH)
        assert np.isfinite(out).all() and out.min() >= MIN_DEPTH and out.max() <= MAX_DEPTH
    depth[0, 0] = np.nan
    out = apply_alignment(depth, AlignmentFit("scale_shift", scale=1.0, shift=0.1), MIN_DEPTH, MAX_DEPTH)
    assert np.isnan(out[0, 0]) and np.isfinite(out.ravel()[1:]).all()


def test_unknown_mode_is_a_usage_error():
    with pytest.raises(UsageError, match="--align 'affine' is unknown"):
        fit_alignment(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), "affine")


def _write_mm(path: Path, depth: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.rint(depth * 1000).astype(np.uint16))


def test_stage_aligns_frames_with_files_passes_the_others_and_summarises(tmp_path, rooms):
    """The depth stage: frames with a file are aligned (the prediction replaced), a frame without
    one is passed unchanged and counted; the summary holds per-frame scale, residual, inlier
    fraction and their distribution."""
    for index, (gt, _, _) in enumerate(rooms[:3]):
        _write_mm(tmp_path / f"{index:06d}.png", simulate_sparse(gt, 0.05, "scanlines", np.random.default_rng(index)))
    stage = SparseAlignment(SparseDepthReader(str(tmp_path), "index"), "scale_shift", MIN_DEPTH, MAX_DEPTH)
    image = np.zeros((96, 128, 3), np.uint8)
    for index, (gt, valid, pred) in enumerate(rooms[:4]):
        out = stage(Frame(index, image, 0.0, 0.0), pred)
        if index < 3:
            assert abs_rel(out, gt, valid) < 0.5 * abs_rel(pred, gt, valid)
        else:
            assert out is pred
    summary = stage.summary()
    assert (summary["frames"], summary["aligned"], summary["without_sparse"]) == (4, 3, 1)
    assert summary["models"] == {"scale_shift": 3}
    assert [r["frame"] for r in summary["per_frame"]] == [0, 1, 2]
    record_keys = {"scale", "shift", "residual", "inlier_fraction", "points", "model", "reason"}
    assert record_keys <= set(summary["per_frame"][0])
    scale = summary["scale"]
    assert scale["count"] == 3 and scale["p10"] <= scale["median"] <= scale["p90"]
    assert summary["time_ms"]["count"] == 3


@pytest.mark.parametrize("size", [(96, 128), (480, 640)])
def test_the_fit_uses_a_bounded_sample_at_any_density(size, monkeypatch):
    """At 100% density the fit's work stays bounded (its time per frame is measured in
    benchmarks/bench_align.py): the robust stage sees at most ROBUST_FIT_POINTS points and the
    refit at most MAX_FIT_POINTS, whatever the pixel count, and the result is still exact."""
    from edgedepth.runtime import align

    rows = {"robust": [], "refit": []}
    robust_fit, least_squares = align._robust_fit, align._least_squares

    def recording_robust(design, u, a0):
        rows["robust"].append(design.shape[0])
        return robust_fit(design, u, a0)

    def recording_refit(design, u):
        rows["refit"].append(design.shape[0])
        return least_squares(design, u)

    monkeypatch.setattr(align, "_robust_fit", recording_robust)
    monkeypatch.setattr(align, "_least_squares", recording_refit)
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 8.0, size).astype(np.float32)
    pred = (gt * 1.3).astype(np.float32)
    np.testing.assert_allclose(aligned(pred, gt), gt, rtol=1e-4)
    assert rows["robust"] and max(rows["robust"]) <= min(align.ROBUST_FIT_POINTS, gt.size)
    assert rows["refit"] and max(rows["refit"]) <= min(align.MAX_FIT_POINTS, gt.size)


def test_invalid_pixels_stay_invalid():
    """The pipeline's contract: invalid depth is <= 0 or NaN; alignment must not turn it into range."""
    depth = np.array([[0.0, -1.0, 2.0, 4.0]], dtype=np.float32)
    for fit in (AlignmentFit("scale", scale=1.5), AlignmentFit("scale_shift", scale=1.2, shift=0.05)):
        out = apply_alignment(depth, fit, MIN_DEPTH, MAX_DEPTH)
        assert out[0, 0] == 0.0 and out[0, 1] == -1.0 and (out[0, 2:] > 0).all()


def test_the_pipeline_runs_alignment_and_smoothing_before_the_sinks(tiny_model, make_video, tmp_path):
    """depth-run's loop with both stages: the saved depth is the aligned one, and the stats hold both
    summaries as plain JSON (no NaN)."""
    import json

    from edgedepth.preprocess import preprocess
    from edgedepth.runtime import open_backend
    from edgedepth.runtime.pipeline import DepthPipeline, Outputs, PipelineOptions
    from edgedepth.runtime.sinks import DepthWriter
    from edgedepth.runtime.sources import VideoFileSource
    from edgedepth.runtime.temporal import ScaleKalman, TemporalDepthFilter

    video, spec = make_video(count=6), tiny_model.spec
    sparse_dir = tmp_path / "sparse"
    sparse_dir.mkdir()
    with VideoFileSource(str(video)) as source:  # the "sensor": 0.7 x the network's depth, 2% of pixels
        while (frame := source.read()) is not None:
            truth = 0.7 * tiny_model.reference(preprocess(frame.image, spec))[0, 0]
            if frame.index != 4:  # frame 4 has no file
                np.save(sparse_dir / f"{frame.index:06d}.npy", simulate_sparse(truth, 0.02, "scanlines"))
    alignment = SparseAlignment(SparseDepthReader(str(sparse_dir), "index"), "scale", spec.min_depth,
                                spec.max_depth, ScaleKalman())
    received = []
    with open_backend(str(tiny_model.path)) as backend, VideoFileSource(str(video)) as source:
        outputs = Outputs(depth=DepthWriter(str(tmp_path / "d"), "npy"),
                          on_depth=lambda frame, depth: received.append((frame, depth)))
        result = DepthPipeline(source, backend, outputs, PipelineOptions(warmup_iterations=0),
                               [alignment, TemporalDepthFilter(0.5)]).run()
    first, depth = received[0]
    expected = np.clip(0.7 * tiny_model.reference(preprocess(first.image, spec))[0, 0], spec.min_depth, spec.max_depth)
    np.testing.assert_allclose(depth, expected, rtol=1e-3)
    np.testing.assert_allclose(np.load(tmp_path / "d" / "000000.npy"), expected, rtol=1e-3)
    stats = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert (stats["alignment"]["frames"], stats["alignment"]["without_sparse"]) == (6, 1)
    assert stats["alignment"]["scale"]["median"] == pytest.approx(0.7, rel=1e-3)
    assert stats["temporal"]["frames"] == 6 and stats["temporal"]["flicker_raw"] is not None


def test_shift_under_a_filtered_scale_ignores_wild_points(rooms):
    """With a scale filter and scale_shift, the shift is refitted under the filtered scale: wild
    points must not drag it (a frame's aligned depth stays as good as without the filter)."""
    from edgedepth.runtime.temporal import ScaleKalman

    gt, valid, pred = rooms[1]
    rng = np.random.default_rng(3)
    sparse = simulate_sparse(gt, 0.01, "uniform", rng)
    rows, cols = np.nonzero(sparse)
    wild = rng.random(rows.size) < 0.2
    sparse[rows[wild], cols[wild]] = rng.uniform(0.2, 20.0, int(wild.sum()))

    class OneFile:
        def read(self, frame, depth_shape):
            return sparse

    stage = SparseAlignment(OneFile(), "scale_shift", MIN_DEPTH, MAX_DEPTH, ScaleKalman())
    out = stage(Frame(0, np.zeros((96, 128, 3), np.uint8), 0.0, 0.0), pred)
    assert abs_rel(out, gt, valid) <= 1.05 * abs_rel(aligned(pred, sparse), gt, valid)
