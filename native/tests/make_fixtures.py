"""Write the reference data the native parity tests compare against, computed by the Python package.

Usage: python native/tests/make_fixtures.py OUTDIR

OUTDIR/manifest.json lists the cases; each array is a raw little-endian file beside it. Nothing here is
committed: ctest runs this script into the build folder before the comparisons (fixture python_fixtures).
"""
from __future__ import annotations

import copy
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edgedepth.colormap import COLORMAPS, colorize_depth
from edgedepth.errors import EdgeDepthError
from edgedepth.preprocess import import_cv2, preprocess
from edgedepth.runtime.sinks import depth_to_png_mm
from edgedepth.spec import ModelSpec
from edgedepth.trt.platform import GpuInfo
from edgedepth.trt.sidecar import BuildOptions, EngineSidecar, check_compatible

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


def random_sizes(rng: np.random.Generator, count: int) -> List[Any]:
    """Random source sizes (even, so NV12 works too) against random input sizes: up- and downscales."""
    sources = rng.integers(1, 200, (count, 2)) * 2
    inputs = rng.integers(1, 7, (count, 2)) * 32
    return [(int(h), int(w), int(sh), int(sw)) for (h, w), (sh, sw) in zip(sources, inputs)]


def preprocess_cases(outdir: Path, rng: np.random.Generator) -> List[Dict[str, Any]]:
    cv2 = import_cv2()
    cases = []
    for index, (height, width, spec_height, spec_width) in enumerate(SIZES + random_sizes(rng, 40)):
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


def base_sidecar(built: GpuInfo, trt: str = "10.3.0.30", options: Optional[BuildOptions] = None) -> Dict[str, Any]:
    return EngineSidecar(
        model_spec=ModelSpec(height=256, width=320), tensorrt_version=trt, tensorrt_generation=trt.split(".")[0],
        gpu=built, precision="fp16", shapes={"input": [1, 3, 256, 320]},
        source_onnx={"name": "model.onnx", "sha256": "00"}, build_options=options or BuildOptions("fp16"),
        build_seconds=12.5, engine_sha256="ab", cache_key="cd").to_dict()


def error_of(body: Callable[[], Any]) -> Optional[str]:
    try:
        body()
    except EdgeDepthError as exc:
        return str(exc)
    return None


#: (description, change to the sidecar dict): each gives Python's refusal, or None when it parses.
MUTATIONS: List[Any] = [
    ("valid", lambda d: d),
    ("a list", lambda d: [d]),
    ("another format", lambda d: {**d, "format": "other"}),
    ("no format", lambda d: {k: v for k, v in d.items() if k != "format"}),
    ("format_version text", lambda d: {**d, "format_version": "2"}),
    ("format_version bool", lambda d: {**d, "format_version": True}),
    ("format_version -1", lambda d: {**d, "format_version": -1}),
    ("format_version 3", lambda d: {**d, "format_version": 3}),
    ("format_version absent", lambda d: {k: v for k, v in d.items() if k != "format_version"}),
    ("no model_spec", lambda d: {k: v for k, v in d.items() if k != "model_spec"}),
    ("model_spec size", lambda d: {**d, "model_spec": {**d["model_spec"], "height": 100}}),
    ("model_spec unknown key", lambda d: {**d, "model_spec": {**d["model_spec"], "spec_version": 2}}),
    ("model_spec a list", lambda d: {**d, "model_spec": [1]}),
    ("precision fp8", lambda d: {**d, "precision": "fp8"}),
    ("tensorrt_version int", lambda d: {**d, "tensorrt_version": 10}),
    ("tensorrt_generation absent", lambda d: {k: v for k, v in d.items() if k != "tensorrt_generation"}),
    ("no gpu", lambda d: {k: v for k, v in d.items() if k != "gpu"}),
    ("gpu a string", lambda d: {**d, "gpu": "Orin"}),
    ("gpu compute float", lambda d: {**d, "gpu": {**d["gpu"], "compute_capability": 8.7}}),
    ("gpu integrated text", lambda d: {**d, "gpu": {**d["gpu"], "integrated": "yes"}}),
    ("gpu without name", lambda d: {**d, "gpu": {"compute_capability": "8.7"}}),
    ("gpu machine null", lambda d: {**d, "gpu": {**d["gpu"], "machine": None}}),
    ("options dla float", lambda d: {**d, "build_options": {**d["build_options"], "dla_core": 1.5}}),
    ("options flags", lambda d: {**d, "build_options": {**d["build_options"], "builder_flags": ["a", 1]}}),
    ("options without precision", lambda d: {**d, "build_options": {"workspace_gib": 2}}),
    ("options null", lambda d: {**d, "build_options": None}),
    ("options empty", lambda d: {**d, "build_options": {}}),
    ("options unknown key", lambda d: {**d, "build_options": {**d["build_options"], "new_flag": 1}}),
    ("options workspace text", lambda d: {**d, "build_options": {**d["build_options"], "workspace_gib": "2"}}),
    ("build_seconds text", lambda d: {**d, "build_seconds": "slow"}),
    ("shapes a list", lambda d: {**d, "shapes": [1]}),
    ("engine_sha256 null", lambda d: {**d, "engine_sha256": None}),
]

ORIN = GpuInfo("Orin", "8.7", True, "aarch64", "Linux")
RTX = GpuInfo("NVIDIA GeForce RTX 4090", "8.9", False, "x86_64", "Linux")
GPUS = [ORIN, RTX, GpuInfo("nvidia geforce rtx 4090 ", "8.9", False, "x86_64", "Linux"),
        GpuInfo("NVIDIA A100", "8.0", False, "x86_64", "Linux"), GpuInfo("Old", "8.7"),
        GpuInfo("NVIDIA GeForce RTX 4090", "8.9", False, "AMD64", "Windows"),
        GpuInfo("Thor", "11.0", True, "aarch64", "Linux")]


def sidecar_cases() -> List[Dict[str, Any]]:
    where = "model.engine.json"
    cases = []
    for name, mutate in MUTATIONS:
        data = mutate(copy.deepcopy(base_sidecar(ORIN)))
        cases.append({"name": name, "text": json.dumps(data), "where": where,
                      "error": error_of(lambda data=data: EngineSidecar.from_dict(data, where))})
    return cases


def compatibility_cases() -> List[Dict[str, Any]]:
    cases = []
    built_options = itertools.product(["10.3.0.30", "8.6.2", "10.16.1"], [False, True], ["none", "ampere+"], [None, 0])
    for (trt, compatible, hardware, dla), built in itertools.product(built_options, [ORIN, RTX, GPUS[4]]):
        options = BuildOptions("fp16", version_compatible=compatible, hardware_compatibility=hardware, dla_core=dla)
        data = base_sidecar(built, trt, options)
        sidecar = EngineSidecar.from_dict(data)
        for running_trt, running in itertools.product(["10.3.0", "10.16.1.2", "11.4.1", "8.6.2.3", "x"], GPUS):
            warnings: List[str] = []

            def run(sidecar: EngineSidecar = sidecar, running_trt: str = running_trt, running: GpuInfo = running,
                    warnings: List[str] = warnings) -> None:
                warnings.extend(check_compatible(sidecar, running_trt, running, "models/model.engine"))

            cases.append({"sidecar": json.dumps(data), "trt": running_trt, "gpu": running.to_dict(),
                          "engine": "models/model.engine", "error": error_of(run), "warnings": warnings})
    return cases


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print("usage: make_fixtures.py OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(15)
    manifest = {"preprocess": preprocess_cases(outdir, rng), "postprocess": postprocess_cases(outdir, rng),
                "sidecar": sidecar_cases(), "compatibility": compatibility_cases()}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    counts = ", ".join(f"{len(cases)} {name}" for name, cases in manifest.items())
    print(f"wrote {counts} cases to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
