"""Native (C++, and CUDA where built and a GPU exists) preprocess + postprocess vs the Python/OpenCV
path, side by side in one run on 720p and 1080p frames (JSON on stdout).

Per frame size, each path does what depth-run does per frame: preprocess the BGR camera frame to the
network input (resize, colour order, normalise), then colourise the network-size depth map and turn
it into uint16 millimetres (the --save-depth PNG). Paths are timed interleaved (benchmarks/common.py)
and reported as medians and as speed-ups over the Python path measured in the same run.

    make native && python benchmarks/bench_native.py [--repetitions 50] [--model-size 256x320] [--threads 1]

--threads sets OpenCV's thread count (default 1: the native CPU path is single-threaded, so one
thread compares like with like; 0 leaves OpenCV's default). The CUDA times include the host<->device
copies, since depth-run hands the result to a host-side backend.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any, Callable, Dict

import numpy as np

from edgedepth.colormap import colorize_depth
from edgedepth.preprocess import import_cv2, preprocess
from edgedepth.runtime.bench import environment
from edgedepth.runtime.sinks import depth_to_png_mm
from edgedepth.spec import ModelSpec

from common import interleaved_times  # benchmarks/common.py (run as a script)

FRAMES = {"720p": (720, 1280), "1080p": (1080, 1920)}


def runners(image: np.ndarray, depth: np.ndarray, spec: ModelSpec, native: Any) -> Dict[str, Callable[[], object]]:
    """One callable per path: preprocess ``image`` + colourise and convert ``depth``."""
    low, high = spec.min_depth, spec.max_depth
    native_spec = native.ModelSpec.from_json(spec.to_json())
    paths: Dict[str, Callable[[], object]] = {
        "python": lambda: (preprocess(image, spec, "BGR"), colorize_depth(depth, low, high), depth_to_png_mm(depth)),
        "native_cpu": lambda: (native.preprocess(image, native_spec, "BGR"), native.colorize_depth(depth, low, high),
                               native.depth_to_mm(depth)),
    }
    if not native.cuda_problem():
        paths["native_cuda"] = lambda: (native.cuda_preprocess(image, native_spec, "BGR"),
                                        native.cuda_colorize_depth(depth, low, high), native.cuda_depth_to_mm(depth))
    return paths


def bench_size(name: str, spec: ModelSpec, native: Any, repetitions: int) -> Dict[str, Any]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*FRAMES[name], 3), dtype=np.uint8)
    depth = rng.uniform(spec.min_depth, spec.max_depth, (spec.height, spec.width)).astype(np.float32)
    times = interleaved_times(runners(image, depth, spec, native), repetitions, warmup=3)
    median = {path: statistics.median(values) for path, values in times.items()}
    return {
        "frame": list(FRAMES[name]),
        "median_ms": {path: round(value, 4) for path, value in median.items()},
        "speedup_vs_python": {path: round(median["python"] / value, 2) for path, value in median.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=50)
    parser.add_argument("--model-size", default="256x320", help="network input HEIGHTxWIDTH")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (0: OpenCV's default)")
    args = parser.parse_args()
    try:
        from edgedepth import _native as native
    except ImportError as exc:
        print(f"bench_native: edgedepth._native is not built ({exc}): run `make native`", file=sys.stderr)
        return 2
    if args.threads:
        import_cv2().setNumThreads(args.threads)
    height, width = (int(part) for part in args.model_size.lower().split("x"))
    spec = ModelSpec(height=height, width=width)
    report = {
        "benchmark": "native preprocess+postprocess vs python/OpenCV",
        "model_input": [height, width],
        "opencv_threads": args.threads or import_cv2().getNumThreads(),
        "repetitions": args.repetitions,
        "cuda": native.cuda_problem() or "used",
        "sizes": {name: bench_size(name, spec, native, args.repetitions) for name in FRAMES},
        "environment": environment(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
