"""Exported model vs PyTorch eager on the CPU, side by side in one run; JSON to stdout.

    python benchmarks/bench_export.py [--checkpoint best.pt] [--threads 2] [--repetitions 30]

Same input (1x3x256x320 unless --height/--width), same thread count for both
(``torch.set_num_threads(n)`` and ORT ``intra_op_num_threads=n``), repetitions interleaved
(torch, ORT FP32, ORT FP16 in rotating order) so load from other processes hits all alike;
medians reported. Target: ORT FP32 latency <= 0.7 x PyTorch eager. The FP16 ONNX on ORT CPU is
informational (ORT's CPU kernels run most FP16 ops through casts to FP32).
Without --checkpoint a randomly initialised ResNet18 DepthNet is exported (latency does not
depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from common import interleaved_times, random_checkpoint  # benchmarks/common.py (run as a script)


def _checkpoint(args, folder: Path) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    return random_checkpoint(folder / "random.pt", args.height, args.width)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint to export (default: a random-init ResNet18 DepthNet)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)

    import onnxruntime
    import torch

    from edgedepth.export.fp16 import convert_to_fp16
    from edgedepth.export.onnx_export import export_onnx
    from edgedepth.onnxrt import cpu_session, run_session
    from edgedepth.probes import probe_batch
    from edgedepth.training.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    quiet = lambda _: None  # noqa: E731 - the JSON on stdout is the output
    with tempfile.TemporaryDirectory(prefix="edgedepth-bench-") as folder:
        checkpoint = _checkpoint(args, Path(folder))
        fp32 = export_onnx(checkpoint, Path(folder) / "model.onnx", height=args.height, width=args.width, log=quiet)
        fp16 = convert_to_fp16(fp32.path, Path(folder) / "model.fp16.onnx", log=quiet)
        model, _ = load_checkpoint(checkpoint)
        batch = probe_batch("scene", fp32.spec)
        tensor = torch.from_numpy(batch)
        sessions = {
            "ort_fp32": cpu_session(fp32.path, threads=args.threads),
            "ort_fp16": cpu_session(fp16.path, threads=args.threads),
        }

        def run_torch():
            with torch.no_grad():
                return model(tensor)

        runners = {
            "torch_eager": run_torch,
            "ort_fp32": lambda: run_session(sessions["ort_fp32"], batch),
            "ort_fp16": lambda: run_session(sessions["ort_fp16"], batch),
        }
        times = interleaved_times(runners, args.repetitions, args.warmup)
        converter = fp16.converter

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["ort_fp32"] / medians["torch_eager"]
    report = {
        "benchmark": "export: ONNX Runtime CPU vs PyTorch eager CPU",
        "input_shape": list(batch.shape),
        "threads": args.threads,
        "repetitions": args.repetitions,
        "median_ms": {name: round(value, 3) for name, value in medians.items()},
        "min_ms": {name: round(min(values), 3) for name, values in times.items()},
        "ratio_ort_fp32_over_torch": round(ratio, 3),
        "ratio_ort_fp16_over_torch": round(medians["ort_fp16"] / medians["torch_eager"], 3),
        "target_ratio": 0.7,
        "meets_target": ratio <= 0.7,
        "fp16_converter": converter,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "load_average": list(os.getloadavg())},
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
