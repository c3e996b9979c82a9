"""depth-calib: calibrate an FP32 edgedepth ONNX to INT8 and prove it still measures depth.

Exit status (edgedepth.cli.run_command): 0 = the INT8 graph meets the budget (written to --output);
1 = failure (one-line message on stderr; for a missed budget the report says what the fallback
tried); 2 = usage error; 130 = interrupted (nothing half-written is left).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from edgedepth.calib.budget import int8_budget
from edgedepth.calib.calibration_set import DEFAULT_NUM_EVAL, DEFAULT_NUM_IMAGES
from edgedepth.calib.pipeline import calibrate
from edgedepth.calib.quantizers import METHODS, QUANTIZERS, TARGETS
from edgedepth.calib.request import DEFAULT_METHOD, CalibrationRequest
from edgedepth.calib.sensitivity import DEFAULT_MAX_FALLBACK, DEFAULT_TOP_K
from edgedepth.cli import non_negative_int, positive_int, run_command
from edgedepth.export.cli import trt_target

EPILOG = f"""\
examples:
  depth-calib --onnx model.onnx --data frames/ --output model.int8.onnx
  depth-calib --onnx model.onnx --data drive.mp4 --data office/ --num-images 300 --output model.int8.onnx
  depth-calib --onnx model.onnx --data demo --save-set calib.npy --output model.int8.onnx
  depth-calib --onnx model.onnx --data frames/ --trt-version 8.5 --output model.jp5.int8.onnx   # JetPack 5
  depth-calib --onnx model.onnx --load-set calib.npy --cache model.calib     # JetPack 5/6 implicit INT8

--data takes a folder of images (searched recursively), a video (frames sampled evenly) or a
training config (YAML path or shipped name such as 'demo': its data section, --split).
Budget (INT8 vs FP32 on held-out images): the int8 row of configs/budgets/default.yaml, by default
{int8_budget().describe()};
--budget FILE.yaml overrides it (same format: an `int8:` mapping of figure -> limit, null = unchecked).
--trt-version picks what that TensorRT parses: 8.x gets ONNX Runtime's quantizer at opset 17,
10.x ModelOpt (when installed) or ONNX Runtime, 11.x the same with the unquantized layers in FP16
(head in FP32); the graph is checked like `depth-export check` before it is written.
See docs/CALIBRATION.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-calib", description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--onnx", required=True, type=Path, help="FP32 ONNX from `depth-export onnx`")
    parser.add_argument("--output", type=Path, help="Q/DQ INT8 ONNX to write (only when the budget is met)")
    parser.add_argument("--cache", type=Path, help="also write a TensorRT 8.5-10.x calibration cache (+ .json key)")
    data = parser.add_argument_group("calibration data")
    data.add_argument("--data", action="append", default=[], metavar="SOURCE",
                      help="folder, image, video or dataset config; repeat to mix sources (sampled evenly)")
    data.add_argument("--split", default="val", help="dataset split for config sources (default: val)")
    data.add_argument("--num-images", type=positive_int, default=DEFAULT_NUM_IMAGES, metavar="N",
                      help=f"calibration images (default {DEFAULT_NUM_IMAGES})")
    data.add_argument("--eval-data", action="append", default=[], metavar="SOURCE",
                      help="held-out images for the budget check (default: unused images of --data)")
    data.add_argument("--num-eval", type=non_negative_int, default=DEFAULT_NUM_EVAL, metavar="N",
                      help=f"held-out images (default {DEFAULT_NUM_EVAL})")
    data.add_argument("--save-set", type=Path, metavar="FILE.npy", help="save the preprocessed images for reuse")
    data.add_argument("--load-set", type=Path, metavar="FILE.npy",
                      help="reuse a saved preprocessed set instead of --data")
    quant = parser.add_argument_group("quantization")
    quant.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                       help=f"activation ranges (default {DEFAULT_METHOD})")
    quant.add_argument("--quantizer", choices=QUANTIZERS, default="auto",
                       help="auto = ModelOpt when installed, else ONNX Runtime (default auto)")
    quant.add_argument("--target", choices=TARGETS, default="tensorrt",
                       help="tensorrt: symmetric INT8, zero point 0 (TensorRT 8.5-11; ORT runs it too); cpu: UINT8 "
                            "activations for ONNX Runtime's fast x86 kernels (ORT back end; TensorRT rejects it)")
    quant.add_argument("--trt-version", type=trt_target, metavar="V",
                       help="TensorRT version the Q/DQ graph is for, e.g. 8.5, 8.6, 10.3, 11 "
                            "(default: the installed TensorRT's, else 10)")
    quant.add_argument("--exclude", action="append", default=[], metavar="NODE_REGEX",
                       help="keep matching nodes in higher precision (repeatable); the output head always is")
    check = parser.add_argument_group("accuracy budget")
    check.add_argument("--budget", type=Path, metavar="FILE.yaml", help="budget overrides (YAML)")
    check.add_argument("--max-fallback", type=non_negative_int, default=DEFAULT_MAX_FALLBACK, metavar="N",
                       help=f"most nodes the fallback may keep in higher precision "
                            f"(default {DEFAULT_MAX_FALLBACK}; 0 = off)")
    check.add_argument("--sensitivity-top-k", type=non_negative_int, default=DEFAULT_TOP_K, metavar="K",
                       help="measure only K fallback candidates, picked by a cheaper pre-ranking (default: all)")
    check.add_argument("--keep-failed", action="store_true", help="write an over-budget graph to NAME.over-budget.onnx")
    check.add_argument("--report", type=Path, metavar="FILE.json", help="report path (default: beside --output)")
    return parser


def request_from_args(args: argparse.Namespace) -> CalibrationRequest:
    return CalibrationRequest(
        onnx=args.onnx, output=args.output, data=list(args.data), eval_data=list(args.eval_data), split=args.split,
        num_images=args.num_images, num_eval=args.num_eval, method=args.method, quantizer=args.quantizer,
        target=args.target, trt_version=args.trt_version,
        exclude=list(args.exclude), budget=int8_budget(args.budget), max_fallback=args.max_fallback,
        top_k=args.sensitivity_top_k, keep_failed=args.keep_failed, cache=args.cache, save_set=args.save_set,
        load_set=args.load_set, report=args.report,
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-calib``."""
    return run_command("depth-calib", build_parser(), _calibrate, argv)


def _calibrate(args: argparse.Namespace) -> int:
    report = calibrate(request_from_args(args), log=_log)
    where = report.output or (report.tensorrt_cache or {}).get("path")
    print(f"depth-calib: {report.status}: {where} ({', '.join(f'{k}={v}' for k, v in _headline(report).items())})")
    return 0


def _headline(report) -> dict:
    figures = report.figures
    if not figures:
        return {"images": report.images.get("calibration_images")}
    return {"abs_rel": f"{figures['abs_rel']:.4%}", "d1_agreement": f"{figures['d1_agreement']:.5f}",
            "kept_in_higher_precision": len(report.kept_in_higher_precision)}


if __name__ == "__main__":
    sys.exit(main())
