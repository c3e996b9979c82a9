"""Soak: 10,000 frames through the depth-run pipeline from a looping video; resident memory must
not grow by more than 5 MB after warm-up (JSON on stdout).

    python benchmarks/soak_runtime.py [--frames 10000] [--warmup-frames 1000] [--save-depth]

A tiny ONNX depth model keeps the run to a few minutes on a CPU: the soak is about the runtime
(capture thread, queues, sinks, stats), not the network. The side-by-side video is written the
whole time; --save-depth also writes every depth map (10,000 small PNGs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edgedepth.preprocess import import_cv2
from edgedepth.runtime import DepthPipeline, Outputs, PipelineOptions, SourceOptions, open_backend, open_source
from edgedepth.runtime.bench import environment, synthetic_frames
from edgedepth.runtime.sinks import DepthWriter, VideoSink
from edgedepth.spec import ModelSpec

GROWTH_LIMIT_MB = 5.0


def rss_bytes() -> int:
    """Resident set size of this process (psutil when installed, else /proc/self/status)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("cannot read VmRSS from /proc/self/status") from None  # psutil's absence is no news
    return int(psutil.Process().memory_info().rss)


def tiny_model(path: Path) -> Path:
    """A small conv net (3x3 conv, ReLU, 1x1 conv, sigmoid x max depth) at 96x128 with its spec."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    spec = ModelSpec(height=96, width=128, max_depth=10.0, architecture="soak-tiny")
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["unit"]),
        helper.make_node("Mul", ["unit", "scale"], ["depth"]),
    ]
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (1, 8, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(1, np.float32), "b2"),
        numpy_helper.from_array(np.array(spec.max_depth, np.float32), "scale"),
    ]
    graph = helper.make_graph(
        nodes, "soak", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 96, 128])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, 96, 128])], weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in spec.to_metadata_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def short_video(path: Path, count: int = 60) -> Path:
    cv2 = import_cv2()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
    for frame in synthetic_frames(count, 320, 240):
        writer.write(frame)
    writer.release()
    return path


class MemoryProbe:
    """Samples RSS at fixed frame counts from the pipeline's per-frame callback."""

    def __init__(self, marks: List[int]) -> None:
        self.marks = set(marks)
        self.samples: Dict[int, int] = {}
        self.count = 0

    def __call__(self, frame: Any, depth: np.ndarray) -> None:
        self.count += 1
        if self.count in self.marks:
            self.samples[self.count] = rss_bytes()


def soak(args: argparse.Namespace, folder: Path) -> Dict[str, Any]:
    marks = sorted({args.warmup_frames, *range(args.warmup_frames, args.frames + 1, 1000), args.frames})
    probe = MemoryProbe(marks)
    outputs = Outputs(video=VideoSink(str(folder / "soak.mp4"), 30.0), on_depth=probe)
    if args.save_depth:
        outputs.depth = DepthWriter(str(folder / "depth"))
    source_options = SourceOptions(loop=True)
    start_rss = rss_bytes()
    started = time.perf_counter()
    with open_source(str(short_video(folder / "loop.mp4")), source_options) as source, \
            open_backend(str(tiny_model(folder / "tiny.onnx")), threads=1) as backend:
        options = PipelineOptions(max_frames=args.frames, progress_every_s=0)
        result = DepthPipeline(source, backend, outputs, options).run()
    baseline, final = probe.samples[args.warmup_frames], probe.samples[args.frames]
    growth_mb = (final - baseline) / 2**20
    return {
        "frames": result.frames,
        "exit_reason": result.exit_reason,
        "fps": round(result.fps, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "rss_mb_at_start": round(start_rss / 2**20, 2),
        "rss_mb_by_frame": {str(k): round(v / 2**20, 2) for k, v in sorted(probe.samples.items())},
        "rss_growth_after_warmup_mb": round(growth_mb, 3),
        "limit_mb": GROWTH_LIMIT_MB,
        "passed": growth_mb <= GROWTH_LIMIT_MB and result.frames["processed"] == args.frames,
        "stages_ms": {k: {q: v[q] for q in ("p50", "p99")} for k, v in result.stages_ms.items()},
        "environment": environment(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--warmup-frames", type=int, default=1000, help="frame count at which the baseline is taken")
    parser.add_argument("--save-depth", action="store_true", help="also write every depth map as a PNG")
    args = parser.parse_args()
    if not 0 < args.warmup_frames < args.frames:
        parser.error("need 0 < --warmup-frames < --frames")
    with tempfile.TemporaryDirectory(prefix="soak_runtime_") as folder:
        report = soak(args, Path(folder))
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
