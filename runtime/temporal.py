"""Temporal stability on a stream: a Kalman filter on the alignment scale and a change-gated
per-pixel filter on the depth, with a flicker figure to measure both.

Scale (:class:`ScaleKalman`): the per-frame alignment scale jitters with the sparse points that
happen to be measured; the true scale changes slowly (or jumps when the scene changes). A 1-D
Kalman filter on log(scale) with a random-walk model (Welch & Bishop, "An Introduction to the
Kalman Filter", UNC TR 95-041) weighs each frame's fit by its own variance (from the fit's
residuals). An innovation beyond ``gate_sigmas`` standard deviations is an outlier frame and is
ignored; ``max_rejections`` consecutive outliers on the same side are a real jump, and the
filter restarts from the measurement, so a jump is followed within that many frames.

Depth (:class:`TemporalDepthFilter`): per pixel, in log depth (relative changes, near and far
alike), an exponential filter whose gain rises with the size of the change, in the spirit of the
1-Euro filter (Casiez, Roussel, Vogel, CHI 2012: smooth hard when the signal is still, follow at
once when it moves) and of the motion-gated recursive filters of video denoising:

    e = ln d_t - ln f_{t-1};   g = alpha + (1 - alpha) * clip(2 |e| / ln(1 + threshold) - 1, 0, 1)
    g = 1 where |e| > ln(1 + threshold) or the image changed there (see below);
    ln f_t = ln f_{t-1} + g * e

so noise (|e| under half the threshold) is averaged with weight ``alpha`` on the new frame, the gain
rises linearly to 1 between half the threshold and the threshold (no jump in behaviour), and a
real change of depth (a moving object, a camera move) resets the pixel to the new value: no lag
on motion. The threshold should sit well above the network's frame-to-frame noise on a still
scene (a few percent for a CNN); most motion is caught by the image test anyway.

Static pixels and flicker: the camera image is converted to grey and resized to the depth grid
(area averaging); a pixel is *static* between two frames when its grey level changed by at most
``image_threshold`` (of 255). Flicker is the mean over static pixels of |d_t - d_{t-1}| / d_{t-1},
averaged over frames, computed with the same static pixels for the raw (incoming) and the
filtered (outgoing) depth, so the two figures compare. Pixels that are not static are also reset
by the depth filter: where the image changed, the depth may have changed too.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional

import numpy as np

from edgedepth.errors import UsageError
from edgedepth.preprocess import import_cv2
from edgedepth.runtime.sources.base import Frame
from edgedepth.runtime.stats import TimingRecorder

#: Grey-level change (of 255) up to which a pixel counts as static (about 2.5 % of the range:
#: above the sensor noise of a lit indoor scene once area-averaged onto the depth grid).
DEFAULT_IMAGE_THRESHOLD = 6.0
#: Relative depth change treated as real motion: the pixel takes the new value at once.
DEFAULT_DEPTH_THRESHOLD = 0.15


class ScaleKalman:
    """1-D Kalman filter on log(scale), random walk with ``process_std`` per frame (see the module docstring)."""

    def __init__(self, process_std: float = 0.01, gate_sigmas: float = 3.0, max_rejections: int = 2) -> None:
        if not process_std > 0 or not gate_sigmas > 0 or max_rejections < 1:
            raise UsageError(f"scale filter needs process_std > 0, gate_sigmas > 0 and max_rejections >= 1, got "
                             f"{process_std}, {gate_sigmas}, {max_rejections}")
        self.process_variance = process_std * process_std
        self.gate_sigmas, self.max_rejections = gate_sigmas, max_rejections
        self.state: Optional[float] = None
        self.variance = math.inf
        self.counts = {"updates": 0, "gated": 0, "restarts": 0}
        self._rejected: List[float] = []

    def update(self, log_scale: Optional[float], variance: float) -> Optional[float]:
        """The filtered log-scale after this frame's measurement (None: none this frame)."""
        if log_scale is None or not math.isfinite(variance):
            return self.state
        if self.state is None:
            return self._restart(log_scale, variance)
        predicted = self.variance + self.process_variance
        innovation = log_scale - self.state
        if innovation * innovation > self.gate_sigmas**2 * (predicted + variance):
            return self._reject(log_scale, variance, innovation)
        self._rejected.clear()
        gain = predicted / (predicted + variance)
        self.state += gain * innovation
        self.variance = (1.0 - gain) * predicted
        self.counts["updates"] += 1
        return self.state

    def _reject(self, log_scale: float, variance: float, innovation: float) -> Optional[float]:
        if self._rejected and math.copysign(1.0, self._rejected[-1]) != math.copysign(1.0, innovation):
            self._rejected.clear()  # outliers on both sides are noise, not a jump
        self._rejected.append(innovation)
        if len(self._rejected) < self.max_rejections:
            self.variance += self.process_variance
            self.counts["gated"] += 1
            return self.state
        self.counts["restarts"] += 1
        return self._restart(log_scale, variance)

    def _restart(self, log_scale: float, variance: float) -> float:
        self.state, self.variance = log_scale, variance
        self._rejected.clear()
        return log_scale

    def summary(self) -> Dict[str, Any]:
        """The filter's settings and what it did (updates, gated outlier frames, restarts on jumps)."""
        return {"process_std": math.sqrt(self.process_variance), "gate_sigmas": self.gate_sigmas,
                "max_rejections": self.max_rejections, **self.counts}


def grey_on_grid(image: np.ndarray, shape: tuple) -> np.ndarray:
    """The BGR ``image`` as float32 grey levels on the HxW depth grid (area-averaged)."""
    cv2 = import_cv2()
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if grey.shape != tuple(shape):
        grey = cv2.resize(grey, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return grey.astype(np.float32)


def static_mask(previous_grey: np.ndarray, grey: np.ndarray, image_threshold: float = DEFAULT_IMAGE_THRESHOLD
                ) -> np.ndarray:
    """Pixels whose grey level changed by at most ``image_threshold`` between two frames."""
    return np.abs(grey - previous_grey) <= image_threshold


def flicker(previous: np.ndarray, depth: np.ndarray, static: np.ndarray) -> Optional[float]:
    """Mean |d_t - d_{t-1}| / d_{t-1} over static pixels where both depths are positive and finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.abs(depth - previous) / previous
    usable = static & np.isfinite(change) & (previous > 0)
    return float(change[usable].mean()) if usable.any() else None


class TemporalDepthFilter:
    """Depth stage ``temporal``: the change-gated per-pixel filter of the module docstring, with flicker figures."""

    def __init__(self, alpha: float, threshold: float = DEFAULT_DEPTH_THRESHOLD,
                 image_threshold: float = DEFAULT_IMAGE_THRESHOLD) -> None:
        if not 0.0 < alpha <= 1.0:
            raise UsageError(f"--temporal {alpha}: expected the weight of the new frame, 0 < ALPHA <= 1 "
                             "(e.g. 0.3; 1 turns smoothing off)")
        if not threshold > 0 or not image_threshold >= 0:
            raise UsageError(f"temporal filter thresholds must be > 0 (depth) and >= 0 (image), got "
                             f"{threshold} and {image_threshold}")
        self.name = "temporal"  # the stats key (edgedepth.runtime.pipeline.DepthStage)
        self.alpha, self.threshold, self.image_threshold = float(alpha), float(threshold), float(image_threshold)
        self._log_limit = math.log1p(self.threshold)
        self._state: Optional[np.ndarray] = None  # filtered log depth
        self._previous: Dict[str, np.ndarray] = {}
        self.frames = 0
        # Running sums and counts, not lists: a day-long stream must not grow.
        self._sums: Dict[str, List[float]] = {key: [0.0, 0] for key in ("flicker_raw", "flicker_filtered",
                                                                       "static_fraction", "reset_fraction")}
        self.timing = TimingRecorder()

    def __call__(self, frame: Frame, depth: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        self.frames += 1
        grey = grey_on_grid(frame.image, depth.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_depth = np.log(depth)
        if self._state is None or self._state.shape != depth.shape:
            self._state, output = log_depth, depth
        else:
            static = static_mask(self._previous["grey"], grey, self.image_threshold)
            output = np.where(depth > 0, self._filter(log_depth, static), depth)  # invalid stays as it came
            self._measure(depth, output, static)
        self._previous = {"grey": grey, "raw": depth, "filtered": output}
        self.timing.add(time.perf_counter() - start)
        return output

    def _filter(self, log_depth: np.ndarray, static: np.ndarray) -> np.ndarray:
        assert self._state is not None
        # Invalid depth (0, negative, NaN) makes -inf/NaN logs: their changes are NaN, handled below.
        with np.errstate(invalid="ignore"):
            change = log_depth - self._state
            magnitude = np.abs(change)
            ramp = np.clip(2.0 * magnitude / self._log_limit - 1.0, 0.0, 1.0)
            gain = self.alpha + (1.0 - self.alpha) * ramp
            reset = (magnitude > self._log_limit) | ~static
            gain[reset] = 1.0
            # Where either value is not finite the new value is taken as it is (a NaN is never smoothed away).
            self._state = np.where(np.isfinite(change), self._state + gain * change, log_depth).astype(np.float32)
        self._add("reset_fraction", float(reset.mean()))
        return np.exp(self._state).astype(np.float32)

    def _measure(self, depth: np.ndarray, output: np.ndarray, static: np.ndarray) -> None:
        raw = flicker(self._previous["raw"], depth, static)
        filtered = flicker(self._previous["filtered"], output, static)
        self._add("static_fraction", float(static.mean()))
        if raw is not None and filtered is not None:
            self._add("flicker_raw", raw)
            self._add("flicker_filtered", filtered)

    def _add(self, key: str, value: float) -> None:
        self._sums[key][0] += value
        self._sums[key][1] += 1

    def summary(self) -> Dict[str, Any]:
        """Settings, mean flicker raw vs filtered over the frames with static pixels, timing."""
        means = {key: (total / count if count else None) for key, (total, count) in self._sums.items()}
        return {"alpha": self.alpha, "threshold": self.threshold, "image_threshold": self.image_threshold,
                "frames": self.frames, "flicker_frames": int(self._sums["flicker_raw"][1]), **means,
                "time_ms": self.timing.summary_ms()}
