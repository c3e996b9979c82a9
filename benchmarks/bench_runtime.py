"""depth-run vs the bare backend, side by side on the same 720p frames (JSON on stdout).

Measures, in one run:
  (a) the bare ONNX Runtime ``infer`` loop on frames preprocessed beforehand (fps);
  (b) ``depth-run --no-display`` end to end on the same video (fps from its stats), and its
      ratio to (a) (target >= 0.95; best of --repeats interleaved runs each, since other load on
      a shared machine only ever slows a run down); also with ``--output`` and ``--save-depth``;
  (c) preprocess (720p -> model size) + postprocess (depth copy + colour map) time per frame
      against inference time (target <= 5%).

    python benchmarks/bench_runtime.py [--model MODEL.onnx] [--video VIDEO.mp4] [--repeats 3] [--threads N]

Without --model a ResNet18 depth network at 256x320 is exported (needs the train and export
extras); without --video a 120-frame 1280x720 clip of moving structured content is written.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edgedepth.colormap import colorize_depth
from edgedepth.preprocess import import_cv2, preprocess
from edgedepth.runtime import open_backend, open_source
from edgedepth.runtime.backend import warm_up
from edgedepth.runtime.bench import environment, synthetic_frames
from edgedepth.runtime.cli import run_main
from edgedepth.spec import ModelSpec

from common import random_checkpoint  # benchmarks/common.py (run as a script)


def make_model(folder: Path) -> Path:
    """Export the representative network: ResNet18 encoder-decoder, 256x320, static batch 1."""
    from edgedepth.export.onnx_export import export_onnx

    checkpoint = random_checkpoint(folder / "resnet18_256x320.pt", 256, 320)
    output = folder / "resnet18_256x320.onnx"
    export_onnx(checkpoint, output, log=lambda message: print(message, file=sys.stderr))
    return output


def make_video(folder: Path, count: int = 120) -> Path:
    """A 1280x720 mp4v clip of moving shapes over gradients."""
    cv2 = import_cv2()
    path = folder / "clip_720p.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (1280, 720))
    for frame in synthetic_frames(count, 1280, 720):
        writer.write(frame)
    writer.release()
    return path


def read_frames(video: Path) -> List[np.ndarray]:
    frames = []
    with open_source(str(video)) as source:
        while (frame := source.read()) is not None:
            frames.append(frame.image)
    return frames


def bare_infer_fps(model: Path, tensors: List[np.ndarray], threads: int) -> float:
    """(a): the backend alone, on frames preprocessed beforehand."""
    with open_backend(str(model), threads=threads or None) as backend:
        warm_up(backend, 5)
        start = time.perf_counter()
        for tensor in tensors:
            backend.infer(tensor)
        return len(tensors) / (time.perf_counter() - start)


def depth_run_stats(model: Path, video: Path, folder: Path, threads: int, extra: List[str]) -> Dict[str, Any]:
    """(b): depth-run on the video, headless; returns its stats JSON."""
    stats = folder / "stats.json"
    argv = ["--model", str(model), "--input", str(video), "--no-display", "--quiet", "--stats-json", str(stats)]
    argv += (["--threads", str(threads)] if threads else []) + extra
    if run_main(argv) != 0:
        raise SystemExit("depth-run failed")
    return json.loads(stats.read_text())


def pre_post_ms(model: Path, frames: List[np.ndarray], threads: int) -> Dict[str, float]:
    """(c): mean preprocess and postprocess time per frame, and inference time, measured alone."""
    with open_backend(str(model), threads=threads or None) as backend:
        spec = backend.spec
        warm_up(backend, 3)
        pre, post, infer = [], [], []
        for image in frames:
            start = time.perf_counter()
            tensor = preprocess(image, spec)
            middle = time.perf_counter()
            output = backend.infer(tensor)
            after = time.perf_counter()
            colorize_depth(np.array(output[0, 0], dtype=np.float32), spec.min_depth, spec.max_depth)
            end = time.perf_counter()
            pre.append(middle - start)
            infer.append(after - middle)
            post.append(end - after)
    stages = (("preprocess", pre), ("postprocess", post), ("infer", infer))
    return {key: 1000 * statistics.fmean(values) for key, values in stages}


def run(args: argparse.Namespace, folder: Path) -> Dict[str, Any]:
    model = Path(args.model) if args.model else make_model(folder)
    video = Path(args.video) if args.video else make_video(folder)
    frames = read_frames(video)
    spec = ModelSpec.from_metadata_props(_metadata(model))
    tensors = [preprocess(frame, spec) for frame in frames]
    bare, headless = [], []
    for _ in range(args.repeats):  # interleaved, so drifting CPU load hits both alike
        bare.append(bare_infer_fps(model, tensors, args.threads))
        headless.append(depth_run_stats(model, video, folder, args.threads, [])["fps"])
    with_outputs = depth_run_stats(model, video, folder, args.threads,
                                   ["--output", str(folder / "out.mp4"), "--save-depth", str(folder / "depth")])
    isolated = pre_post_ms(model, frames, args.threads)
    stages = with_outputs["stages_ms"]
    return {
        "model": str(model),
        "model_input": [spec.height, spec.width],
        "video": {"path": str(video), "frames": len(frames), "size": [frames[0].shape[1], frames[0].shape[0]]},
        "bare_infer_fps": [round(v, 2) for v in bare],
        "depth_run_fps": [round(v, 2) for v in headless],
        # Best of each: on a shared CPU, other load only ever slows a measurement down.
        "ratio_depth_run_to_bare": round(max(headless) / max(bare), 3),
        "ratio_of_medians": round(statistics.median(headless) / statistics.median(bare), 3),
        "target_ratio": 0.95,
        "depth_run_with_outputs": {
            "fps": with_outputs["fps"], "stages_ms_mean": {k: v["mean"] for k, v in stages.items()}
        },
        "pre_post_ms_isolated": {k: round(v, 3) for k, v in isolated.items()},
        "pre_post_fraction_of_infer": round((isolated["preprocess"] + isolated["postprocess"]) / isolated["infer"], 4),
        "pre_post_fraction_in_depth_run": round(
            (stages["preprocess"]["mean"] + stages["postprocess"]["mean"]) / stages["infer"]["mean"], 4
        ),
        "target_pre_post_fraction": 0.05,
        "environment": environment(),
    }


def _metadata(model: Path) -> Dict[str, str]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ONNX model with an edgedepth spec (default: export ResNet18 256x320)")
    parser.add_argument("--video", help="video to run on (default: a synthetic 120-frame 720p clip)")
    parser.add_argument("--repeats", type=int, default=3, help="times to measure (a) and (b), interleaved")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (default: ORT's choice)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_runtime_") as folder:
        print(json.dumps(run(args, Path(folder)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
