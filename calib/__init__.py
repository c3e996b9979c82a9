"""Calibration stage (``depth-calib``): INT8 that is earned.

* :mod:`~edgedepth.calib.calibration_set`: calibration images from folders, videos or dataset configs,
  evenly sampled, preprocessed by the one preprocessing, saved/reused with a preprocessing key.
* :mod:`~edgedepth.calib.quantizers`: Q/DQ ONNX through NVIDIA ModelOpt or ONNX Runtime.
* :mod:`~edgedepth.calib.budget`: INT8 vs FP32 on held-out images, judged by the ``int8`` row of the
  one budget (:mod:`edgedepth.budget`, :mod:`edgedepth.agreement`).
* :mod:`~edgedepth.calib.sensitivity`: the fallback that keeps the most harmful nodes in higher precision.
* :mod:`~edgedepth.calib.legacy`: TensorRT 8.5-10.x calibrator adapter and keyed calibration cache
  (``build_int8_calibrator`` / ``verify_cache_for_onnx`` are for
  ``depth-export engine --precision int8 --calib-cache``).
* :mod:`~edgedepth.calib.pipeline` / :mod:`~edgedepth.calib.cli`: the command.

Importing this package needs neither ONNX Runtime nor TensorRT; they are imported when used.
"""
from edgedepth.calib.budget import int8_budget
from edgedepth.calib.calibration_set import (
    CalibrationSet,
    build_calibration_set,
    load_calibration_set,
    save_calibration_set,
)
from edgedepth.calib.errors import BudgetFailed, CalibrationCacheError, CalibrationError
from edgedepth.calib.legacy import build_int8_calibrator, cache_key, check_cache, verify_cache_for_onnx
from edgedepth.calib.pipeline import calibrate
from edgedepth.calib.request import CalibrationRequest

__all__ = [
    "BudgetFailed",
    "CalibrationCacheError",
    "CalibrationError",
    "CalibrationRequest",
    "CalibrationSet",
    "build_calibration_set",
    "build_int8_calibrator",
    "cache_key",
    "calibrate",
    "check_cache",
    "int8_budget",
    "load_calibration_set",
    "save_calibration_set",
    "verify_cache_for_onnx",
]
