"""Depth metrics: the one implementation, used by evaluation, parity and benchmarks (numpy only).

Definitions follow Eigen et al. 2014 as implemented by monodepth2 and BTS; the edge-region and
depth-boundary metrics follow the spirit of iBims-1. docs/METRICS.md gives every formula, the
reductions, crops, alignment and edge definitions.

Every metric is a function of a few per-pixel sums, so :class:`DepthMetricAccumulator` evaluates
a whole dataset without keeping its images, and the one-shot functions are that accumulator fed
once. Internally ``None`` means *undefined* (no pixel to average over) and is skipped by the
per-image mean, while NaN means *broken* (a NaN prediction) and propagates, so a model that emits
NaN can never look good.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from edgedepth.errors import EdgeDepthError

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "mae", "log10", "silog", "d1", "d2", "d3")
EDGE_KEYS = (
    "edge_abs_rel", "edge_rmse", "edge_mae", "edge_d1",
    "boundary_precision", "boundary_recall", "boundary_f1",
)
COUNT_KEYS = ("num_valid", "edge_num_valid")
#: Column order of :func:`format_metrics_table`; keys it does not know follow in first-seen order.
TABLE_KEYS = DEPTH_KEYS + ("num_valid",) + EDGE_KEYS + ("edge_num_valid",)
CROPS = ("none", "eigen_nyu", "garg_kitti", "eigen_kitti")
ALIGNMENTS = ("none", "median", "scale_shift")
REDUCTIONS = ("images", "pixels")
DELTA_BASE = 1.25

# (top, bottom, left, right) as fractions of (H, H, W, W), truncated to int like monodepth2/BTS.
# Fractions keep the NYU box exact (45:471, 41:601 at 480x640) with no float rounding.
_CROP_FRACTIONS = {
    "eigen_nyu": (Fraction(45, 480), Fraction(471, 480), Fraction(41, 640), Fraction(601, 640)),
    "garg_kitti": (Fraction("0.40810811"), Fraction("0.99189189"), Fraction("0.03594771"), Fraction("0.96405229")),
    "eigen_kitti": (Fraction("0.3324324"), Fraction("0.91351351"), Fraction("0.0359477"), Fraction("0.96405229")),
}

# Per-pixel terms summed over a pixel set; every depth metric is a function of these sums.
_SUM_NAMES = ("n", "abs_rel", "sq_rel", "sq", "abs", "abs_log10", "log", "log_sq", "d1", "d2", "d3")
_EDGE_ERRORS = ("abs_rel", "rmse", "mae", "d1")

Stats = Dict[str, np.ndarray]
Metrics = Dict[str, Optional[float]]


# --------------------------------------------------------------------------- public helpers


def crop_mask(height: int, width: int, crop: Optional[str] = None) -> np.ndarray:
    """Boolean HxW mask of a standard evaluation crop (None/"none" keeps every pixel).

    "eigen_nyu" is rows 45:471, cols 41:601 of 480x640, scaled proportionally; "garg_kitti" and
    "eigen_kitti" are the fractional boxes of monodepth2 and BTS.
    """
    crop = _check_crop(crop)
    mask = np.zeros((height, width), dtype=bool)
    if crop == "none":
        mask[:] = True
        return mask
    top, bottom, left, right = _CROP_FRACTIONS[crop]
    mask[int(top * height): int(bottom * height), int(left * width): int(right * width)] = True
    return mask


def align_depth(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, alignment: str = "none") -> np.ndarray:
    """Align one HxW prediction to its ground truth over the ``valid`` pixels.

    "median" scales by median(gt)/median(pred); "scale_shift" fits ``s * pred + t`` to gt by least
    squares (in depth space). Pixels where pred is not finite take no part in the fit.
    """
    _check_choice("alignment", alignment, ALIGNMENTS)
    fit = valid & np.isfinite(pred)
    if alignment == "none" or not fit.any():
        return pred
    if alignment == "median":
        with np.errstate(divide="ignore", invalid="ignore"):
            return pred * (np.median(gt[fit]) / np.median(pred[fit]))
    design = np.stack([pred[fit], np.ones(int(fit.sum()))], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, gt[fit], rcond=None)
    return pred * scale + shift


def depth_edges(depth: np.ndarray, valid: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Boolean HxW map of depth discontinuities.

    A pair of 4-neighbours, both valid, is a discontinuity when their depths differ by more than
    ``threshold`` relative: ``|ln a - ln b| > ln(1 + threshold)``. Both pixels of the pair are
    marked, so an edge is two pixels thick and does not depend on which side is nearer.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        log_depth = np.log(np.where(valid, depth, 1.0))
        limit = np.log1p(threshold)
        vertical = (np.abs(log_depth[1:] - log_depth[:-1]) > limit) & valid[1:] & valid[:-1]
        horizontal = (np.abs(log_depth[:, 1:] - log_depth[:, :-1]) > limit) & valid[:, 1:] & valid[:, :-1]
    edges = np.zeros(depth.shape, dtype=bool)
    edges[1:] |= vertical
    edges[:-1] |= vertical
    edges[:, 1:] |= horizontal
    edges[:, :-1] |= horizontal
    return edges


# --------------------------------------------------------------------------- accumulator


class DepthMetricAccumulator:
    """Accumulate depth (and optionally edge) metrics over batches without keeping the images.

    ``reduction="images"`` (default, as NYU/KITTI benchmarks report) averages per-image metrics;
    ``"pixels"`` computes each metric once over all valid pixels of all images. Both keep only
    running sums. Options are those of :func:`compute_depth_metrics` and :func:`compute_edge_metrics`.
    """

    def __init__(
        self,
        min_depth: float = 1e-3,
        max_depth: Optional[float] = None,
        crop: Optional[str] = None,
        alignment: str = "none",
        reduction: str = "images",
        edge_metrics: bool = False,
        edge_threshold: float = 0.1,
        dilation: int = 2,
        tolerance: int = 2,
    ) -> None:
        _check_depth_range(min_depth, max_depth)
        _check_choice("alignment", alignment, ALIGNMENTS)
        _check_choice("reduction", reduction, REDUCTIONS)
        if edge_threshold <= 0 or dilation < 0 or tolerance < 0:
            raise EdgeDepthError(
                f"edge options edge_threshold={edge_threshold}, dilation={dilation}, tolerance={tolerance} "
                "are invalid: expected edge_threshold > 0 and dilation, tolerance >= 0 pixels"
            )
        self.min_depth, self.max_depth = float(min_depth), max_depth
        self.crop, self.alignment, self.reduction = _check_crop(crop), alignment, reduction
        self.edge_metrics = edge_metrics
        self.edge_threshold, self.dilation, self.tolerance = edge_threshold, dilation, tolerance
        self.keys = DEPTH_KEYS + (EDGE_KEYS if edge_metrics else ())
        self.num_images = 0
        self._totals = _empty_stats(edge_metrics)
        self._image_sums = dict.fromkeys(self.keys, 0.0)
        self._image_counts = dict.fromkeys(self.keys, 0)

    def add(self, pred: np.ndarray, gt: np.ndarray, mask: Optional[np.ndarray] = None) -> None:
        """Add a batch: pred, gt (and mask) HxW, NxHxW or Nx1xHxW, depths in metres."""
        preds, gts, masks = _as_batches(pred, gt, mask)
        for image_pred, image_gt, image_mask in zip(preds, gts, masks):
            stats = self._image_stats(image_pred, image_gt, image_mask)
            for name, values in stats.items():
                self._totals[name] += values
            if self.reduction == "images":
                self._add_image_metrics(_metrics_from_stats(stats))
            self.num_images += 1

    def merge(self, other: "DepthMetricAccumulator") -> None:
        """Add what ``other`` (same options) accumulated, e.g. another rank's shard of a dataset."""
        options = ("min_depth", "max_depth", "crop", "alignment", "reduction", "edge_metrics", "edge_threshold",
                   "dilation", "tolerance")
        differ = [name for name in options if getattr(self, name) != getattr(other, name)]
        if differ:
            raise EdgeDepthError(f"cannot merge metric accumulators whose {', '.join(differ)} differ")
        for name, values in other._totals.items():
            self._totals[name] += values
        for key in self.keys:
            self._image_sums[key] += other._image_sums[key]
            self._image_counts[key] += other._image_counts[key]
        self.num_images += other.num_images

    def compute(self) -> Dict[str, float]:
        """The metrics so far: every key of ``self.keys`` (NaN where undefined) plus pixel counts."""
        if self.reduction == "pixels":
            metrics = _metrics_from_stats(self._totals)
        else:
            metrics = {
                key: self._image_sums[key] / self._image_counts[key] if self._image_counts[key] else None
                for key in self.keys
            }
        result = {key: _float_or_nan(metrics[key]) for key in self.keys}
        result["num_valid"] = int(self._totals["depth"][0])
        if self.edge_metrics:
            result["edge_num_valid"] = int(self._totals["edge"][0])
        return {key: result[key] for key in TABLE_KEYS if key in result}  # the table's column order

    def _image_stats(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> Stats:
        valid = self._valid_mask(gt, mask)
        pred = align_depth(pred, gt, valid, self.alignment)
        # Standard Eigen-style practice: the prediction is clipped to the evaluated depth range.
        pred = np.clip(pred, self.min_depth, self.max_depth)
        stats = {"depth": _error_sums(pred[valid], gt[valid])}
        if self.edge_metrics:
            stats.update(_edge_stats(pred, gt, valid, self.edge_threshold, self.dilation, self.tolerance))
        return stats

    def _valid_mask(self, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            valid = mask & np.isfinite(gt) & (gt > self.min_depth)
            if self.max_depth is not None:
                valid &= gt < self.max_depth
        return valid & crop_mask(gt.shape[0], gt.shape[1], self.crop)

    def _add_image_metrics(self, metrics: Metrics) -> None:
        for key in self.keys:
            value = metrics[key]
            if value is not None:  # undefined for this image (e.g. no edges): not averaged
                self._image_sums[key] += value
                self._image_counts[key] += 1


# --------------------------------------------------------------------------- one-shot API


def compute_depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: Optional[np.ndarray] = None,
    min_depth: float = 1e-3,
    max_depth: Optional[float] = None,
    crop: Optional[str] = None,
    alignment: str = "none",
    reduction: str = "images",
) -> Dict[str, float]:
    """Standard depth metrics of ``pred`` against ``gt`` (metres, HxW / NxHxW / Nx1xHxW).

    Valid pixels: ``mask`` (if given) & finite gt & gt > min_depth & gt < max_depth (if given)
    & inside ``crop``. Per image, pred is aligned (``alignment``: "none" | "median" |
    "scale_shift") then clipped to [min_depth, max_depth]. Returns abs_rel, sq_rel, rmse,
    rmse_log, mae, log10, silog (BTS: 100 * sqrt(mean(d^2) - mean(d)^2), d = ln pred - ln gt),
    d1, d2, d3 (share with max(pred/gt, gt/pred) < 1.25^k) and num_valid. ``reduction="images"``
    averages per-image metrics (benchmark practice), ``"pixels"`` pools every valid pixel. No
    valid pixel gives NaN metrics and num_valid 0. Raises EdgeDepthError on mismatched shapes.
    """
    accumulator = DepthMetricAccumulator(min_depth, max_depth, crop, alignment, reduction)
    accumulator.add(pred, gt, mask)
    return accumulator.compute()


def compute_edge_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: Optional[np.ndarray] = None,
    min_depth: float = 1e-3,
    max_depth: Optional[float] = None,
    crop: Optional[str] = None,
    alignment: str = "none",
    reduction: str = "images",
    edge_threshold: float = 0.1,
    dilation: int = 2,
    tolerance: int = 2,
) -> Dict[str, float]:
    """Errors near ground-truth depth discontinuities, and depth-boundary precision/recall/F1.

    Edges (:func:`depth_edges`) are 4-neighbour pairs of valid pixels whose depth differs by more
    than ``edge_threshold`` relative. The edge region is every valid pixel within ``dilation``
    pixels (Euclidean) of a GT edge; on it: edge_abs_rel, edge_rmse, edge_mae, edge_d1 and
    edge_num_valid. Edges are detected the same way in the aligned, clipped prediction (on the
    same valid pixels); boundary_precision is the share of predicted edge pixels within
    ``tolerance`` pixels of a GT edge, boundary_recall the share of GT edge pixels within
    ``tolerance`` of a predicted edge, boundary_f1 their harmonic mean. Needs dense ground truth
    (NYU, iBims, synthetic); on sparse LiDAR few neighbour pairs are valid. Other options as in
    :func:`compute_depth_metrics`.
    """
    metrics = evaluate_all(
        pred, gt, mask, min_depth=min_depth, max_depth=max_depth, crop=crop, alignment=alignment,
        reduction=reduction, edge_threshold=edge_threshold, dilation=dilation, tolerance=tolerance,
    )
    return {key: metrics[key] for key in EDGE_KEYS + ("edge_num_valid",)}


def evaluate_all(
    pred: np.ndarray, gt: np.ndarray, mask: Optional[np.ndarray] = None, **options: Any
) -> Dict[str, float]:
    """:func:`compute_depth_metrics` and :func:`compute_edge_metrics` in one pass, merged."""
    accumulator = DepthMetricAccumulator(edge_metrics=True, **options)
    accumulator.add(pred, gt, mask)
    return accumulator.compute()


def format_metrics_table(rows: Mapping[str, Mapping[str, object]]) -> str:
    """A Markdown table, one row per name, columns in :data:`TABLE_KEYS` order.

    Only columns present in some row are shown; unknown keys follow in first-seen order.
    Floats print with 4 decimals, counts as integers, a missing value as "-".
    """
    present = {key for row in rows.values() for key in row}
    columns = [key for key in TABLE_KEYS if key in present]
    for row in rows.values():
        columns += [key for key in row if key not in TABLE_KEYS and key not in columns]
    lines = ["| name | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in rows.items():
        cells = [_format_value(row.get(key)) for key in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- internals


def _float_or_nan(value: Optional[float]) -> float:
    return float("nan") if value is None else float(value)


def _format_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_, str)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4f}"
    return str(value)


def _error_sums(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Sums (in ``_SUM_NAMES`` order) of the per-pixel error terms over 1-D pixel arrays."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = pred - gt
        log_diff = np.log(pred) - np.log(gt)
        ratio = np.maximum(pred / gt, gt / pred)
        deltas = [np.count_nonzero(ratio < DELTA_BASE ** power) for power in (1, 2, 3)]
        return np.array([
            pred.size,
            np.sum(np.abs(diff) / gt),
            np.sum(diff ** 2 / gt),
            np.sum(diff ** 2),
            np.sum(np.abs(diff)),
            np.sum(np.abs(log_diff)) / np.log(10.0),
            np.sum(log_diff),
            np.sum(log_diff ** 2),
            *deltas,
        ], dtype=np.float64)


def _depth_from_sums(sums: np.ndarray) -> Metrics:
    """Depth metrics from ``_error_sums`` (None for every metric when no pixel was summed)."""
    if sums[0] == 0:
        return dict.fromkeys(DEPTH_KEYS)
    mean = dict(zip(_SUM_NAMES, sums / sums[0]))
    with np.errstate(invalid="ignore"):
        # Rounding can push a zero variance (a pure scale error) a hair below 0; NaN still propagates.
        log_variance = np.maximum(mean["log_sq"] - mean["log"] ** 2, 0.0)
        return {
            "abs_rel": mean["abs_rel"], "sq_rel": mean["sq_rel"], "rmse": np.sqrt(mean["sq"]),
            "rmse_log": np.sqrt(mean["log_sq"]), "mae": mean["abs"], "log10": mean["abs_log10"],
            "silog": 100.0 * np.sqrt(log_variance), "d1": mean["d1"], "d2": mean["d2"], "d3": mean["d3"],
        }


def _within(edges: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within ``radius`` (Euclidean, pixels) of any ``edges`` pixel."""
    if not edges.any():
        return np.zeros(edges.shape, dtype=bool)
    from edgedepth.preprocess import import_cv2  # lazy: OpenCV is needed only for edge metrics

    cv2 = import_cv2()
    distance = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance <= radius


def _edge_stats(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, threshold: float,
                dilation: int, tolerance: int) -> Stats:
    gt_edges = depth_edges(gt, valid, threshold)
    pred_edges = depth_edges(pred, valid, threshold)
    region = _within(gt_edges, dilation) & valid
    counts = np.array([
        np.count_nonzero(pred_edges),
        np.count_nonzero(pred_edges & _within(gt_edges, tolerance)),
        np.count_nonzero(gt_edges),
        np.count_nonzero(gt_edges & _within(pred_edges, tolerance)),
    ], dtype=np.float64)
    return {"edge": _error_sums(pred[region], gt[region]), "boundary": counts}


def _boundary_from_counts(counts: np.ndarray) -> Metrics:
    num_pred, matched_pred, num_gt, matched_gt = counts
    precision = matched_pred / num_pred if num_pred else None
    recall = matched_gt / num_gt if num_gt else None
    if precision is None and recall is None:
        f1 = None
    else:  # a missing side means nothing matched: F1 is 0 (an image with GT edges but none predicted)
        p, r = precision or 0.0, recall or 0.0
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return {"boundary_precision": precision, "boundary_recall": recall, "boundary_f1": f1}


def _metrics_from_stats(stats: Stats) -> Metrics:
    metrics = _depth_from_sums(stats["depth"])
    if "edge" in stats:
        edge = _depth_from_sums(stats["edge"])
        metrics.update({f"edge_{key}": edge[key] for key in _EDGE_ERRORS})
        metrics.update(_boundary_from_counts(stats["boundary"]))
    return metrics


def _empty_stats(edge_metrics: bool) -> Stats:
    stats = {"depth": np.zeros(len(_SUM_NAMES))}
    if edge_metrics:
        stats.update({"edge": np.zeros(len(_SUM_NAMES)), "boundary": np.zeros(4)})
    return stats


def _as_images(array: np.ndarray, name: str) -> np.ndarray:
    """HxW, NxHxW or Nx1xHxW -> NxHxW."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    if array.ndim == 4 and array.shape[1] == 1:
        return array[:, 0]
    raise EdgeDepthError(f"{name} has shape {array.shape}; expected HxW, NxHxW or Nx1xHxW depth maps")


def _as_batches(pred: np.ndarray, gt: np.ndarray, mask: Optional[np.ndarray]) -> Tuple[np.ndarray, ...]:
    preds = _as_images(pred, "pred").astype(np.float64)
    gts = _as_images(gt, "gt").astype(np.float64)
    if preds.shape != gts.shape:
        raise EdgeDepthError(
            f"pred shape {np.shape(pred)} does not match gt shape {np.shape(gt)}; resize the prediction "
            "to the ground-truth size (e.g. cv2.resize, INTER_LINEAR) before computing metrics"
        )
    if mask is None:
        return preds, gts, np.ones(gts.shape, dtype=bool)
    masks = _as_images(mask, "mask").astype(bool)
    if masks.shape[1:] != gts.shape[1:] or masks.shape[0] not in (1, gts.shape[0]):
        raise EdgeDepthError(f"mask shape {np.shape(mask)} does not match gt shape {np.shape(gt)}")
    return preds, gts, np.broadcast_to(masks, gts.shape)


def _check_depth_range(min_depth: float, max_depth: Optional[float]) -> None:
    if not min_depth > 0 or (max_depth is not None and not max_depth > min_depth):
        raise EdgeDepthError(
            f"depth range min_depth={min_depth}, max_depth={max_depth} is invalid: expected "
            "0 < min_depth < max_depth (metres; max_depth may be None)"
        )


def _check_choice(name: str, value: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise EdgeDepthError(f"{name} {value!r} is unknown; choose one of {', '.join(choices)}")


def _check_crop(crop: Optional[str]) -> str:
    crop = "none" if crop is None else crop
    _check_choice("crop", crop, CROPS)
    return crop
