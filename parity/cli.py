"""``depth-parity``: judge exported artifacts against the PyTorch checkpoint they came from.

Exit status (edgedepth.cli.run_command): 0 every candidate within its precision's budget, 1 any
candidate fails (or an artifact fails while running), 2 usage error (a missing or unreadable file,
an unknown budget key, a candidate of another input size), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from edgedepth.cli import run_command

EPILOG = """\
examples:
  depth-parity --checkpoint runs/demo/checkpoints/best.pt --candidates model.onnx model.fp16.onnx model.int8.onnx
  depth-parity --checkpoint best.pt --candidates model.fp16.engine --images recordings/hallway.mp4 --max-images 64
  depth-parity --checkpoint best.pt --candidates model.int8.onnx --gt-data nyu --budget my_budget.yaml

Without --images or --gt-data a built-in set of structured images is used (rendered rooms,
gradients, checkerboards, hard edges, saturated frames, noise). The precision of each candidate
is read from the artifact (ONNX graph, engine sidecar) and picks its budget (configs/budgets/default.yaml).
"""


def build_parser() -> argparse.ArgumentParser:
    from edgedepth.parity.inputs import DEFAULT_MAX_IMAGES
    from edgedepth.parity.runner import REFERENCE_DEVICES

    parser = argparse.ArgumentParser(
        prog="depth-parity", description=__doc__.splitlines()[0].replace("``", ""), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="the training checkpoint (.pt): the FP32 reference")
    parser.add_argument("--candidates", required=True, nargs="+", metavar="ARTIFACT",
                        help="ONNX files (.onnx), TensorRT engines (.engine/.plan with their .json sidecar) "
                             "or checkpoints")
    inputs = parser.add_argument_group("inputs (default: the built-in structured set)")
    source = inputs.add_mutually_exclusive_group()
    source.add_argument("--images", metavar="SOURCE",
                        help="folder, image, glob ('frames/*.png') or video, read as BGR by OpenCV")
    source.add_argument("--gt-data", metavar="DATASET",
                        help="dataset config (name or YAML) with depth: adds task metrics vs ground truth")
    inputs.add_argument("--split", help="dataset split for --gt-data (default: the config's evaluation split)")
    inputs.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help=f"evenly spaced images taken from --images/--gt-data (default {DEFAULT_MAX_IMAGES})")
    parser.add_argument("--budget", metavar="FILE.yaml",
                        help="budget overrides per precision (see configs/budgets/default.yaml)")
    parser.add_argument("--report-dir", default="parity-report",
                        help="where report.json, report.md and pictures/ go (default parity-report)")
    parser.add_argument("--no-pictures", dest="pictures", action="store_false", help="skip the PNG pictures")
    run = parser.add_argument_group("execution")
    run.add_argument("--reference-device", choices=REFERENCE_DEVICES, default="cpu",
                     help="where the PyTorch reference runs "
                          "(default cpu: exact FP32 everywhere; cuda runs with TF32 off)")
    run.add_argument("--ort-provider", dest="ort_providers", action="append", metavar="PROVIDER",
                     help="ONNX Runtime provider for ONNX candidates, e.g. CPUExecutionProvider "
                          "(repeatable; default: best available)")
    run.add_argument("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime")
    run.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _options(args: argparse.Namespace):
    from edgedepth.parity.runner import ParityOptions

    return ParityOptions(
        checkpoint=args.checkpoint, candidates=list(args.candidates), images=args.images, gt_data=args.gt_data,
        split=args.split, budget=args.budget, report_dir=args.report_dir, max_images=args.max_images,
        reference_device=args.reference_device, threads=args.threads, ort_providers=args.ort_providers,
        pictures=args.pictures,
    )


def _progress(quiet: bool):
    if quiet:
        return lambda message: None
    return lambda message: print(message, file=sys.stderr, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-parity``; returns the exit status (0 pass, 1 fail, 2 usage error)."""
    return run_command("depth-parity", build_parser(), _parity, argv)


def _parity(args: argparse.Namespace) -> int:
    from edgedepth.parity.runner import run_parity

    result = run_parity(_options(args), log=_progress(args.quiet))
    for run in result.candidates:
        print(run.verdict_line())
    failed = sum(not run.passed for run in result.candidates)
    verdict = "PASS" if not failed else f"FAIL ({failed} of {len(result.candidates)} candidates failed)"
    print(f"depth-parity: {verdict}; report: {result.options.report_dir}/report.md")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
