"""The two Q/DQ back ends behind one interface: NVIDIA ModelOpt's ONNX PTQ and ONNX Runtime's
static quantization.

Both take the FP32 ONNX, the preprocessed calibration images, a method and the nodes to keep in
higher precision, and write a Q/DQ ONNX with per-channel INT8 weights and per-tensor activations.
The ``target`` decides the activation type:

* ``tensorrt`` (default): symmetric INT8, zero point 0 given explicitly: what TensorRT's explicit
  quantization (8.5 to 11) requires; ONNX Runtime runs it too, but on x86 CPUs its INT8
  activations miss the fast kernels (it ran slower than FP32 here).
* ``cpu`` (ORT back end only): UINT8 activations with zero points, the fast path of ONNX
  Runtime's x86 kernels (VNNI); TensorRT rejects this graph.

* ``ort``: activation ranges come from ORT's calibrator driven here (with a progress bar, and
  TensorRT-like histograms for ``entropy``: 2048 bins folded into 128 levels), saved with
  ``save_tensors_data`` and handed to ``quantize_static(calibration_cache_path=...)``. The graph
  keeps its opset (17: TensorRT 8.5+ parse it). For TensorRT, biases stay float
  (``QuantizeBias=False``: ORT's default writes INT32 bias DequantizeLinear nodes, which no
  TensorRT generation parses, onnx/onnx-tensorrt#850) and weights are float with a Q/DQ pair
  (``AddQDQPairToWeight=True``: the pattern NVIDIA's own quantization tools export, which every
  generation's parser folds).
* ``modelopt``: ``modelopt.onnx.quantization.quantize`` in a child process (it patches ONNX
  Runtime process-wide) on a *copy* of the input (it rewrites its input file in place),
  ``high_precision_dtype="fp32"`` so the parts left unquantized keep FP32 (for TensorRT 11 the
  calibration stage converts them to FP16 afterwards, head excluded), opset 19+: TensorRT 10+ only.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from edgedepth.calib.calibration_set import calibration_batches
from edgedepth.calib.errors import CalibrationError
from edgedepth.trt.generation import TrtTarget

METHODS = ("minmax", "entropy", "percentile")
QUANTIZERS = ("auto", "modelopt", "ort")
#: ModelOpt's INT8 calibration names for our methods (it has no percentile).
MODELOPT_METHODS = {"minmax": "max", "entropy": "entropy"}
#: TensorRT-like entropy calibration: 2048-bin histograms folded into 128 levels.
ENTROPY_BINS = 2048
ENTROPY_LEVELS = 128
PERCENTILE = 99.999
TARGETS = ("tensorrt", "cpu")
#: ORT quantizer options every TensorRT generation needs (see the module docstring).
TENSORRT_ORT_OPTIONS = {"QuantizeBias": False, "AddQDQPairToWeight": True}


def graph_batch_size(model) -> int:
    """The batch a static-batch graph takes (1 for a dynamic batch)."""
    from edgedepth.export import onnx_info

    dim = onnx_info.graph_inputs(model)[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else 1


def make_reader(input_name: str, data: np.ndarray, batch_size: int, desc: str = "calibrating"):
    """An ORT ``CalibrationDataReader`` over ``data`` with a tqdm bar over its batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class BatchReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = calibration_batches(data, batch_size)
            self.position = 0
            self.progress = tqdm(total=len(self.batches), desc=desc, unit="batch", leave=False)

        def get_next(self):
            if self.position >= len(self.batches):
                self.progress.close()
                return None
            batch = self.batches[self.position]
            self.position += 1
            self.progress.update(1)
            return {input_name: batch}

        def __len__(self) -> int:
            return len(self.batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = self.batches[start_index:end_index]
            self.position = 0

    return BatchReader()


class _DropRootWarnings(logging.Filter):
    """ONNX Runtime's quantizer logs 'Please consider to run pre-processing' on the root logger; the
    exporter already folded and simplified the graph, so the advice does not apply."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def _quiet_ort_advice() -> Iterator[None]:
    # A logger filter (not a handler filter): ORT calls logging.warning(), which may add a handler.
    root = logging.getLogger()
    flt = _DropRootWarnings()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise CalibrationError(f"--target {target!r} is unknown: choose one of {', '.join(TARGETS)}")


class OrtQuantizer:
    """ONNX Runtime ``quantize_static`` (QDQ, per-channel INT8 weights), activation ranges computed once."""

    name = "ort"

    def __init__(self, fp32_path: Path, data: np.ndarray, method: str, workdir: Path, input_name: str,
                 batch_size: int = 1, target: str = "tensorrt") -> None:
        import onnxruntime

        if method not in METHODS:
            raise CalibrationError(f"--method {method!r} is unknown: choose one of {', '.join(METHODS)}")
        check_target(target)
        self.fp32_path, self.data, self.method, self.target = Path(fp32_path), data, method, target
        self.workdir, self.input_name, self.batch_size = Path(workdir), input_name, batch_size
        self.version = f"onnxruntime {onnxruntime.__version__}"
        self._ranges: Optional[Path] = None

    def _calibration_method(self):
        from onnxruntime.quantization import CalibrationMethod

        return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}[self.method]

    def _calibrator_options(self) -> dict:
        options: Dict[str, object] = {"symmetric": self.target == "tensorrt"}
        if self.method == "entropy":
            options.update(num_bins=ENTROPY_BINS, num_quantized_bins=ENTROPY_LEVELS)
        if self.method == "percentile":
            options.update(num_bins=ENTROPY_BINS, percentile=PERCENTILE)
        return options

    def ranges(self) -> Path:
        """Run the calibration images through the FP32 graph once; the activation ranges' JSON file."""
        if self._ranges is None:
            from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

            calibrator = create_calibrator(
                self.fp32_path, None, augmented_model_path=str(self.workdir / "ort_augmented.onnx"),
                calibrate_method=self._calibration_method(), extra_options=self._calibrator_options(),
            )
            calibrator.collect_data(make_reader(self.input_name, self.data, self.batch_size))
            self._ranges = self.workdir / f"ort_ranges_{self.method}.json"
            save_tensors_data(calibrator.compute_data(), self._ranges)
        return self._ranges

    def quantize(self, output: Path, keep: Sequence[str]) -> None:
        """Write the Q/DQ graph to ``output``; the nodes in ``keep`` are not quantized."""
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        tensorrt = self.target == "tensorrt"
        kwargs = dict(
            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            calibrate_method=self._calibration_method(), nodes_to_exclude=list(keep),
            extra_options={"ActivationSymmetric": tensorrt, "WeightSymmetric": True,
                           **(TENSORRT_ORT_OPTIONS if tensorrt else {})},
        )
        with _quiet_ort_advice():
            if supports_range_cache():
                quantize_static(str(self.fp32_path), str(output), None, calibration_cache_path=str(self.ranges()),
                                **kwargs)
            else:  # onnxruntime before the calibration cache: calibrate again (ORT's own histogram settings)
                reader = make_reader(self.input_name, self.data, self.batch_size)
                quantize_static(str(self.fp32_path), str(output), reader, **kwargs)


def supports_range_cache() -> bool:
    """True when ``quantize_static`` can reuse saved activation ranges (recent onnxruntime)."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def import_modelopt_quantize() -> Callable:
    """``modelopt.onnx.quantization.quantize`` or CalibrationError saying how to install it."""
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as exc:
        raise CalibrationError(
            f"NVIDIA ModelOpt is not installed ({exc}): `pip install nvidia-modelopt onnx-graphsurgeon polygraphy`, "
            "or use --quantizer ort"
        ) from exc
    return quantize


def _modelopt_version() -> str:
    try:
        from importlib.metadata import version

        return f"nvidia-modelopt {version('nvidia-modelopt')}"
    except Exception:  # metadata missing in a vendored install: the name is enough
        return "nvidia-modelopt"


class ModelOptQuantizer:
    """ModelOpt ``modelopt.onnx.quantization.quantize`` (INT8, TensorRT-oriented Q/DQ placement).

    It runs in a child process (:mod:`edgedepth.calib.modelopt_worker`): when ModelOpt quantizes
    it patches ONNX Runtime's quantization modules process-wide (calibrators, the QDQ op
    registry), which would silently change every later ONNX Runtime quantization in this process.
    """

    name = "modelopt"

    def __init__(self, fp32_path: Path, data: np.ndarray, method: str, workdir: Path, input_name: str,
                 batch_size: int = 1, target: str = "tensorrt") -> None:
        if target != "tensorrt":
            raise CalibrationError("ModelOpt writes TensorRT Q/DQ graphs only: use --quantizer ort for --target cpu")
        if method not in MODELOPT_METHODS:
            raise CalibrationError(
                f"ModelOpt's INT8 calibration supports {', '.join(MODELOPT_METHODS)}, not {method!r}: "
                "pick one of those or use --quantizer ort"
            )
        import_modelopt_quantize()  # fail here, with install advice, rather than in the child
        self.fp32_path, self.data, self.method = Path(fp32_path), data, method
        self.workdir, self.input_name, self.batch_size = Path(workdir), input_name, batch_size
        self.version = _modelopt_version()

    def job(self, output: Path, keep: Sequence[str]) -> dict:
        """What the worker needs: a copy of the FP32 ONNX (ModelOpt rewrites its input) and the images."""
        copy, data = self.workdir / "modelopt_input.onnx", self.workdir / "modelopt_calibration.npy"
        shutil.copyfile(self.fp32_path, copy)
        np.save(data, self.data, allow_pickle=False)
        return {
            "onnx": str(copy), "data": str(data), "output": str(output), "input_name": self.input_name,
            "batch_size": self.batch_size, "method": MODELOPT_METHODS[self.method],
            "nodes_to_exclude": [f"^{re.escape(name)}$" for name in keep],
            "error_file": str(self.workdir / "modelopt_error.txt"),
        }

    def quantize(self, output: Path, keep: Sequence[str]) -> None:
        """Write the Q/DQ graph to ``output``."""
        job = self.job(output, keep)
        job_file = self.workdir / "modelopt_job.json"
        job_file.write_text(json.dumps(job))
        done = subprocess.run([sys.executable, "-m", "edgedepth.calib.modelopt_worker", str(job_file)], check=False)
        if done.returncode != 0 or not Path(output).is_file():
            error_file = Path(job["error_file"])
            detail = error_file.read_text().strip() if error_file.is_file() else f"exit status {done.returncode}"
            raise CalibrationError(f"ModelOpt quantization failed ({detail}); try --quantizer ort")


def run_modelopt_job(job: dict) -> None:
    """Call ModelOpt's ONNX PTQ as described by :meth:`ModelOptQuantizer.job` (in the worker process)."""
    quantize = import_modelopt_quantize()
    data = np.load(job["data"], allow_pickle=False)
    reader = make_reader(job["input_name"], data, int(job["batch_size"]))
    # ModelOpt logs CUDA/TensorRT probing errors on a machine without a GPU; they are harmless
    # (calibration runs on the CPU), so only critical messages are shown.
    quantize(
        onnx_path=job["onnx"], quantize_mode="int8", calibration_data_reader=reader,
        calibration_method=job["method"], calibration_eps=["cpu"], nodes_to_exclude=job["nodes_to_exclude"],
        output_path=job["output"], high_precision_dtype="fp32", log_level="CRITICAL",
    )


def choose_quantizer(requested: str, method: str, target: str = "tensorrt",
                     trt_target: Optional[TrtTarget] = None) -> Tuple[str, Optional[str]]:
    """``(back end, note)``: ``auto`` is ModelOpt when installed and able to do ``method`` for
    ``target`` and ``trt_target`` (TensorRT 10+), else ORT. ModelOpt asked for an 8.x target is refused."""
    if requested not in QUANTIZERS:
        raise CalibrationError(f"--quantizer {requested!r} is unknown: choose one of {', '.join(QUANTIZERS)}")
    check_target(target)
    trt8 = trt_target if target == "tensorrt" and trt_target is not None and trt_target.generation == "8" else None
    if requested == "modelopt" and trt8 is not None:
        raise CalibrationError(
            f"ModelOpt writes INT8 graphs at opset 19 or newer, which {trt8.label} cannot parse "
            "(8.x parses up to opset 17): use --quantizer ort (or auto) for TensorRT 8"
        )
    if requested == "ort":
        return "ort", None
    if requested == "modelopt":
        import_modelopt_quantize()
        return "modelopt", None
    if target != "tensorrt":
        return "ort", "auto: --target cpu is written by ONNX Runtime's quantizer"
    if trt8 is not None:
        return "ort", f"auto: {trt8.label} parses up to opset 17 and ModelOpt writes 19+; used ONNX Runtime's quantizer"
    if method not in MODELOPT_METHODS:
        return "ort", f"auto: ModelOpt has no {method} calibration; used ONNX Runtime's quantizer"
    try:
        import_modelopt_quantize()
    except CalibrationError as exc:
        return "ort", f"auto: {str(exc).split(':')[0]}; used ONNX Runtime's quantizer"
    return "modelopt", None


def create_quantizer(name: str, fp32_path: Path, data: np.ndarray, method: str, workdir: Path,
                     input_name: str, batch_size: int = 1, target: str = "tensorrt"):
    """An :class:`OrtQuantizer` or :class:`ModelOptQuantizer`."""
    cls = {"ort": OrtQuantizer, "modelopt": ModelOptQuantizer}[name]
    return cls(fp32_path, data, method, workdir, input_name, batch_size, target)
