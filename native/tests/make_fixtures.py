"""Write the reference data the native parity tests compare against, computed by the Python package.

Usage: python native/tests/make_fixtures.py OUTDIR

OUTDIR/manifest.json lists the cases; each array is a raw little-endian file beside it. Nothing here is
committed: ctest runs this script into the build folder before the comparisons (fixture python_fixtures).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edgedepth.colormap import COLORMAPS, colorize_depth
from edgedepth.preprocess import import_cv2, preprocess
from edgedepth.runtime.sinks import depth_to_png_mm
from edgedepth.spec import ModelSpec

#: (source height, source width, spec height, spec width): downscales of camera frames, an upscale,
#: odd sizes, the exact 2x case OpenCV routes to INTER_AREA, and no resize at all.
SIZES = [(480, 640, 256, 320), (720, 1280, 256, 320), (1080, 1920, 384, 640), (37, 54, 64, 96),
         (101, 133, 96, 128), (64, 64, 32, 32), (256, 320, 256, 320), (2, 2, 32, 32)]
SPECS = [
    {"color_order": "RGB"},
    {"color_order": "BGR", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4]},
]


def save(outdir: Path, name: str, array: np.ndarray) -> str:
    np.ascontiguousarray(array).tofile(outdir / name)
    return name


def preprocess_cases(outdir: Path, rng: np.random.Generator) -> List[Dict[str, Any]]:
    cv2 = import_cv2()
    cases = []
    for index, (height, width, spec_height, spec_width) in enumerate(SIZES):
        spec = ModelSpec(height=spec_height, width=spec_width, **SPECS[index % len(SPECS)])
        for order in ("BGR", "RGB", "NV12") if height % 2 == 0 and width % 2 == 0 else ("BGR", "RGB"):
            if order == "NV12":
                frame = rng.integers(0, 256, (height * 3 // 2, width), dtype=np.uint8)
                expected = preprocess(cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_NV12), spec, "BGR")
            else:
                frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                expected = preprocess(frame, spec, order)
            stem = f"pre_{index}_{order}"
            files = {"input": save(outdir, stem + ".u8", frame), "expected": save(outdir, stem + ".f32", expected)}
            cases.append({"order": order, "width": width, "height": height, "spec": spec.to_json(), **files})
    return cases


def depth_map(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Depths across and beyond the range, with the values that test rounding and invalid pixels."""
    depth = rng.uniform(-1.0, 90.0, (height, width)).astype(np.float32)
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 0.1, 10.0, 0.0005, 0.0015, 0.0025, 65.535, 65.5355, 70.0, 1e-30,
               3e38, -3e38, 1.0005, 2.5e-4]
    depth.flat[: len(special)] = np.asarray(special, dtype=np.float32)
    return depth


def postprocess_cases(outdir: Path, rng: np.random.Generator) -> List[Dict[str, Any]]:
    cases = []
    for index, (height, width, min_depth, max_depth) in enumerate([(97, 131, 0.1, 10.0), (48, 64, 0.5, 80.0)]):
        depth = depth_map(rng, height, width)
        if index == 1:
            depth = rng.uniform(0.0, 100.0, (height, width)).astype(np.float32)
        case: Dict[str, Any] = {"width": width, "height": height, "min_depth": min_depth, "max_depth": max_depth,
                                "depth": save(outdir, f"post_{index}_depth.f32", depth),
                                "millimetres": save(outdir, f"post_{index}_mm.u16", depth_to_png_mm(depth)),
                                "colormaps": {}}
        for name in COLORMAPS:
            with np.errstate(over="ignore"):  # +-3e38 m overflow to the ends of the map, in both runtimes
                image = colorize_depth(depth, min_depth, max_depth, name)
            case["colormaps"][name] = save(outdir, f"post_{index}_{name}.u8", image)
        cases.append(case)
    return cases


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print("usage: make_fixtures.py OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(15)
    manifest = {"preprocess": preprocess_cases(outdir, rng), "postprocess": postprocess_cases(outdir, rng)}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    print(f"wrote {len(manifest['preprocess'])} preprocess and {len(manifest['postprocess'])} postprocess cases "
          f"to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
