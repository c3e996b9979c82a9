"""depth-export: checkpoint -> ONNX (FP32/FP16) -> TensorRT engine.

    depth-export onnx   --checkpoint best.pt --output model.onnx [--dynamic] [--fp16]
    depth-export fp16   --onnx model.onnx [--output model.fp16.onnx]
    depth-export engine --onnx model.onnx --output model.engine --precision fp16 [--cache-dir DIR]
    depth-export check  model.onnx --trt-version 8.6 [10.3 11 ...]
    depth-export info   model.onnx | model.engine

Exit status (edgedepth.cli.run_command): 0 on success, 1 when the export fails (one-line reason on
stderr) or `check` finds a violation (one per line on stdout), 2 on usage errors, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from edgedepth import __version__
from edgedepth.cli import non_negative_int, positive_float, positive_int, run_command
from edgedepth.errors import EdgeDepthError, ExportError, UsageError

PROG = "depth-export"


def _shape(text: str):
    from edgedepth.export.profiles import parse_shape

    try:
        return parse_shape(text)
    except EdgeDepthError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _input_side(name: str):
    """argparse type for ``--height``/``--width``: a multiple of 32 up to the spec's limit (exit 2 otherwise)."""
    from edgedepth.spec import check_input_side

    def parse(text: str) -> int:
        value = positive_int(text)
        try:
            check_input_side(name, value)
        except EdgeDepthError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return value

    return parse


def _opset(text: str) -> int:
    """argparse type for ``--opset``: a whole number from MIN_OPSET (exit 2 otherwise)."""
    from edgedepth.export.onnx_export import DEFAULT_OPSET, MIN_OPSET

    if not text.strip().isdigit() or int(text) < MIN_OPSET:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an opset edgedepth exports to: use {MIN_OPSET} or newer "
            f"({DEFAULT_OPSET} suits TensorRT 8.5 to 11)"
        )
    return int(text)


def trt_target(text: str):
    """argparse type for ``--trt-version``: a usage error (exit 2) when unreadable."""
    from edgedepth.trt.generation import parse_target

    try:
        return parse_target(text)
    except EdgeDepthError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_onnx(commands) -> None:
    from edgedepth.export.onnx_export import DEFAULT_OPSET

    cmd = commands.add_parser("onnx", help="export a checkpoint to a verified, self-describing ONNX")
    cmd.add_argument("--checkpoint", required=True, help="checkpoint .pt written by depth-train")
    cmd.add_argument("--output", required=True, help="ONNX file to write (FP16 graph with --fp16)")
    cmd.add_argument("--height", type=_input_side("height"),
                     help="input height (multiple of 32, at most 8192; default: training size)")
    cmd.add_argument("--width", type=_input_side("width"),
                     help="input width (multiple of 32, at most 8192; default: training size)")
    cmd.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width (multiples of 32)")
    cmd.add_argument("--batch", type=positive_int, default=1, help="static batch size (default 1)")
    cmd.add_argument("--opset", type=_opset, default=DEFAULT_OPSET,
                     help=f"ONNX opset (default {DEFAULT_OPSET}: TensorRT 8.5+)")
    cmd.add_argument("--fp16", action="store_true", help="write the FP16 graph (FP32 kept beside it as *.fp32.onnx)")
    cmd.add_argument("--no-simplify", action="store_true", help="skip onnxslim graph simplification")


def _add_fp16(commands) -> None:
    from edgedepth.export.fp16 import DEFAULT_DATA_MAX

    cmd = commands.add_parser("fp16", help="convert an FP32 ONNX to a verified mixed-FP16 ONNX")
    cmd.add_argument("--onnx", required=True, help="FP32 ONNX from `depth-export onnx`")
    cmd.add_argument("--output", help="FP16 ONNX to write (default: <name>.fp16.onnx)")
    cmd.add_argument(
        "--data-max", type=positive_float, default=DEFAULT_DATA_MAX,
        help=f"keep nodes whose activations exceed this magnitude in FP32 (default {DEFAULT_DATA_MAX:g})",
    )
    cmd.add_argument("--keep-fp32", action="append", default=[], metavar="NODE", help="also keep this node in FP32")
    cmd.add_argument(
        "--converter", choices=["modelopt.onnx.autocast", "onnxconverter_common.float16"],
        help="FP16 converter (default: ModelOpt AutoCast when installed, else onnxconverter-common)",
    )


def _add_engine(commands) -> None:
    cmd = commands.add_parser("engine", help="build a TensorRT engine (+ .json provenance sidecar)")
    cmd.add_argument("--onnx", required=True, help="ONNX from `depth-export onnx` (FP32, FP16) or `depth-calib` (Q/DQ)")
    cmd.add_argument("--output", required=True, help="engine file to write; the sidecar goes to <output>.json")
    cmd.add_argument("--precision", required=True, choices=["fp32", "fp16", "int8"])
    cmd.add_argument("--calib-cache", help="INT8 calibration cache from depth-calib (TensorRT 8.x/10.x)")
    cmd.add_argument("--workspace", type=positive_float, metavar="GiB", help="builder workspace limit in GiB")
    cmd.add_argument("--timing-cache", help="timing cache file: read when present, written after the build")
    cmd.add_argument("--dla-core", type=non_negative_int,
                     help="build for this DLA core (Jetson AGX Orin / Orin NX), GPU fallback on")
    for bound in ("min", "opt", "max"):
        cmd.add_argument(f"--{bound}-shape", type=_shape, metavar="NxCxHxW", help=f"{bound} input shape (dynamic ONNX)")
    cmd.add_argument("--version-compatible", action="store_true", help="engine also runs on later TensorRT (8.6+)")
    cmd.add_argument(
        "--hardware-compatibility", default="none", choices=["none", "ampere+", "same-compute-capability"],
        help="engine runs on other GPUs of that class (desktop Ampere+; 8.6+)",
    )
    cmd.add_argument("--cache-dir",
                     help="reuse an identical engine built before (keyed by ONNX, TensorRT, GPU, options)")


def _add_check(commands) -> None:
    cmd = commands.add_parser(
        "check", help="check an ONNX against a TensorRT generation's parser rules (no TensorRT needed)"
    )
    cmd.add_argument("onnx", help="ONNX file (FP32, FP16 or Q/DQ INT8)")
    cmd.add_argument("--trt-version", nargs="+", metavar="V", type=trt_target,
                     help="TensorRT version(s) to check for, e.g. 8.5 8.6 10.3 10.16 11 "
                          "(default: the installed one, else 10)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edgedepth {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{onnx,fp16,engine,check,info}")
    _add_onnx(commands)
    _add_fp16(commands)
    _add_engine(commands)
    _add_check(commands)
    info = commands.add_parser("info", help="print what an ONNX or engine holds (spec, precision, shapes)")
    info.add_argument("artifact", help="an .onnx file, or an engine with its .json sidecar")
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_onnx(args) -> None:
    from edgedepth.export.onnx_export import export_onnx

    export_onnx(
        args.checkpoint, args.output, height=args.height, width=args.width, dynamic=args.dynamic, batch=args.batch,
        opset=args.opset, simplify=not args.no_simplify, fp16=args.fp16, log=_log,
    )


def run_fp16(args) -> None:
    from edgedepth.export.fp16 import convert_to_fp16
    from edgedepth.export.verify import summary

    result = convert_to_fp16(
        args.onnx, args.output, data_max=args.data_max, keep_fp32=args.keep_fp32, converter=args.converter, log=_log
    )
    _log(f"wrote {result.path} (FP16, {len(result.fp32_nodes)} nodes kept FP32); {summary(result.checks)}")


def run_engine(args) -> None:
    from edgedepth.export.trt_build import build_engine

    build_engine(
        args.onnx, args.output, precision=args.precision, calib_cache=args.calib_cache, workspace_gib=args.workspace,
        timing_cache=args.timing_cache, dla_core=args.dla_core, min_shape=args.min_shape, opt_shape=args.opt_shape,
        max_shape=args.max_shape, version_compatible=args.version_compatible,
        hardware_compatibility=args.hardware_compatibility, cache_dir=args.cache_dir, log=_log,
    )


def run_check(args) -> int:
    """Print each violation on one line; 1 when there is any, 0 when the graph conforms everywhere asked."""
    from edgedepth.export.conformance import check_graph, load_graph, table_for
    from edgedepth.trt.generation import default_target

    targets = args.trt_version or [default_target()]
    graph = load_graph(args.onnx)
    found = 0
    for target in targets:
        violations = check_graph(graph, target)
        for violation in violations:
            print(f"{args.onnx}: {target.label}: {violation.line()}")
        if not violations:
            print(f"{args.onnx}: conforms to {target.label} (onnx-tensorrt operator table {table_for(target).key})")
        found += len(violations)
    if found:
        _log(f"{PROG} check: {found} violation(s)")
    return 1 if found else 0


def _check_artifact(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder; pass an .onnx file, or an engine file with its .json sidecar beside it")
    if not path.exists():
        raise ExportError(f"{path} does not exist; pass an .onnx file from `depth-export onnx` or an engine from "
                          "`depth-export engine`")


def run_info(args) -> None:
    from edgedepth.export import onnx_info
    from edgedepth.trt.sidecar import read_sidecar

    _check_artifact(Path(args.artifact))
    if str(args.artifact).endswith(".onnx"):
        report = {
            "precision": onnx_info.onnx_precision(args.artifact),
            "inputs": [vars(t) for t in onnx_info.graph_inputs(args.artifact)],
            "outputs": [vars(t) for t in onnx_info.graph_outputs(args.artifact)],
            "model_spec": onnx_info.read_spec(args.artifact, against_graph=True).to_dict(),
        }
    else:
        report = read_sidecar(args.artifact).to_dict()
    print(json.dumps(report, indent=2, default=list))


def _check_usage(parser: argparse.ArgumentParser, args) -> None:
    if args.command == "onnx" and (args.height is None) != (args.width is None):
        parser.error("give --height and --width together (both multiples of 32), or neither for the training size")
    if args.command == "onnx" and args.dynamic and args.batch != 1:
        parser.error("--batch sets a static batch size; with --dynamic the batch is already dynamic: drop --batch")


COMMANDS = {"onnx": run_onnx, "fp16": run_fp16, "engine": run_engine, "check": run_check, "info": run_info}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-export``; returns the exit status."""
    return run_command(PROG, build_parser(), lambda args: COMMANDS[args.command](args), argv, validate=_check_usage)


if __name__ == "__main__":
    sys.exit(main())
