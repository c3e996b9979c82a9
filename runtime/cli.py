"""``depth-run`` (live depth from a camera, stream or file) and ``depth-bench`` (backend speed).

Errors end the command with one line on stderr (edgedepth.cli.run_command): exit 2 for a usage
error (outputs are checked before any work), 1 for a failure, 130 when interrupted before
streaming. Once streaming, Ctrl-C, SIGTERM and SIGHUP end the run after the frame being rendered:
outputs finalised, exit 0.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import re
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from edgedepth.camera import CameraCalibration, parse_intrinsics
from edgedepth.cli import (
    configure_logging,
    describe_os_error,
    non_negative_int,
    on_stop_signals,
    positive_float,
    positive_int,
    run_command,
)
from edgedepth.colormap import COLORMAPS
from edgedepth.errors import UsageError
from edgedepth.io import check_outputs, check_writable_folder, same_file, write_json_atomic
from edgedepth.native import IMPLEMENTATIONS as PREPROCESS_CHOICES
from edgedepth.native import preprocessor
from edgedepth.runtime.align import ALIGN_MODES, SparseAlignment, SparseSource
from edgedepth.runtime.backend import (
    BACKEND_CHOICES,
    BACKEND_SUFFIXES,
    Backend,
    backends_taking,
    open_backend,
    resolve_backend,
)
from edgedepth.runtime.bench import benchmark_backend, environment, frames_from_source, make_batches, synthetic_frames
from edgedepth.runtime.focal import DepthCamera, FocalRescale, no_training_camera
from edgedepth.runtime.pipeline import DepthPipeline, DepthStage, Outputs, PipelineError, PipelineOptions, RunResult
from edgedepth.runtime.points import FrameClouds, PointsWriter
from edgedepth.runtime.record import DEFAULT_FRAME_ID, FrameClock, McapRecorder
from edgedepth.runtime.ros_messages import Topics
from edgedepth.runtime.sinks import DEPTH_FORMATS, DepthWriter, VideoSink, WindowSink, display_decision, probe_window
from edgedepth.runtime.sources import (
    FLIP_METHODS,
    ReconnectPolicy,
    Source,
    SourceOptions,
    image_paths,
    open_source,
    parse_source_uri,
    redact_url,
)
from edgedepth.runtime.sparse import SparseDepthReader, match_mode
from edgedepth.runtime.stats import format_summary
from edgedepth.runtime.streams import InferencePlan, plan_inference
from edgedepth.runtime.temporal import ScaleKalman, TemporalDepthFilter

LOG = logging.getLogger("edgedepth.runtime")
#: Exit reasons that are a normal end of a run (exit status 0).
CLEAN_EXITS = ("end_of_stream", "max_frames", "user_quit", "interrupted")
#: What --device takes: the PyTorch backend's cpu, cuda, cuda:N.
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
#: Backend options on the command line -> the backend constructor's option they set.
_BACKEND_FLAGS = {"--threads": "threads", "--providers": "providers", "--device": "device"}
#: Why a backend takes no --device, and what to use instead.
_DEVICE_HINTS = {
    "onnxruntime": "ONNX Runtime picks its device with --providers, e.g. CUDAExecutionProvider,CPUExecutionProvider",
    "tensorrt": "a TensorRT engine runs on the GPU it was built for",
}


# ---------------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------------


def _size(text: str) -> Tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"size {text!r} must be WIDTHxHEIGHT, e.g. 1280x720")
    return int(parts[0]), int(parts[1])


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", required=True, help="engine (.engine/.plan + sidecar JSON), ONNX file, or checkpoint (.pt)")
    add("--backend", choices=BACKEND_CHOICES, default="auto", help="auto picks by the model's file type")
    add("--threads", type=positive_int, help="CPU threads for ONNX Runtime / PyTorch inference")
    add("--providers", help="ONNX Runtime providers, comma-separated (default: TensorRT > CUDA > CPU)")
    add("--device", help="PyTorch checkpoints only: cpu, cuda or cuda:N (default cuda when available)")


def add_source_arguments(parser: argparse.ArgumentParser, image_topic: bool = False) -> None:
    """--camera / --input (and, for the ROS 2 node, --image-topic) with the capture options."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--camera",
                       help="0 or /dev/video0 (V4L2), csi://0 (Jetson CSI), rtsp://..., or a GStreamer pipeline")
    where.add_argument("--input", help="video file, image, folder or glob of images, or any --camera address")
    if image_topic:
        where.add_argument("--image-topic", help="subscribe to this sensor_msgs/Image topic (bgr8, rgb8, mono8)")
    add = parser.add_argument_group("capture").add_argument
    add("--camera-size", type=_size, help="capture size WIDTHxHEIGHT (V4L2, CSI; CSI default 1280x720)")
    add("--camera-fps", type=positive_float, help="capture frame rate (V4L2, CSI; CSI default 30)")
    add("--camera-fourcc", help="V4L2 pixel format, e.g. MJPG (many webcams reach full rate only in MJPG)")
    add("--flip", default="none", help=f"CSI flip: 0-7 or {', '.join(FLIP_METHODS)}")
    add("--loop", action="store_true", help="start a video/image input over at its end")
    add("--reconnect-attempts", type=non_negative_int, default=5, help="live source: reopen tries after a drop")
    add("--frame-timeout", type=positive_float, default=10.0, help="live source: seconds without a frame = stalled")


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("output").add_argument
    add("--no-display", action="store_true", help="no window (automatic when no display is available)")
    add("--output", help="write the side-by-side view to this video file (.mp4: mp4v, .avi: MJPG)")
    add("--output-fps", type=positive_float, help="frame rate of --output (default: the source's, else 30)")
    add("--save-depth", metavar="DIR", help="write raw metric depth per frame into DIR")
    add("--depth-format", choices=DEPTH_FORMATS, default="png", help="png: uint16 millimetres; npy: float32 metres")
    add("--colormap", choices=COLORMAPS, default="turbo")
    add("--depth-range", nargs=2, type=float, metavar=("MIN", "MAX"),
        help="colour range in metres (default: the model's)")
    add("--no-overlay", action="store_true", help="no FPS/latency text on the view")
    add("--max-frames", type=positive_int, help="stop after this many frames")
    add("--stats-json", metavar="FILE", help="write frame counts, fps and per-stage timings here")
    add("--quiet", action="store_true", help="only errors on stderr")
    _add_robot_arguments(parser)


def add_intrinsics_argument(add: Callable[..., Any]) -> None:
    """--intrinsics, given a parser's or a group's ``add_argument``."""
    add("--intrinsics", metavar="FILE|fx,fy,cx,cy",
        help="your camera at its capture resolution (OpenCV / ROS camera_info YAML, or four pixel values): metric "
             "depth is rescaled by f_yours / f_training, and points and camera_info use it")


def add_topic_arguments(add: Callable[..., Any]) -> None:
    """--topic-prefix and --frame-id, given a parser's or a group's ``add_argument``."""
    add("--topic-prefix", default="/edgedepth", help="ROS 2 topic namespace (default /edgedepth)")
    add("--frame-id", default=DEFAULT_FRAME_ID, help=f"header frame_id (default {DEFAULT_FRAME_ID})")


def add_temporal_argument(add: Callable[..., Any]) -> None:
    """--temporal, given a parser's or a group's ``add_argument``."""
    add("--temporal", type=positive_float, metavar="ALPHA",
        help="steady depth on a stream: weight of the new frame per pixel, 0 < ALPHA <= 1 (e.g. 0.3); changes "
             "beyond noise and pixels whose image changed follow at once (docs/ALIGNMENT.md)")


def _add_robot_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("camera, point clouds and ROS 2 recording (README: Robots)").add_argument
    add_intrinsics_argument(add)
    add("--sparse-depth", metavar="DIR",
        help="per-frame sparse metric depth (16-bit PNG mm or .npy m, 0 = none), named like the images (folder "
             "input) or by frame index (000123.png): each frame is fitted to its points (--align)")
    add("--align", choices=ALIGN_MODES, default="scale_shift",
        help="--sparse-depth fit, in inverse depth with outlier rejection (default scale_shift)")
    add_temporal_argument(add)
    add("--save-points", metavar="DIR", help="write a binary PLY point cloud per frame into DIR (metres, "
                                             "optical frame)")
    add("--points-stride", type=positive_int, default=1,
        help="--save-points and --record's PointCloud2: every N-th pixel of every N-th row")
    add("--no-points-color", action="store_true", help="--save-points: x, y, z only (no red/green/blue)")
    add("--record", metavar="FILE.mcap",
        help="record ROS 2 depth (32FC1), image (bgr8), camera_info and points (PointCloud2) into an MCAP file")
    add_topic_arguments(add)


def run_parser() -> argparse.ArgumentParser:
    """The ``depth-run`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="depth-run",
        description="Live metric depth from a camera, stream, video or images (TensorRT, ONNX Runtime or PyTorch).",
    )
    add_backend_arguments(parser)
    parser.add_argument("--preprocess", choices=PREPROCESS_CHOICES, default="python",
                        help="resize+normalise in python (OpenCV), native (C++, `make native`) or cuda")
    parser.add_argument("--streams", type=positive_int,
                        help="frames inferred at once (ONNX Runtime); default 2 for a file on the CPU provider "
                             "(each on half the cores, unless --threads), else 1")
    add_source_arguments(parser)
    _add_output_arguments(parser)
    return parser


def _check_run_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.depth_range and not 0 <= args.depth_range[0] < args.depth_range[1]:
        parser.error(f"--depth-range {args.depth_range[0]} {args.depth_range[1]}: need 0 <= MIN < MAX (metres)")
    if args.camera_fourcc and not 1 <= len(args.camera_fourcc) <= 4:
        parser.error(f"--camera-fourcc {args.camera_fourcc!r} must be 1-4 characters, e.g. MJPG")
    if args.flip not in FLIP_METHODS and not (args.flip.isdigit() and int(args.flip) < len(FLIP_METHODS)):
        parser.error(f"--flip {args.flip!r}: use 0-7 or one of {', '.join(FLIP_METHODS)}")
    check_temporal_arg(parser, args)


def check_temporal_arg(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--temporal is a weight: refused before any work when above 1 (positive_float refused <= 0)."""
    if args.temporal is not None and args.temporal > 1.0:
        parser.error(f"--temporal {args.temporal:g}: expected the weight of the new frame, 0 < ALPHA <= 1 "
                     "(e.g. 0.3; 1 turns smoothing off)")


def check_backend_args(args: argparse.Namespace) -> None:
    """Refuse (UsageError, before any work) a --device that is no device, and --device, --threads or
    --providers given for a model whose backend does not take it."""
    if args.device is not None and not DEVICE_PATTERN.fullmatch(args.device):
        raise UsageError(f"--device {args.device!r} is not a device: use cpu, cuda or cuda:N (N = GPU index); "
                         f"it applies to {_takers('device')} only")
    given = [flag for flag, option in _BACKEND_FLAGS.items() if getattr(args, option)]
    if not given:
        return
    backend = resolve_backend(args.model, args.backend)
    for flag in given:
        option = _BACKEND_FLAGS[flag]
        if backend not in backends_taking(option):
            hint = f" ({_DEVICE_HINTS[backend]})" if option == "device" else ""
            raise UsageError(f"{flag} applies to {_takers(option)} only; {args.model} runs on {backend}{hint}: "
                             f"drop {flag}")


def _takers(option: str) -> str:
    """``pytorch (.pt/.pth/.ckpt)``: the backends taking ``option``, with their model files."""
    return " and ".join(f"{name} ({'/'.join(BACKEND_SUFFIXES[name])})" for name in backends_taking(option))


def check_run_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output that is an input (the source video, the model), two
    outputs on one file, an output folder that cannot be written, and a --save-depth folder that
    holds the input images (their depth files would replace or join them)."""
    inputs = {"--input": args.input, "--model": args.model}
    if args.intrinsics is not None and Path(args.intrinsics).is_file():
        inputs["--intrinsics"] = args.intrinsics
    if args.record is not None and not args.record.lower().endswith(".mcap"):
        raise UsageError(f"--record {args.record}: name an .mcap file (ROS 2 MCAP recording), e.g. run.mcap")
    check_outputs({"--output": args.output, "--stats-json": args.stats_json, "--record": args.record}, inputs)
    for option, folder in (("--save-depth", args.save_depth), ("--save-points", args.save_points)):
        if folder is not None:
            _check_output_folder(option, folder, args.input)
            if args.sparse_depth is not None and same_file(folder, args.sparse_depth):
                # The depth files are named like the sparse files (frame stem or index): they would replace them.
                raise UsageError(f"{option} {folder} is the --sparse-depth folder: the files written there would "
                                 "replace the measurements; choose another folder")


def _check_output_folder(option: str, folder: str, input_uri: Optional[str]) -> None:
    """A per-frame output folder must be writable and must not be the folder of the input images."""
    check_writable_folder(folder, option)
    if input_uri is not None and any(same_file(Path(image).parent, folder) for image in image_paths(input_uri)):
        raise UsageError(f"{option} {folder} holds the --input images: the files written there would "
                         "replace or mix with them; choose another folder")


# ---------------------------------------------------------------------------------------------
# depth-run
# ---------------------------------------------------------------------------------------------


def _backend_options(args: argparse.Namespace) -> Dict[str, Any]:
    options: Dict[str, Any] = {}
    if args.threads:
        options["threads"] = args.threads
    if args.providers:
        options["providers"] = [name.strip() for name in args.providers.split(",") if name.strip()]
    if args.device:
        options["device"] = args.device
    return options


def inference_plan(args: argparse.Namespace, source: Source) -> InferencePlan:
    """Frames in flight and threads each: as asked, else what edgedepth.runtime.streams finds fastest."""
    backend = resolve_backend(args.model, args.backend)
    return plan_inference(backend, source.live, args.threads, args.streams, _backend_options(args).get("providers"))


def planned_backend_options(args: argparse.Namespace, plan: InferencePlan) -> Dict[str, Any]:
    """The backend options, with the plan's threads (--threads itself, or a share of the cores per stream)."""
    options = _backend_options(args)
    if plan.threads:
        options["threads"] = plan.threads
    return options


def source_options(args: argparse.Namespace) -> SourceOptions:
    return SourceOptions(
        camera_size=args.camera_size,
        camera_fps=args.camera_fps,
        camera_fourcc=args.camera_fourcc,
        flip=args.flip,
        loop=args.loop,
        reconnect=ReconnectPolicy(attempts=args.reconnect_attempts),
        frame_timeout_s=args.frame_timeout,
    )


def _make_outputs(args: argparse.Namespace, source: Source, camera: DepthCamera) -> Outputs:
    outputs = Outputs()
    if _want_window(args.no_display):
        outputs.window = WindowSink("depth-run (q/Esc quits)")
    if args.output:
        outputs.video = VideoSink(args.output, fps=args.output_fps or source.fps or 30.0,
                                  fourcc=_fourcc_for(args.output))
    if args.save_depth:
        outputs.depth = DepthWriter(args.save_depth, args.depth_format)
    clouds = FrameClouds(camera, args.points_stride)  # one back-projection per frame for both sinks
    if args.save_points:
        outputs.frame_sinks.append(PointsWriter(args.save_points, clouds, colour=not args.no_points_color))
    if args.record:
        clock = FrameClock(live=source.live, fps=source.fps)
        outputs.frame_sinks.append(McapRecorder(args.record, clouds, clock, Topics(args.topic_prefix), args.frame_id))
    return outputs


def depth_camera(model: str, backend: Backend, calibration: Optional[CameraCalibration],
                 needed_by: Optional[str]) -> DepthCamera:
    """The camera of the depth images; UsageError when --intrinsics, or the output ``needed_by``
    (an option, a command), needs one the model cannot give."""
    camera = DepthCamera(backend.spec, calibration)
    if calibration is not None and backend.spec.intrinsics is None:
        raise no_training_camera(model, "--intrinsics")
    if needed_by and not camera.known:
        raise UsageError(f"{needed_by} needs the camera's intrinsics and {model} does not record its training "
                         "camera: give --intrinsics FILE|fx,fy,cx,cy")
    return camera


def sparse_depth_reader(args: argparse.Namespace) -> Optional[SparseDepthReader]:
    """The --sparse-depth folder, listed now: one with no sparse file is a UsageError before any work."""
    if args.sparse_depth is None:
        return None
    uri = args.camera if args.camera is not None else args.input
    kind = parse_source_uri(uri, camera=args.camera is not None).kind
    return SparseDepthReader(args.sparse_depth, match_mode(kind))


def depth_stages(args: argparse.Namespace, camera: DepthCamera,
                 sparse: Optional[SparseSource] = None) -> List[DepthStage]:
    """The depth stages of this run, in order (edgedepth.runtime.pipeline.DepthStage): the focal
    rescale first, so later stages see metric depth for the user's camera; then the fit to sparse
    depth (which sets the metric scale itself); the temporal filter last, on the final depth, so
    what it steadies is what the sinks get. With --temporal, the alignment's scale is filtered
    across frames too (a Kalman filter on log-scale: one frame's bad fit does not jump the scale)."""
    stages: List[DepthStage] = []
    if camera.calibration is not None:
        stages.append(FocalRescale(camera))
    if sparse is not None:
        spec = camera.spec
        stages.append(SparseAlignment(sparse, args.align, spec.min_depth, spec.max_depth,
                                      ScaleKalman() if args.temporal is not None else None))
    if args.temporal is not None:
        stages.append(TemporalDepthFilter(args.temporal))
    return stages


def _want_window(no_display: bool) -> bool:
    show, why_not = display_decision(no_display, os.environ)
    if why_not:
        LOG.warning("%s", why_not)
    if show and not probe_window():
        LOG.warning("a display is set but no window can be opened there: running headless")
        return False
    return show


def _fourcc_for(path: str) -> str:
    return "MJPG" if path.lower().endswith((".avi", ".mkv")) else "mp4v"


def _stats_document(args: argparse.Namespace, backend: Backend, source: Source, result: RunResult) -> Dict[str, Any]:
    spec = backend.spec
    return {
        "model": os.path.abspath(args.model),
        "backend": backend.name,
        "backend_detail": backend.detail,
        "source": redact_url(args.camera or args.input),
        "model_input": [spec.height, spec.width],
        **result.to_dict(),
        # What the input announced (per pass; None for live sources) against what it gave.
        "source_frames": {"expected": source.expected_frames, "delivered": source.counters.delivered},
        "warnings": list(source.warnings),
        "environment": environment(),
    }


def _report(args: argparse.Namespace, backend: Backend, source: Source, result: RunResult) -> None:
    if not args.quiet:
        frames = result.frames
        print(format_summary(result.stages_ms))
        print(
            f"{frames['processed']} frames processed ({frames['read']} read, {frames['dropped']} dropped, "
            f"{frames['corrupt']} corrupt) at {result.fps:.2f} fps; stopped: {result.exit_reason}"
        )
    if args.stats_json:
        write_json_atomic(args.stats_json, _stats_document(args, backend, source, result))


def _report_failed_run(args: argparse.Namespace, backend: Backend, source: Source, result: RunResult) -> None:
    """The stats of a run that failed; a stats file that cannot be written (the same full disk) is
    logged, so the run's own error is the one reported."""
    try:
        _report(args, backend, source, result)
    except OSError as exc:
        LOG.error("the stats were not written: %s", describe_os_error(exc))


def _require_a_frame(result: RunResult, uri: str) -> RunResult:
    """An input that ended without one decodable frame failed, whatever its files were called."""
    frames = result.frames
    if result.exit_reason != "end_of_stream" or frames["processed"]:
        return result
    detail = f"{frames['corrupt']} of {frames['read']} unreadable" if frames["corrupt"] else "it gave no frame"
    message = (f"no frame of {redact_url(uri)} could be decoded ({detail}); check that it opens in an image viewer, "
               "or `ffprobe FILE` for a video")
    raise PipelineError(message, dataclasses.replace(result, exit_reason="error", error=message))


@contextlib.contextmanager
def stop_between_frames(pipeline: DepthPipeline) -> Iterator[None]:
    """While streaming, a first Ctrl-C, SIGTERM or SIGHUP ends the run after the frame being rendered,
    so the video, the depth files and the stats agree on the frame count; a second one interrupts
    at once (KeyboardInterrupt: outputs are still finalised)."""

    def _request_stop(signum: int, frame: Optional[FrameType]) -> None:
        if pipeline.stop_requested:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        pipeline.request_stop()

    with on_stop_signals(_request_stop):
        yield


def _stream(args: argparse.Namespace, calibration: Optional[CameraCalibration],
            sparse: Optional[SparseDepthReader]) -> int:
    uri = args.camera if args.camera is not None else args.input
    # The source first: a wrong path fails in milliseconds, before an engine takes seconds to load.
    with open_source(uri, source_options(args), camera=args.camera is not None) as source:
        plan = inference_plan(args, source)
        with open_backend(args.model, args.backend, **planned_backend_options(args, plan)) as backend:
            LOG.info("model %s on %s, input %dx%d", args.model, backend.detail, backend.spec.width, backend.spec.height)
            camera = depth_camera(args.model, backend, calibration, "--save-points" if args.save_points else
                                  "--record" if args.record else None)
            options = PipelineOptions(
                max_frames=args.max_frames,
                colormap=args.colormap,
                depth_range=tuple(args.depth_range) if args.depth_range else None,
                overlay=not args.no_overlay,
                progress_every_s=0 if args.quiet else 5.0,
                preprocess=args.preprocess,
                streams=plan.streams,
            )
            pipeline = DepthPipeline(source, backend, _make_outputs(args, source, camera), options,
                                     depth_stages(args, camera, sparse))
            try:
                with stop_between_frames(pipeline):
                    result = pipeline.run()
                result = _require_a_frame(result, uri)
            except PipelineError as exc:  # the stats of what ran are still written
                _report_failed_run(args, backend, source, exc.result)
                raise
            _report(args, backend, source, result)
    return 0 if result.exit_reason in CLEAN_EXITS else 1


def run_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-run``; returns the exit status."""
    return run_command("depth-run", run_parser(), _run, argv, validate=_check_run_args)


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.quiet)
    check_backend_args(args)
    check_run_outputs(args)
    preprocessor(args.preprocess)  # a --preprocess that is not built: a usage error before any work
    calibration = parse_intrinsics(args.intrinsics) if args.intrinsics is not None else None
    return _stream(args, calibration, sparse_depth_reader(args))


# ---------------------------------------------------------------------------------------------
# depth-bench
# ---------------------------------------------------------------------------------------------


def bench_parser() -> argparse.ArgumentParser:
    """The ``depth-bench`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="depth-bench",
        description="Backend latency (p50/p90/p99) and throughput after warm-up, on real or synthetic frames.",
    )
    add_backend_arguments(parser)
    parser.add_argument("--iterations", type=positive_int, default=200, help="timed inference calls")
    parser.add_argument("--warmup", type=non_negative_int, default=20, help="untimed calls first")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per call")
    parser.add_argument("--input", help="take frames from this video/images/camera (default: synthetic 720p frames)")
    parser.add_argument("--frames", type=positive_int, default=32, help="distinct frames to cycle through")
    parser.add_argument("--json", metavar="FILE", help="write the result here as JSON")
    return parser


def _bench(args: argparse.Namespace) -> Dict[str, Any]:
    with open_backend(args.model, args.backend, **_backend_options(args)) as backend:
        frames = frames_from_source(args.input, args.frames) if args.input else synthetic_frames(args.frames)
        batches = make_batches(frames, backend.spec, args.batch)
        result = benchmark_backend(backend, batches, args.iterations, args.warmup)
        return {
            "model": os.path.abspath(args.model),
            "backend": backend.name,
            "backend_detail": backend.detail,
            "model_input": [backend.spec.height, backend.spec.width],
            "input": redact_url(args.input) if args.input else f"synthetic {frames[0].shape[1]}x{frames[0].shape[0]}",
            "frames": len(frames),
            **result,
            "environment": environment(),
        }


def bench_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-bench``; returns the exit status."""
    return run_command("depth-bench", bench_parser(), _bench_command, argv)


def _bench_command(args: argparse.Namespace) -> int:
    configure_logging(quiet=True)
    check_backend_args(args)
    check_outputs({"--json": args.json}, {"--model": args.model, "--input": args.input})
    report = _bench(args)
    latency = report["latency_ms"]
    print(
        f"{report['backend_detail']}: p50 {latency['p50']:.2f} ms, p90 {latency['p90']:.2f} ms, "
        f"p99 {latency['p99']:.2f} ms, {report['throughput_fps']:.1f} images/s (batch {report['batch']})"
    )
    if args.json:
        write_json_atomic(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(run_main())
