"""Sparse-depth alignment: a robust per-frame fit of the predicted depth to sparse metric points.

Why inverse depth: a monocular network sees disparity-like cues (size, texture density, parallax
of the training rigs), and its errors across cameras and scenes are, to first order, an unknown
affine map of *inverse* depth (the MiDaS/DPT/Depth Anything family is trained scale-and-shift
invariant in disparity for exactly this reason: Ranftl et al., TPAMI 2022, "Towards Robust
Monocular Depth Estimation"). A shift in depth would move near and far pixels by the same metres,
which no such error does. So the model, with rho = 1 / predicted depth, is

    1 / aligned = a * rho + b        ("scale_shift"),    1 / aligned = a * rho   ("scale")

reported as ``scale = 1 / a`` (the depth multiplier: with b = 0, aligned = scale x depth) and
``shift = b`` (1/m). With u = d / z (prediction over measurement: each point's own estimate of a),
the model at a point reads a + b d = u, and each point contributes the residual

    r = (a + b d - u) / a0 = (a rho + b - 1/z) / (a0 rho),        a0 = median(u),

its inverse-depth error relative to the (scale-corrected) predicted inverse depth: about the
relative depth error, so near and far points weigh alike. It is linear in (a, b), and the
measurement enters only on the right-hand side: a wild measurement is an outlier in the response,
never a leverage point, which is what lets a robust loss reject it. (Dividing by the measured
inverse depth instead would make far outliers leverage points: with a quarter of them wild the fit
collapses towards a = b = 0, where every residual is a bounded -1.)

The fit: start from (a0, 0), minimise sum(soft_l1(r / 0.05)) with SciPy's ``least_squares`` (a
robust, bounded-influence loss), take as inliers the points within max(3 x 1.4826 x MAD, 2 %) of
that fit, and refit by least squares on the inliers. Degenerate inputs fall back and say so in
the frame's record: fewer than ``MIN_POINTS_SHIFT`` points, or points that span too narrow a
depth range (a wall) to tell scale from shift -> scale only; fewer than ``MIN_POINTS_SCALE`` ->
identity. The output is clipped to the model's [min_depth, max_depth]; a NaN from the network
stays NaN (a broken model is never hidden behind plausible numbers, as in edgedepth.metrics).
"""
from __future__ import annotations

import collections
import math
import re
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Deque, Dict, List, Optional, Protocol, Tuple

import numpy as np

from edgedepth.errors import UsageError
from edgedepth.runtime.sources.base import Frame
from edgedepth.runtime.stats import TimingRecorder

ALIGN_MODES = ("scale", "scale_shift")
#: Fewer valid points than this: no fit at all (identity).
MIN_POINTS_SCALE = 3
#: Fewer than this: scale only. Two parameters from a handful of points overfit the noise: with a
#: trained network's predictions (benchmarks/bench_align.py --onnx), 12 points (0.1% of 96x128)
#: gave a worse AbsRel with scale_shift than with scale alone; from about 60 points on, the shift pays.
MIN_POINTS_SHIFT = 20
#: Relative spread (p90 - p10) / p50 of the points' inverse depths below which scale and shift
#: cannot be told apart (all points at about one depth): scale only.
MIN_RELATIVE_SPREAD = 0.05
#: Robust loss scale: residuals (relative) larger than this are down-weighted.
ROBUST_SCALE = 0.05
#: Inlier band: never narrower than this relative residual, however exact the prediction.
MIN_INLIER_BAND = 0.02
#: Points a fit uses: a uniform random sample above this (dense maps), which bounds the time per
#: frame at any density; the scale's statistical error at this many points is far below the
#: prediction's own error.
MAX_FIT_POINTS = 8192
#: Points the robust (iterative) stage uses, the first of the sample (itself uniform): it only has
#: to find the inliers; the final least-squares refit uses every inlier of the sample.
ROBUST_FIT_POINTS = 2048
#: Floor of the log-scale measurement variance given to a scale filter: the prediction's errors
#: are correlated across the image, so n points do not shrink the uncertainty as 1/n forever.
LOG_SCALE_VARIANCE_FLOOR = 0.02**2


@dataclass
class AlignmentFit:
    """One frame's fit: ``model`` is the one used (scale_shift, scale, identity) and ``reason``
    says why it is simpler than requested (empty when it is not)."""

    model: str
    scale: float = 1.0
    shift: float = 0.0
    points: int = 0
    inliers: int = 0
    #: Median |relative residual| over the inliers after the refit.
    residual: float = float("nan")
    #: Variance of log(scale) from the refit, floored (for a temporal filter).
    log_scale_variance: float = float("inf")
    reason: str = ""
    #: sum(d) / sum(d^2) over the inliers: the least-squares shift for another a is
    #: b + (a_fit - a) * shift_slope (the refit's normal equation), used under a filtered scale.
    shift_slope: float = 0.0

    @property
    def inlier_fraction(self) -> float:
        return self.inliers / self.points if self.points else 0.0


class SparseSource(Protocol):
    """Where a frame's sparse depth comes from (edgedepth.runtime.sparse.SparseDepthReader; a ROS
    node could hand over a subscribed topic's latest message instead)."""

    def read(self, frame: Frame, depth_shape: Tuple[int, int]) -> Optional[np.ndarray]:
        """HxW metres on the depth grid, 0 = no measurement; None when the frame has none."""


class ScaleFilter(Protocol):
    """Smooths the per-frame log-scale across frames (edgedepth.runtime.temporal.ScaleKalman)."""

    def update(self, log_scale: Optional[float], variance: float) -> Optional[float]:
        """The filtered log-scale after this frame's measurement (None: no measurement this frame);
        None while nothing has been measured."""

    def summary(self) -> Dict[str, Any]:
        """The filter's settings and counts, for the stats."""


def fit_alignment(depth: np.ndarray, sparse: np.ndarray, mode: str = "scale_shift",
                  rng: Optional[np.random.Generator] = None) -> AlignmentFit:
    """Fit ``depth`` (HxW predicted metres) to ``sparse`` (HxW metres, 0 = none); see the module docstring."""
    check_mode(mode)
    valid = (sparse > 0) & np.isfinite(sparse) & (depth > 0) & np.isfinite(depth)
    points = int(np.count_nonzero(valid))
    if points < MIN_POINTS_SCALE:
        return AlignmentFit("identity", points=points, reason=f"{points} points, fewer than {MIN_POINTS_SCALE}")
    d, u = _point_sample(depth, sparse, valid, points, rng or np.random.default_rng(0))
    model, reason = _model_for(mode, d)
    a0 = float(np.median(u))
    robust = slice(0, ROBUST_FIT_POINTS)
    params = _robust_fit(_design(d[robust], model), u[robust], a0)
    inliers = _inliers(_design(d, model) @ params - u, a0)
    params = _least_squares(_design(d[inliers], model), u[inliers])
    if params[0] <= 0:  # a <= 0 would invert near and far: the points do not support two parameters
        model, reason = "scale", "the scale-and-shift fit inverted depth order"
        params = _least_squares(_design(d[inliers], model), u[inliers])
    return _fit_record(model, reason, params, _design(d[inliers], model), u[inliers], a0, points,
                       float(inliers.mean()))


def check_mode(mode: str) -> None:
    if mode not in ALIGN_MODES:
        raise UsageError(f"--align {mode!r} is unknown: use one of {', '.join(ALIGN_MODES)}")


def _model_for(mode: str, d: np.ndarray) -> Tuple[str, str]:
    if mode == "scale":
        return "scale", ""
    if d.size < MIN_POINTS_SHIFT:
        return "scale", f"{d.size} points, fewer than {MIN_POINTS_SHIFT} for scale and shift"
    p10, p50, p90 = np.percentile(1.0 / d, [10, 50, 90])  # predicted inverse depth at the points
    if (p90 - p10) / p50 < MIN_RELATIVE_SPREAD:
        return "scale", f"points span {100 * (p90 - p10) / p50:.1f}% of inverse depth: too narrow for a shift"
    return "scale_shift", ""


def _point_sample(depth: np.ndarray, sparse: np.ndarray, valid: np.ndarray, points: int,
                  rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """(d, u = d / z) at the valid points, at most MAX_FIT_POINTS of them (a uniform sample)."""
    index = np.flatnonzero(valid)
    # Shuffled whenever the robust stage takes only the first points: they must be a uniform sample.
    if points > ROBUST_FIT_POINTS:
        index = index[rng.choice(points, min(points, MAX_FIT_POINTS), replace=False)]
    d = depth.ravel()[index].astype(np.float64)
    return d, d / sparse.ravel()[index].astype(np.float64)


def _design(d: np.ndarray, model: str) -> np.ndarray:
    """Columns multiplying (a) or (a, b) in a + b d = u."""
    return np.ones((d.size, 1)) if model == "scale" else np.stack([np.ones_like(d), d], axis=1)


def _robust_fit(design: np.ndarray, u: np.ndarray, a0: float) -> np.ndarray:
    """Soft-L1 fit of (a[, b]) to the relative residuals (design p - u) / a0, from (a0, 0)."""
    try:  # SciPy only when alignment is asked for
        from scipy.optimize import least_squares
    except ImportError as exc:
        raise UsageError("sparse-depth alignment needs SciPy: `pip install scipy` (on a Jetson: "
                         "`sudo apt install python3-scipy`), or run without --sparse-depth") from exc

    start = np.array([a0, 0.0])[: design.shape[1]]
    scaled = design / a0
    result = least_squares(lambda p: scaled @ p - u / a0, start, jac=lambda p: scaled, loss="soft_l1",
                           f_scale=ROBUST_SCALE, method="trf", x_scale="jac")
    return np.asarray(result.x, dtype=np.float64)


def _inliers(errors: np.ndarray, a0: float) -> np.ndarray:
    relative = errors / a0
    spread = 1.4826 * float(np.median(np.abs(relative - np.median(relative))))
    return np.abs(relative) <= max(3.0 * spread, MIN_INLIER_BAND)


def _least_squares(design: np.ndarray, u: np.ndarray) -> np.ndarray:
    solution, *_ = np.linalg.lstsq(design, u, rcond=None)
    return np.asarray(solution, dtype=np.float64)


def _fit_record(model: str, reason: str, params: np.ndarray, design: np.ndarray, u: np.ndarray, a0: float,
                points: int, inlier_share: float) -> AlignmentFit:
    """The fit's record; inliers are counted on the sample and scaled to all ``points``."""
    errors = design @ params - u
    d = design[:, 1] if params.size > 1 else None
    return AlignmentFit(model, scale=float(1.0 / params[0]), shift=float(params[1]) if params.size > 1 else 0.0,
                        points=points, inliers=round(points * inlier_share),
                        residual=float(np.median(np.abs(errors))) / a0,
                        log_scale_variance=_log_scale_variance(float(params[0]), errors, design), reason=reason,
                        shift_slope=float(d.sum() / (d @ d)) if d is not None else 0.0)


def _log_scale_variance(a: float, errors: np.ndarray, design: np.ndarray) -> float:
    """var(log a) of the least-squares refit, sigma^2 (X^T X)^-1 [0, 0] / a^2, floored."""
    dof = max(errors.size - design.shape[1], 1)
    sigma2 = float(errors @ errors) / dof
    try:
        variance = sigma2 * float(np.linalg.inv(design.T @ design)[0, 0]) / (a * a)
    except np.linalg.LinAlgError:
        return float("inf")
    return max(variance, LOG_SCALE_VARIANCE_FLOOR) if math.isfinite(variance) else float("inf")


def apply_alignment(depth: np.ndarray, fit: AlignmentFit, min_depth: float, max_depth: float) -> np.ndarray:
    """``depth`` under ``fit`` (see the module docstring), clipped to [min_depth, max_depth]."""
    if fit.model == "identity":
        return depth
    with np.errstate(divide="ignore", invalid="ignore"):
        if fit.shift == 0.0:
            aligned = depth * np.float32(fit.scale)
        else:
            inverse = np.float32(1.0 / fit.scale) / depth + np.float32(fit.shift)
            # Non-positive inverse depth is beyond infinity: the far end of the range.
            aligned = np.where(inverse > 0, 1.0 / inverse, np.float32(max_depth))
    clipped = np.clip(aligned, min_depth, max_depth).astype(np.float32, copy=False)
    return np.where(depth > 0, clipped, depth)  # invalid pixels (<= 0, NaN) stay invalid


class SparseAlignment:
    """Depth stage ``alignment``: each frame's depth aligned to its sparse points (the aligned depth
    replaces it).

    ``scale_filter`` (optional) smooths the scale across frames; with scale_shift the shift is then
    refitted to the inliers under the filtered scale, so scale and shift stay consistent.
    """

    def __init__(self, reader: SparseSource, mode: str, min_depth: float, max_depth: float,
                 scale_filter: Optional[ScaleFilter] = None, keep_records: int = 10000) -> None:
        self.name = "alignment"  # the stats key (edgedepth.runtime.pipeline.DepthStage)
        check_mode(mode)
        self.reader, self.mode = reader, mode
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.scale_filter = scale_filter
        self.frames = 0
        self.without_sparse = 0
        self.models: Dict[str, int] = collections.Counter()
        self.fallbacks: Dict[str, int] = collections.Counter()
        #: The newest per-frame records (bounded: a day-long stream must not grow).
        self.records: Deque[Dict[str, Any]] = collections.deque(maxlen=keep_records)
        self.timing = TimingRecorder()
        self._rng = np.random.default_rng(0)

    def __call__(self, frame: Frame, depth: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        self.frames += 1
        sparse = self.reader.read(frame, depth.shape)
        if sparse is None:
            self.without_sparse += 1
            return depth
        fit = fit_alignment(depth, sparse, self.mode, self._rng)
        raw_scale = fit.scale
        if self.scale_filter is not None:
            fit = self._filtered(fit)
        aligned = apply_alignment(depth, fit, self.min_depth, self.max_depth)
        self.timing.add(time.perf_counter() - start)
        self._record(frame, fit, raw_scale)
        return aligned

    def _filtered(self, fit: AlignmentFit) -> AlignmentFit:
        assert self.scale_filter is not None
        measured = math.log(fit.scale) if fit.model != "identity" else None
        filtered = self.scale_filter.update(measured, fit.log_scale_variance)
        if filtered is None:
            return fit
        scale = math.exp(filtered)
        if fit.model == "identity":  # too few points this frame: the filter's scale carries over
            return replace(fit, model="held", scale=scale, shift=0.0)
        if fit.model == "scale":
            return replace(fit, scale=scale)
        # The least-squares shift over the same inliers, under the filtered scale.
        return replace(fit, scale=scale, shift=fit.shift + (1.0 / fit.scale - 1.0 / scale) * fit.shift_slope)

    def _record(self, frame: Frame, fit: AlignmentFit, raw_scale: float) -> None:
        self.models[fit.model] += 1
        if fit.reason:
            self.fallbacks[_reason_kind(fit.reason)] += 1
        record = {"frame": frame.index, "name": frame.name, **asdict(fit), "inlier_fraction": fit.inlier_fraction}
        record.pop("log_scale_variance")
        record.pop("shift_slope")
        if not math.isfinite(record["residual"]):  # identity: no fit, no residual (JSON has no NaN)
            record["residual"] = None
        if self.scale_filter is not None:
            record["scale_measured"] = raw_scale
        self.records.append(record)

    def summary(self) -> Dict[str, Any]:
        """Counts, the distribution of scale/shift/residual/inlier fraction, timing and the records."""
        records = list(self.records)
        fitted = [r for r in records if r["residual"] is not None]
        return {
            "mode": self.mode,
            "frames": self.frames,
            "aligned": sum(n for model, n in self.models.items() if model != "identity"),
            "without_sparse": self.without_sparse,
            "models": dict(self.models),
            "fallbacks": dict(self.fallbacks),
            **{key: distribution([r[key] for r in fitted]) for key in ("scale", "shift", "residual",
                                                                         "inlier_fraction", "points")},
            "time_ms": self.timing.summary_ms(),
            **({"scale_filter": self.scale_filter.summary()} if self.scale_filter is not None else {}),
            "per_frame": records,
        }


def _reason_kind(reason: str) -> str:
    """A fallback reason without its numbers, to count alike reasons together."""
    return re.sub(r"[0-9.]+%?", "N", reason)


def distribution(values: List[float]) -> Dict[str, Optional[float]]:
    """count, median, p10 and p90 of ``values`` (None when there are none)."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return {"count": 0, "median": None, "p10": None, "p90": None}
    p10, p50, p90 = np.percentile(finite, [10, 50, 90])
    return {"count": int(finite.size), "median": float(p50), "p10": float(p10), "p90": float(p90)}
