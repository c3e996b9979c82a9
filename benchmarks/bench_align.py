"""Sparse-depth alignment and temporal filtering on synthetic rooms (issue 16).

    python benchmarks/bench_align.py --rooms 12 --size 192x256 [--json results/bench_align.json]

Prints one JSON object:
* ``alignment``: per sparse pattern (uniform random, LiDAR-like scan lines, a quarter of the scan
  lines missing, a blocked sector), density (0.1-10 %) and model (scale, scale_shift), the mean
  AbsRel over the rooms after alignment, with the raw prediction's AbsRel and two references that
  see the *full* ground truth: global median scaling and a least-squares scale-and-shift in
  inverse depth (the best one affine map can do);
* ``outliers``: the same at 1 % with 10 % of the points replaced by random depths;
* ``time_ms``: fit + apply per frame (median of repeats) at 96x128 .. 480x640, 1 % and 100 % density;
* ``network`` (with ``--onnx``): the references, table and outliers again for a trained network's
  own predictions instead of built ones;
* ``temporal``: on a still-camera clip of one room with noisy per-frame predictions, the flicker
  figure and AbsRel raw vs filtered, and the alignment scale's spread with and without the Kalman
  filter (few noisy sparse points per frame).

Predictions are built, not inferred (as in tests/runtime/test_align.py): the ground truth under
an unknown affine map of inverse depth (scale 0.6-1.6, shift -0.08..0.08 1/m), times a smooth
log-normal error field (4x4 grid, std 6 %) and per-pixel log-normal noise (std 3 %).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgedepth.io import write_json_atomic
from edgedepth.metrics import compute_depth_metrics
from edgedepth.preprocess import import_cv2, preprocess
from edgedepth.runtime.align import ALIGN_MODES, AlignmentFit, SparseAlignment, apply_alignment, fit_alignment
from edgedepth.runtime.sources import Frame
from edgedepth.runtime.sparse import PATTERNS, simulate_sparse
from edgedepth.runtime.temporal import ScaleKalman, TemporalDepthFilter
from edgedepth.training.data.render import render_scene

MIN_DEPTH, MAX_DEPTH = 0.1, 10.0
DENSITIES = (0.001, 0.005, 0.01, 0.05, 0.1)
Room = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # bgr, gt, valid, prediction


def distorted_prediction(gt: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    filled = np.where(valid, gt, np.median(gt[valid])).astype(np.float32)
    fit = AlignmentFit("scale_shift", scale=float(rng.uniform(0.6, 1.6)), shift=float(rng.uniform(-0.08, 0.08)))
    affine = apply_alignment(filled, fit, MIN_DEPTH, MAX_DEPTH)
    coarse = rng.normal(0.0, 0.06, (4, 4)).astype(np.float32)
    smooth = import_cv2().resize(coarse, (gt.shape[1], gt.shape[0]), interpolation=import_cv2().INTER_LINEAR)
    noise = smooth + rng.normal(0.0, 0.03, gt.shape).astype(np.float32)
    return np.clip(affine * np.exp(noise), MIN_DEPTH, MAX_DEPTH).astype(np.float32)


def make_rooms(count: int, height: int, width: int, backend: Optional[Any] = None) -> List[Room]:
    """Rendered rooms (seeds 1000+, never in a training split's stream) with their predictions:
    built (see the module docstring), or the network's own with ``backend`` (at its input size)."""
    rooms = []
    if backend is not None:
        height, width = backend.spec.height, backend.spec.width
    for seed in range(count):
        rgb, gt, valid = render_scene(1000 + seed, height, width, MIN_DEPTH, MAX_DEPTH)
        bgr = rgb[:, :, ::-1].copy()
        if backend is None:
            pred = distorted_prediction(gt, valid, np.random.default_rng(seed))
        else:
            pred = backend.infer(preprocess(bgr, backend.spec))[0, 0]
        rooms.append((bgr, gt, valid, pred))
    return rooms


def abs_rel(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, alignment: str = "none") -> float:
    return compute_depth_metrics(pred, gt, valid, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
                                 alignment=alignment)["abs_rel"]


def aligned(pred: np.ndarray, sparse: np.ndarray, mode: str) -> np.ndarray:
    return apply_alignment(pred, fit_alignment(pred, sparse, mode), MIN_DEPTH, MAX_DEPTH)


def with_outliers(sparse: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    corrupt = sparse.copy()
    rows, cols = np.nonzero(sparse)
    wild = rng.random(rows.size) < share
    corrupt[rows[wild], cols[wild]] = rng.uniform(0.2, 20.0, int(wild.sum()))
    return corrupt


def mean_aligned_abs_rel(rooms: List[Room], density: float, pattern: str, mode: str) -> float:
    scores = []
    for index, (_, gt, valid, pred) in enumerate(rooms):
        sparse = simulate_sparse(gt, density, pattern, np.random.default_rng(index))
        scores.append(abs_rel(aligned(pred, sparse, mode), gt, valid))
    return round(float(np.mean(scores)), 4)


def alignment_table(rooms: List[Room]) -> Dict[str, Any]:
    return {pattern: {f"{100 * density:g}%": {mode: mean_aligned_abs_rel(rooms, density, pattern, mode)
                                               for mode in ALIGN_MODES} for density in DENSITIES}
            for pattern in PATTERNS}


def references(rooms: List[Room]) -> Dict[str, float]:
    raw = [abs_rel(pred, gt, valid) for _, gt, valid, pred in rooms]
    median = [abs_rel(pred, gt, valid, "median") for _, gt, valid, pred in rooms]
    affine = [abs_rel(aligned(pred, np.where(valid, gt, 0), "scale_shift"), gt, valid) for _, gt, valid, pred in rooms]
    return {"raw": round(float(np.mean(raw)), 4), "median_scaling_full_gt": round(float(np.mean(median)), 4),
            "scale_shift_full_gt": round(float(np.mean(affine)), 4)}


def outlier_table(rooms: List[Room]) -> Dict[str, float]:
    rng = np.random.default_rng(5)
    result = {}
    for share in (0.0, 0.1, 0.25):
        scores = [abs_rel(aligned(pred, with_outliers(simulate_sparse(gt, 0.01, "uniform", rng), share, rng),
                                  "scale_shift"), gt, valid) for _, gt, valid, pred in rooms]
        result[f"{100 * share:g}% wild points"] = round(float(np.mean(scores)), 4)
    return result


def timing(repeats: int) -> Dict[str, Dict[str, float]]:
    rng = np.random.default_rng(0)
    result: Dict[str, Dict[str, float]] = {}
    aligned(np.ones((8, 8), np.float32), np.ones((8, 8), np.float32), "scale_shift")  # SciPy's import
    for height, width in ((96, 128), (240, 320), (480, 640)):
        gt = rng.uniform(0.5, 8.0, (height, width)).astype(np.float32)
        pred = (gt * 1.3 * np.exp(rng.normal(0, 0.05, gt.shape))).astype(np.float32)
        for density in (0.01, 1.0):
            sparse = simulate_sparse(gt, density, "uniform", rng)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                aligned(pred, sparse, "scale_shift")
                times.append((time.perf_counter() - start) * 1000.0)
            result.setdefault(f"{height}x{width}", {})[f"{100 * density:g}%"] = round(float(np.median(times)), 3)
    return result


def still_clip(room: Room, frames: int, seed: int, global_std: float = 0.02, pixel_std: float = 0.03):
    """A still camera: the room's image with +-2 grey levels of noise, the truth jittered per frame."""
    bgr, gt, _, _ = room
    rng = np.random.default_rng(seed)
    for index in range(frames):
        image = np.clip(bgr.astype(np.int16) + rng.integers(-2, 3, bgr.shape), 0, 255).astype(np.uint8)
        depth = gt * math.exp(rng.normal(0.0, global_std)) * np.exp(rng.normal(0.0, pixel_std, gt.shape))
        yield Frame(index, image, 0.0, 0.0), depth.astype(np.float32)


def temporal_figures(room: Room, frames: int, alpha: float) -> Dict[str, Any]:
    _, gt, valid, _ = room
    stage = TemporalDepthFilter(alpha)
    raw, filtered = [], []
    for frame, depth in still_clip(room, frames, 0):
        out = stage(frame, depth)
        raw.append(abs_rel(depth, gt, valid))
        filtered.append(abs_rel(out, gt, valid))
    summary = stage.summary()
    return {"alpha": alpha, "frames": frames, "flicker_raw": round(summary["flicker_raw"], 4),
            "flicker_filtered": round(summary["flicker_filtered"], 4),
            "abs_rel_raw": round(float(np.mean(raw[5:])), 4),
            "abs_rel_filtered": round(float(np.mean(filtered[5:])), 4),
            "filter_ms_p50": summary["time_ms"]["p50"], "scale": scale_figures(room, frames)}


class _ListReader:
    """Hands the alignment stage one prepared sparse map per frame (the benchmark's files in memory)."""

    def __init__(self, maps: List[np.ndarray]) -> None:
        self.maps = maps

    def read(self, frame: Frame, depth_shape: Tuple[int, int]) -> Optional[np.ndarray]:
        return self.maps[frame.index]


def scale_figures(room: Room, frames: int) -> Dict[str, float]:
    """Std of log(scale) over a still clip: per-frame fits to 0.2% points with 8% noise, vs Kalman."""
    _, gt, _, _ = room
    rng = np.random.default_rng(3)
    maps = []
    for _ in range(frames):
        sparse = simulate_sparse(gt, 0.002, "uniform", rng)
        maps.append(np.where(sparse > 0, sparse * np.exp(rng.normal(0, 0.08, gt.shape)), 0).astype(np.float32))
    spread = {}
    for name, scale_filter in (("per_frame", None), ("kalman", ScaleKalman())):
        stage = SparseAlignment(_ListReader(maps), "scale", MIN_DEPTH, MAX_DEPTH, scale_filter)
        for frame, depth in still_clip(room, frames, 1, global_std=0.0):
            stage(frame, depth * 1.5)
        scales = [record["scale"] for record in stage.summary()["per_frame"]]
        spread[f"log_scale_std_{name}"] = round(float(np.std(np.log(scales[5:]))), 4)
    return spread


def network_figures(model: str, count: int) -> Dict[str, Any]:
    """References and the alignment table for a trained network's own predictions."""
    from edgedepth.runtime import open_backend

    with open_backend(model, "onnxruntime") as backend:
        rooms = make_rooms(count, 0, 0, backend)
        size = f"{backend.spec.height}x{backend.spec.width}"
    return {"model": model, "size": size, "reference_abs_rel": references(rooms),
            "alignment_abs_rel": alignment_table(rooms), "outliers_abs_rel_1pct_scale_shift": outlier_table(rooms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=12)
    parser.add_argument("--size", default="192x256", help="HEIGHTxWIDTH of the rooms")
    parser.add_argument("--frames", type=int, default=40, help="frames of the still clip")
    parser.add_argument("--alpha", type=float, default=0.3, help="temporal filter weight of the new frame")
    parser.add_argument("--repeats", type=int, default=15, help="timing repeats per size")
    parser.add_argument("--onnx", help="also align a trained network's predictions (an edgedepth .onnx, e.g. "
                                       "the one `make demo` trains), on rooms at its input size")
    parser.add_argument("--json", help="also write the result here (atomically)")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    start = time.perf_counter()
    rooms = make_rooms(args.rooms, height, width)
    result: Dict[str, Any] = {
        "rooms": args.rooms, "size": f"{height}x{width}",
        "reference_abs_rel": references(rooms),
        "alignment_abs_rel": alignment_table(rooms),
        "outliers_abs_rel_1pct_scale_shift": outlier_table(rooms),
        "time_ms": timing(args.repeats),
        "temporal": temporal_figures(rooms[0], args.frames, args.alpha),
    }
    if args.onnx:
        result["network"] = network_figures(args.onnx, args.rooms)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        write_json_atomic(args.json, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
