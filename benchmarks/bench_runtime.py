"""depth-run vs the bare backend on the same frames, per video and model size (JSON on stdout).

For each video (every --video, and the synthetic 720p clip unless --no-synthetic) and each model
(every --model, or a ResNet18 exported at each of --sizes: the demo model's 96x128 and 256x320),
it measures in one run:
  (a) the bare ONNX Runtime ``infer`` loop, one call after the other, on the video's first
      --frames frames preprocessed beforehand, with the settings the backend has alone (ONNX
      Runtime's default threads, or --threads) (fps);
  (b) ``depth-run --no-display`` end to end on the same frames, with its own defaults (fps from its
      stats; the streams and threads it chose are reported), and (b)/(a) (target >= 0.95; best of
      --repeats interleaved runs each, since other load on a shared machine only ever slows a run
      down; the CPUs other processes used during each run are reported, and --settle waits for
      them to go quiet first);
  (c) when depth-run ran several frames at once: the bare backend run the same way (that many
      threads calling ``infer`` at once, with depth-run's threads each), the CPU's own ceiling,
      and (b)/(c); and depth-run with ``--streams 1`` (what a live source gets: one frame in
      flight on all the cores) against (a);
  (d) depth-run with ``--output`` and ``--save-depth``, and preprocess + postprocess time per frame
      against inference time measured alone (target <= 5%).

    python benchmarks/bench_runtime.py [--video VIDEO.avi ...] [--no-synthetic] [--model MODEL.onnx ...]
                                       [--sizes 96x128,256x320] [--frames 200] [--repeats 3] [--settle 0]
                                       [--threads N]

OpenCV's sample videos (vtest.avi: 768x576 MS-MPEG4; Megamind.avi: 720x528 MPEG-4) come with
Debian's opencv-doc package; docs/RUNTIME.md says how to get them. Exporting the models needs the
train and export extras. Nothing is downloaded and nothing is written outside a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edgedepth.colormap import colorize_depth
from edgedepth.preprocess import import_cv2, preprocess
from edgedepth.runtime import open_backend, open_source
from edgedepth.runtime.backend import Backend, warm_up
from edgedepth.runtime.bench import environment, synthetic_frames
from edgedepth.runtime.cli import run_main
from edgedepth.runtime.streams import plan_inference
from edgedepth.spec import ModelSpec

from common import random_checkpoint  # benchmarks/common.py (run as a script)

TARGET_RATIO = 0.95
TARGET_PRE_POST = 0.05


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_model(folder: Path, height: int, width: int) -> Path:
    """Export the representative network (the demo's ResNet18 encoder-decoder) at ``height`` x ``width``."""
    from edgedepth.export.onnx_export import export_onnx

    checkpoint = random_checkpoint(folder / f"resnet18_{height}x{width}.pt", height, width)
    output = folder / f"resnet18_{height}x{width}.onnx"
    export_onnx(checkpoint, output, log=log)
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


def read_frames(video: Path, count: int) -> List[np.ndarray]:
    frames = []
    with open_source(str(video)) as source:
        while len(frames) < count and (frame := source.read()) is not None:
            frames.append(frame.image)
    if not frames:
        raise SystemExit(f"{video} gave no frame")
    return frames


def codec(video: Path) -> str:
    cv2 = import_cv2()
    capture = cv2.VideoCapture(str(video))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
    capture.release()
    return fourcc.to_bytes(4, "little").decode("ascii", errors="replace").strip("\x00")


def infer_fps(backend: Backend, tensors: List[np.ndarray], callers: int = 1) -> float:
    """Frames per second of ``infer`` over ``tensors``, from ``callers`` threads at once (after a warm-up)."""
    warm_up(backend, 5)
    parts = [tensors[index::callers] for index in range(callers)]

    def work(part: List[np.ndarray]) -> None:
        for tensor in part:
            backend.infer(tensor)

    threads = [threading.Thread(target=work, args=(part,)) for part in parts]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(tensors) / (time.perf_counter() - start)


def bare_fps(model: Path, tensors: List[np.ndarray], threads: int, callers: int = 1) -> float:
    """(a) with one caller and the backend's own settings; (c) with depth-run's streams and threads."""
    with open_backend(str(model), threads=threads or None) as backend:
        return infer_fps(backend, tensors, callers)


def depth_run_stats(model: Path, video: Path, folder: Path, frames: int, threads: int,
                    extra: Optional[List[str]] = None) -> Dict[str, Any]:
    """(b): depth-run on the video's first ``frames`` frames, headless; returns its stats JSON."""
    stats = folder / "stats.json"
    argv = ["--model", str(model), "--input", str(video), "--no-display", "--quiet", "--stats-json", str(stats),
            "--max-frames", str(frames)]
    argv += (["--threads", str(threads)] if threads else []) + (extra or [])
    if run_main(argv) != 0:
        raise SystemExit("depth-run failed")
    return json.loads(stats.read_text())


def pre_post_ms(model: Path, frames: List[np.ndarray], threads: int) -> Dict[str, float]:
    """(d): mean preprocess and postprocess time per frame, and inference time, measured alone."""
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


def _cpu_ticks() -> Optional[Tuple[int, int]]:
    """(busy clock ticks of the whole machine, ticks of this process), or None without /proc."""
    try:
        machine = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return sum(machine) - machine[3] - machine[4], int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


def with_other_load(run: Callable[[], float]) -> Tuple[float, Optional[float]]:
    """``run()`` and the CPUs other processes kept busy meanwhile (None without /proc)."""
    before, start = _cpu_ticks(), time.perf_counter()
    value = run()
    after, elapsed = _cpu_ticks(), time.perf_counter() - start
    if before is None or after is None:
        return value, None
    ticks = (after[0] - before[0]) - (after[1] - before[1])
    return value, round(max(0.0, ticks / os.sysconf("SC_CLK_TCK") / elapsed), 2)


def settle(limit_s: float) -> None:
    """Wait up to ``limit_s`` for other processes to use under 5% of one CPU (over half a second)."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        load = with_other_load(lambda: time.sleep(0.5) or 0.0)[1]
        if load is None or load < 0.05:
            return


def interleaved(runners: Dict[str, Callable[[], float]], repeats: int,
                settle_s: float) -> Tuple[Dict[str, List[float]], Dict[str, List[Optional[float]]]]:
    """``repeats`` values per runner, taken in rotating order so drifting CPU load hits all alike, and
    the CPUs other processes used during each."""
    names = list(runners)
    values: Dict[str, List[float]] = {name: [] for name in names}
    loads: Dict[str, List[Optional[float]]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            settle(settle_s)
            value, load = with_other_load(runners[name])
            values[name].append(value)
            loads[name].append(load)
            log(f"    {name}: {value:.2f} fps (other processes: {load} CPUs)")
    return values, loads


def ratios(numerator: List[float], denominator: List[float]) -> Dict[str, float]:
    # Best of each: on a shared CPU, other load only ever slows a measurement down.
    return {"best": round(max(numerator) / max(denominator), 3),
            "of_medians": round(statistics.median(numerator) / statistics.median(denominator), 3)}


def measure(model: Path, video: Path, folder: Path, args: argparse.Namespace) -> Dict[str, Any]:
    """(a)-(d) for one video and one model."""
    frames = read_frames(video, args.frames)
    spec = ModelSpec.from_metadata_props(_metadata(model))
    tensors = [preprocess(frame, spec) for frame in frames]
    count = len(frames)
    plan = plan_inference("onnxruntime", live=False, threads=args.threads or None)  # what depth-run will pick
    last: Dict[str, Any] = {}

    def headless() -> float:
        last.update(depth_run_stats(model, video, folder, count, args.threads))
        return float(last["fps"])

    runners: Dict[str, Callable[[], float]] = {"bare": lambda: bare_fps(model, tensors, args.threads),
                                               "depth_run": headless}
    if plan.streams > 1:
        runners["bare_concurrent"] = lambda: bare_fps(model, tensors, plan.threads or 0, plan.streams)
        runners["depth_run_one_stream"] = lambda: float(
            depth_run_stats(model, video, folder, count, args.threads, ["--streams", "1"])["fps"])
    fps, loads = interleaved(runners, args.repeats, args.settle)
    streams, threads = last["streams"], last["threads"]
    result: Dict[str, Any] = {
        "video": {"path": str(video), "name": video.name, "codec": codec(video), "frames": count,
                  "size": [frames[0].shape[1], frames[0].shape[0]]},
        "model": str(model),
        "model_input": [spec.height, spec.width],
        "depth_run_inference": {"streams": streams, "threads": threads},
        "bare_infer_fps": [round(v, 2) for v in fps["bare"]],
        "depth_run_fps": [round(v, 2) for v in fps["depth_run"]],
        "ratio_depth_run_to_bare": ratios(fps["depth_run"], fps["bare"])["best"],
        "ratio_of_medians": ratios(fps["depth_run"], fps["bare"])["of_medians"],
        "other_processes_cpus": loads,
    }
    if "bare_concurrent" in fps:
        result["bare_concurrent_fps"] = [round(v, 2) for v in fps["bare_concurrent"]]
        result["ratio_depth_run_to_bare_concurrent"] = ratios(fps["depth_run"], fps["bare_concurrent"])["best"]
        result["depth_run_one_stream_fps"] = [round(v, 2) for v in fps["depth_run_one_stream"]]
        result["ratio_depth_run_one_stream_to_bare"] = ratios(fps["depth_run_one_stream"], fps["bare"])["best"]
    result.update(outputs_and_pre_post(model, video, folder, frames, args))
    return result


def outputs_and_pre_post(model: Path, video: Path, folder: Path, frames: List[np.ndarray],
                         args: argparse.Namespace) -> Dict[str, Any]:
    """(d) for one video and one model."""
    extra = ["--output", str(folder / "out.mp4"), "--save-depth", str(folder / "depth")]
    with_outputs = depth_run_stats(model, video, folder, len(frames), args.threads, extra)
    isolated = pre_post_ms(model, frames, args.threads)
    stages = with_outputs["stages_ms"]
    return {
        "depth_run_with_outputs": {
            "fps": with_outputs["fps"], "stages_ms_mean": {k: v["mean"] for k, v in stages.items()}
        },
        "pre_post_ms_isolated": {k: round(v, 3) for k, v in isolated.items()},
        "pre_post_fraction_of_infer": round((isolated["preprocess"] + isolated["postprocess"]) / isolated["infer"], 4),
        "pre_post_fraction_in_depth_run": round(
            (stages["preprocess"]["mean"] + stages["postprocess"]["mean"]) / stages["infer"]["mean"], 4
        ),
    }


def summary(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{"video": r["video"]["name"], "model_input": r["model_input"], "ratio": r["ratio_depth_run_to_bare"],
             "at_target": r["ratio_depth_run_to_bare"] >= TARGET_RATIO} for r in results]


def run(args: argparse.Namespace, folder: Path) -> Dict[str, Any]:
    models = [Path(model) for model in args.model] or [make_model(folder, h, w) for h, w in args.sizes]
    videos = [Path(video) for video in args.video] + ([] if args.no_synthetic else [make_video(folder)])
    results = []
    for video in videos:
        for model in models:
            log(f"{video.name} x {model.name}")
            results.append(measure(model, video, folder, args))
    rows = summary(results)
    return {
        "target_ratio": TARGET_RATIO,
        "target_pre_post_fraction": TARGET_PRE_POST,
        "repeats": args.repeats,
        "summary": rows,
        "all_at_target": all(row["at_target"] for row in rows),
        "results": results,
        "environment": environment(),
    }


def _metadata(model: Path) -> Dict[str, str]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def _sizes(text: str) -> List[Tuple[int, int]]:
    try:
        pairs = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(pair) != 2 or min(pair) <= 0 or pair[0] % 32 or pair[1] % 32 for pair in pairs):
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: HEIGHTxWIDTH pairs, multiples of 32, comma-separated")
    return [(pair[0], pair[1]) for pair in pairs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", action="append", default=[], help="a video to run on (repeatable)")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic 120-frame 720p clip")
    parser.add_argument("--model", action="append", default=[], help="ONNX model with an edgedepth spec (repeatable)")
    parser.add_argument("--sizes", type=_sizes, default=[(96, 128), (256, 320)],
                        help="without --model: ResNet18 input sizes to export (default 96x128,256x320)")
    parser.add_argument("--frames", type=int, default=200, help="frames per run: each video's first N")
    parser.add_argument("--repeats", type=int, default=3, help="times to measure (a)-(c), interleaved")
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="before each measurement wait up to this long for other processes to go quiet")
    parser.add_argument("--threads", type=int, default=0,
                        help="ONNX Runtime intra-op threads for both (default: each its own choice)")
    args = parser.parse_args()
    if not args.video and args.no_synthetic:
        parser.error("--no-synthetic needs at least one --video")
    with tempfile.TemporaryDirectory(prefix="bench_runtime_") as folder:
        print(json.dumps(run(args, Path(folder)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
