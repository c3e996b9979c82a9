"""INT8 Q/DQ vs FP32 latency on ONNX Runtime (CPU), side by side in one run; JSON to stdout.

    python benchmarks/bench_int8.py [--checkpoint best.pt] [--threads 2] [--repetitions 30]

A ResNet18 DepthNet (random init unless --checkpoint: latency does not depend on the weights) is
exported at 256x320 and calibrated by ``depth-calib``'s pipeline on a few dozen synthetic scene
images (the output head kept in FP32, budget check and fallback off: the figures are reported).
FP32 and the INT8 graphs then run on the same input with the same thread count, repetitions
interleaved in rotating order so load from other processes hits all alike; medians reported:

* ``int8_ort_cpu``: the ORT quantizer with ``--target cpu`` (UINT8 activations, ORT's fast x86 path);
* ``int8_ort_tensorrt``: the ORT quantizer with ``--target tensorrt`` (symmetric INT8 for TensorRT);
* ``int8_modelopt``: ModelOpt's graph, when installed (TensorRT-oriented).

Check: the ORT quantizer's CPU graph must not be slower than FP32 (exit status 1 if it is). The
TensorRT-targeted graphs are reported only: they are meant for TensorRT, whose INT8 kernels they
feed; on x86 CPUs ONNX Runtime runs INT8 activations on slower paths.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from common import interleaved_times, random_checkpoint  # benchmarks/common.py (run as a script)


def _checkpoint(args, folder: Path) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    return random_checkpoint(folder / "random.pt", args.height, args.width)


def _scene_folder(folder: Path, count: int, height: int, width: int) -> Path:
    """``count`` synthetic indoor-like frames (the export probes' scene generator) as PNG files."""
    import cv2
    import numpy as np

    from edgedepth.probes import scene_image

    rng = np.random.default_rng(0)
    images = folder / "scenes"
    images.mkdir()
    for index in range(count):
        cv2.imwrite(str(images / f"{index:03d}.png"), scene_image(height, width, rng))
    return images


def _calibrate(fp32: Path, images: Path, output: Path, quantizer: str, target: str, num_images: int) -> dict:
    from edgedepth.budget import Budget  # no limits: the benchmark measures, it does not judge
    from edgedepth.calib import CalibrationRequest, calibrate

    request = CalibrationRequest(
        onnx=fp32, output=output, data=[str(images)], num_images=num_images, num_eval=8, quantizer=quantizer,
        target=target, budget=Budget(), max_fallback=0,
    )
    started = time.perf_counter()
    report = calibrate(request, log=lambda _: None)
    return {"seconds": round(time.perf_counter() - started, 1), "quantizer_version": report.quantizer_version,
            "int8_vs_fp32": report.figures, "kept_in_higher_precision": len(report.kept_in_higher_precision),
            "tensorrt_compatibility": report.tensorrt_compatibility}


def _summary(times: List[float]) -> dict:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2), "min_ms": round(ordered[0], 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint to export (default: a random-init ResNet18 DepthNet)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--images", type=int, default=40, help="synthetic calibration images")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-modelopt", action="store_true", help="skip ModelOpt even when installed")
    args = parser.parse_args(argv)

    import numpy as np
    import onnxruntime

    from edgedepth.export.onnx_export import export_onnx
    from edgedepth.onnxrt import cpu_session, run_session

    with tempfile.TemporaryDirectory(prefix="edgedepth-bench-int8-") as tmp:
        folder = Path(tmp)
        fp32 = folder / "model.onnx"
        export_onnx(_checkpoint(args, folder), fp32, height=args.height, width=args.width, log=lambda _: None)
        images = _scene_folder(folder, args.images + 8, args.height, args.width)
        graphs = {"fp32": fp32}
        calibration = {}
        variants = [("int8_ort_cpu", "ort", "cpu"), ("int8_ort_tensorrt", "ort", "tensorrt")]
        if not args.no_modelopt and importlib.util.find_spec("modelopt") is not None:
            variants.append(("int8_modelopt", "modelopt", "tensorrt"))
        for name, quantizer, target in variants:
            graphs[name] = folder / f"{name}.onnx"
            calibration[name] = _calibrate(fp32, images, graphs[name], quantizer, target, args.images)
        batch = np.random.default_rng(0).normal(0, 1, (1, 3, args.height, args.width)).astype(np.float32)
        sessions = {name: cpu_session(path, threads=args.threads) for name, path in graphs.items()}
        runners = {name: (lambda s=session: run_session(s, batch)) for name, session in sessions.items()}
        times = interleaved_times(runners, args.repetitions, args.warmup)

    results = {name: _summary(values) for name, values in times.items()}
    fp32_median = results["fp32"]["median_ms"]
    for name, result in results.items():
        result["speedup_vs_fp32"] = round(fp32_median / result["median_ms"], 3)
        result.update(calibration.get(name, {}))
    passed = results["int8_ort_cpu"]["median_ms"] <= fp32_median
    report = {
        "benchmark": "int8_qdq_vs_fp32_onnxruntime_cpu",
        "input": [1, 3, args.height, args.width],
        "weights": args.checkpoint or "random init (latency does not depend on weights)",
        "threads": args.threads, "repetitions": args.repetitions, "warmup": args.warmup,
        "onnxruntime": onnxruntime.__version__, "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "results": results,
        "check": {"int8_ort_cpu_not_slower_than_fp32": passed,
                  "note": "the TensorRT-targeted graphs (int8_ort_tensorrt, int8_modelopt) are reported only"},
    }
    print(json.dumps(report, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
