"""Legacy implicit INT8 for TensorRT 8.5 to 10.x (JetPack 5 and 6): calibrator adapter and keyed cache.

TensorRT 10.1 deprecated the calibrator API in favour of Q/DQ ONNX and TensorRT 11 removed it,
but JetPack 5 (TensorRT 8.5) and 6 (8.6 / 10.3) users still build INT8 engines with
``IInt8EntropyCalibrator2`` / ``IInt8MinMaxCalibrator`` and a calibration cache.

The calibrator is the thin adapter of :mod:`edgedepth.trt.calibrator`: the calibration images come
from the same calibration set as the Q/DQ path (same sampling, same preprocessing); device memory
comes from :mod:`edgedepth.trt.memory` (cuda-python, or pycuda with push/pop in any thread).
The cache TensorRT writes says nothing about the model it belongs to, so a JSON key file travels
with it (``model.calib`` -> ``model.calib.json``): the FP32 ONNX's sha256, the preprocessing hash,
the input shape and the algorithm. A cache whose key differs
(re-exported model, other input size or normalisation) or that has no key file is refused with a
message naming the difference: a stale cache silently gives a wrong engine.

TensorRT is imported only inside the functions that need it, through :mod:`edgedepth.trt`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from edgedepth.calib.calibration_set import (
    DEFAULT_NUM_IMAGES,
    CalibrationSet,
    build_calibration_set,
    calibration_batches,
)
from edgedepth.calib.errors import CalibrationCacheError, CalibrationError
from edgedepth.io import sha256_file, write_bytes_atomic, write_json_atomic
from edgedepth.spec import ModelSpec
from edgedepth.trt import calibrator as trt_calibrator
from edgedepth.trt.generation import probe_api
from edgedepth.trt.imports import import_tensorrt
from edgedepth.trt.logger import make_logger
from edgedepth.trt.memory import open_cuda_memory
from edgedepth.trt.network import create_network, network_flag_names, parse_onnx

CACHE_FORMAT = "edgedepth.trt_calibration_cache/1"
#: Our method names -> TensorRT calibrator classes (TensorRT has no percentile calibrator).
ALGORITHMS = trt_calibrator.CALIBRATOR_CLASSES
DEFAULT_ALGORITHM = "minmax"
WORKSPACE_BYTES = 1 << 30
PathLike = Union[str, Path]
CalibrationData = Union[None, str, Sequence[str], np.ndarray, CalibrationSet]


# ---------------------------------------------------------------------------------------------
# The cache key (pure logic, no TensorRT)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheKey:
    """What a calibration cache is valid for."""

    model_sha256: str
    preprocess_hash: str
    input_shape: Tuple[int, ...]
    algorithm: str

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data


_KEY_EXPLANATIONS = {
    "model_sha256": "the ONNX changed (re-exported or retrained)",
    "preprocess_hash": "the input size, normalisation or colour order changed",
    "input_shape": "the calibration batch or input size changed",
    "algorithm": "the calibrator algorithm changed",
}


def cache_sidecar_path(cache_path: PathLike) -> Path:
    """``model.calib`` -> ``model.calib.json``: the key file beside a calibration cache."""
    path = Path(cache_path)
    return path.with_name(path.name + ".json")


def cache_key(onnx_path: PathLike, spec: ModelSpec, batch_size: int, algorithm: str) -> CacheKey:
    """The key of a cache for this FP32 ONNX, its preprocessing, batch and algorithm."""
    check_algorithm(algorithm)
    shape = (int(batch_size), 3, spec.height, spec.width)
    return CacheKey(sha256_file(onnx_path), spec.preprocessing_key(), shape, algorithm)


def check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise CalibrationError(
            f"TensorRT calibrators are {', '.join(f'{k} ({v})' for k, v in ALGORITHMS.items())}; "
            f"{algorithm!r} has none: use --method minmax or entropy for --cache"
        )


def key_differences(expected: CacheKey, found: Dict[str, Any]) -> List[str]:
    """Human-readable differences between the expected key and a stored one."""
    wanted = expected.to_dict()
    return [
        f"{name}: cache has {found.get(name)!r}, this build needs {wanted[name]!r} ({_KEY_EXPLANATIONS[name]})"
        for name in wanted
        if found.get(name) != wanted[name]
    ]


def _read_sidecar(cache_path: Path) -> Dict[str, Any]:
    sidecar_path = cache_sidecar_path(cache_path)
    if not sidecar_path.is_file():
        raise CalibrationCacheError(
            f"calibration cache {cache_path} has no key file {sidecar_path.name}: nothing says which model, "
            f"preprocessing and input shape it was made for; delete {cache_path} to recalibrate"
        )
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationCacheError(
            f"{sidecar_path} is unreadable ({exc}); delete {cache_path} to recalibrate"
        ) from exc
    if not isinstance(sidecar, dict) or sidecar.get("format") != CACHE_FORMAT:
        raise CalibrationCacheError(
            f"{sidecar_path} is not an edgedepth cache key ({CACHE_FORMAT}); delete {cache_path}"
        )
    problem = key_file_problem(sidecar)
    if problem:
        raise CalibrationCacheError(
            f"{sidecar_path} holds {problem}: the key file was edited or damaged; delete {cache_path} and its key "
            "file to recalibrate"
        )
    return sidecar


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_static_shape(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 4 and value[1:2] == [3]
            and all(isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1 for dim in value))


#: Top-level key-file fields: (check, what it should be, required).
_KEY_FILE_FIELDS = {
    "key": (lambda value: isinstance(value, dict), "a JSON object", True),
    "cache_sha256": (lambda value: isinstance(value, str), "a sha256 string", True),
    "higher_precision_nodes": (_is_name_list, "a list of node names", False),
    "tensorrt_version": (lambda value: isinstance(value, str), "a version string", False),
}
#: The key's own fields (what :class:`CacheKey` holds).
_KEY_FIELDS = {
    "model_sha256": (lambda value: isinstance(value, str), "a sha256 string"),
    "preprocess_hash": (lambda value: isinstance(value, str), "a hash string"),
    "input_shape": (_is_static_shape, "4 whole numbers >= 1, 3 channels (N, 3, H, W)"),
    "algorithm": (lambda value: value in ALGORITHMS, f"one of {', '.join(ALGORITHMS)}"),
}


def key_file_problem(sidecar: Dict[str, Any]) -> Optional[str]:
    """What is wrong with a key file's fields ("key.input_shape [-1, 3, 96, 128], expected ..."), or None.

    Checked on every read: the batch size and algorithm of an existing cache are taken from it.
    """
    for name, (check, expected, required) in _KEY_FILE_FIELDS.items():
        if (required or name in sidecar) and not check(sidecar.get(name)):
            return f"{name} {sidecar.get(name)!r:.60}, expected {expected}"
    for name, (check, expected) in _KEY_FIELDS.items():
        if not check(sidecar["key"].get(name)):
            return f"key.{name} {sidecar['key'].get(name)!r:.60}, expected {expected}"
    return None


def check_cache(cache_path: PathLike, key: CacheKey) -> bool:
    """True when a cache valid for ``key`` exists, False when there is none (calibration will write it).

    Raises CalibrationCacheError for a cache without key file, with another key, or changed since.
    """
    cache_path = Path(cache_path)
    if not cache_path.is_file():
        return False
    sidecar = _read_sidecar(cache_path)
    differences = key_differences(key, sidecar.get("key", {}))
    if differences:
        raise CalibrationCacheError(
            f"calibration cache {cache_path} is stale: {'; '.join(differences)}; delete it to recalibrate "
            "(or pass another --cache path)"
        )
    if sha256_file(cache_path) != sidecar.get("cache_sha256"):
        raise CalibrationCacheError(f"calibration cache {cache_path} changed after its key was written; delete it")
    return True


def read_cache(cache_path: PathLike, key: CacheKey) -> Optional[bytes]:
    """The cache bytes when valid for ``key``, None when absent (stale caches raise)."""
    return Path(cache_path).read_bytes() if check_cache(cache_path, key) else None


def write_cache(cache_path: PathLike, key: CacheKey, data: bytes, details: Optional[Dict[str, Any]] = None) -> None:
    """Write the cache, then its key file (with the cache's sha256, so a torn pair is detected)."""
    cache_path = Path(cache_path)
    write_bytes_atomic(cache_path, bytes(data))
    sidecar = dict(details or {})  # our fields last: details cannot overwrite the key
    sidecar.update(
        format=CACHE_FORMAT,
        key=key.to_dict(),
        cache_sha256=sha256_file(cache_path),
        written_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_json_atomic(cache_sidecar_path(cache_path), sidecar)


# ---------------------------------------------------------------------------------------------
# Batches for the calibrator (pure logic)
# ---------------------------------------------------------------------------------------------


class BatchFeeder:
    """Hands out the calibration batches one at a time, each checked against the key's input shape."""

    def __init__(self, batches: Sequence[np.ndarray], input_shape: Tuple[int, ...]) -> None:
        for batch in batches:
            if tuple(batch.shape) != tuple(input_shape) or batch.dtype != np.float32:
                raise CalibrationError(
                    f"calibration batch {batch.shape} {batch.dtype} does not match the network input "
                    f"{tuple(input_shape)} float32"
                )
        self.batches = list(batches)
        self.served = 0
        self.progress: Optional[tqdm] = None

    def __len__(self) -> int:
        return len(self.batches)

    def next(self) -> Optional[np.ndarray]:
        """The next batch, or None when all were served (TensorRT then stops calibrating)."""
        if self.progress is None and self.batches:
            self.progress = tqdm(total=len(self.batches), desc="TensorRT calibration", unit="batch", leave=False)
        if self.served >= len(self.batches):
            if self.progress is not None:
                self.progress.close()
            return None
        batch = self.batches[self.served]
        self.served += 1
        if self.progress is not None:  # opened above: there was a batch to serve
            self.progress.update(1)
        return batch


# ---------------------------------------------------------------------------------------------
# The TensorRT adapter (lazy)
# ---------------------------------------------------------------------------------------------


def create_calibrator(
    batches: Optional[Sequence[np.ndarray]],
    cache_path: PathLike,
    key: CacheKey,
    details: Optional[Dict[str, Any]] = None,
) -> Any:
    """A TensorRT INT8 calibrator over ``batches`` that reads/writes the keyed cache at ``cache_path``.

    A valid cache makes TensorRT skip calibration (``batches`` may then be None); a stale or
    foreign cache raises CalibrationCacheError here, before any build starts (TensorRT would only
    print an exception raised inside its callbacks). Call ``calibrator.check()`` after the build to
    raise what went wrong inside a callback, and ``calibrator.close()`` to free device memory.
    """
    trt = import_tensorrt()
    trt_calibrator.calibrator_base(trt, key.algorithm)  # TensorRT 11 has none: say so before anything else
    has_cache = check_cache(cache_path, key)
    if not has_cache and not batches:
        raise CalibrationError(
            f"no calibration cache at {cache_path} and no calibration images to create one: pass calibration data "
            "(a folder of images, a video or a dataset config)"
        )
    feeder = BatchFeeder(batches or [], key.input_shape)
    stored = dict(details or {})

    def write(data: bytes) -> None:
        # TensorRT may write back the cache it just read; rewriting it would drop the key file's
        # details (the nodes depth-calib kept in higher precision), so an identical cache is left alone.
        if has_cache and Path(cache_path).read_bytes() == data:
            return
        write_cache(cache_path, key, data, dict(stored, calibration_batches=feeder.served))

    calibrator = trt_calibrator.create_calibrator(
        trt, key.algorithm, feeder, key.input_shape[0], lambda: read_cache(cache_path, key), write,
        lambda: open_cuda_memory(),  # looked up when TensorRT first asks for a batch, not now
    )
    calibrator.feeder, calibrator.key, calibrator.cache_path = feeder, key, Path(cache_path)
    return calibrator


# ---------------------------------------------------------------------------------------------
# Entry points: for `depth-export engine --precision int8 --calib-cache` and `depth-calib --cache`
# ---------------------------------------------------------------------------------------------


def _calibration_array(data: CalibrationData, spec: ModelSpec, num_images: int, split: str) -> Optional[np.ndarray]:
    if data is None:
        return None
    if isinstance(data, CalibrationSet):
        return data.calibration
    if isinstance(data, np.ndarray):
        return data.astype(np.float32, copy=False)
    sources = [data] if isinstance(data, str) else list(data)
    return build_calibration_set(spec, sources, num_images=num_images, num_eval=0, split=split).calibration


def read_key_file(cache_path: PathLike) -> Dict[str, Any]:
    """The key file beside a cache (key, algorithm, higher-precision nodes...); CalibrationCacheError
    when the cache has none or it is not ours."""
    return _read_sidecar(Path(cache_path))


def _stored_choice(cache_path: PathLike, method: Optional[str], batch_size: Optional[int]) -> Tuple[str, int]:
    """Method and batch: as given, else as the existing cache's key file says, else the defaults."""
    stored = read_key_file(cache_path).get("key", {}) if Path(cache_path).is_file() else {}
    method = method or stored.get("algorithm") or DEFAULT_ALGORITHM
    batch_size = batch_size or (stored.get("input_shape") or [1])[0]
    return method, int(batch_size)


def verify_cache_for_onnx(onnx_path: PathLike, cache_path: PathLike) -> Dict[str, Any]:
    """Check that the cache at ``cache_path`` was made for this FP32 ONNX and its preprocessing.

    For ``depth-export engine --precision int8 --calib-cache``: returns the key file (``key``
    with ``algorithm`` and ``input_shape``, ``higher_precision_nodes`` to pin to FP16/FP32,
    ``tensorrt_version``...). Raises CalibrationError when the cache is missing and
    CalibrationCacheError when it is stale or foreign.
    """
    from edgedepth.export.onnx_info import read_spec

    if not Path(cache_path).is_file():
        raise CalibrationError(f"calibration cache {cache_path} not found: make one with `depth-calib --cache`")
    method, batch_size = _stored_choice(cache_path, None, None)
    check_cache(cache_path, cache_key(onnx_path, read_spec(onnx_path), batch_size, method))
    return read_key_file(cache_path)


def build_int8_calibrator(
    onnx_path: PathLike,
    cache_path: PathLike,
    data: CalibrationData = None,
    method: Optional[str] = None,
    batch_size: Optional[int] = None,
    num_images: int = DEFAULT_NUM_IMAGES,
    split: str = "val",
    details: Optional[Dict[str, Any]] = None,
) -> Any:
    """A TensorRT 8.5-10.x INT8 calibrator for the FP32 ONNX at ``onnx_path``, keyed cache at ``cache_path``.

    ``data``: None (the cache must exist and match), calibration source path(s) (folder, video,
    dataset config; sampled and preprocessed with the ONNX's spec), a preprocessed N x 3 x H x W
    array or a :class:`CalibrationSet`. ``method`` / ``batch_size`` default to what an existing
    cache's key file says (else minmax, 1). Use it as ``config.int8_calibrator``; after the build
    call ``calibrator.check()`` then ``calibrator.close()``.
    """
    from edgedepth.export.onnx_info import read_spec

    spec = read_spec(onnx_path)
    method, batch_size = _stored_choice(cache_path, method, batch_size)
    key = cache_key(onnx_path, spec, batch_size, method)
    if check_cache(cache_path, key):
        return create_calibrator(None, cache_path, key, details)
    array = _calibration_array(data, spec, num_images, split)
    batches = calibration_batches(array, batch_size) if array is not None else None
    return create_calibrator(batches, cache_path, key, details)


def _profile_for_dynamic_input(builder: Any, network: Any, config: Any, shape: Tuple[int, ...]) -> None:
    tensor = network.get_input(0)
    if all(int(d) > 0 for d in tensor.shape):
        return
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, shape, shape, shape)
    config.add_optimization_profile(profile)
    config.set_calibration_profile(profile)


def calibrate_with_tensorrt(onnx_path: PathLike, calibrator: Any, log=print) -> None:
    """Run TensorRT's INT8 calibration (an INT8 build of ``onnx_path``; the engine is discarded).

    The cache it writes is what ``depth-export engine --precision int8 --calib-cache`` reuses.
    The throwaway build runs at builder optimization level 0 where it exists (8.6+): calibration
    needs the network's activations, not the fastest tactics.
    """
    trt = import_tensorrt()
    api = probe_api(trt)
    logger = make_logger(trt, log)
    builder = trt.Builder(logger)
    network = create_network(trt, builder, network_flag_names(api))
    parse_onnx(trt, network, logger, Path(onnx_path))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.set_flag(trt.BuilderFlag.INT8)
    if api.optimization_level:
        config.builder_optimization_level = 0
    _profile_for_dynamic_input(builder, network, config, calibrator.key.input_shape)
    config.int8_calibrator = calibrator
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        calibrator.close()
    calibrator.check()
    if plan is None:
        detail = "; ".join(logger.errors[-3:]) or "see the TensorRT log above"
        raise CalibrationError(f"TensorRT's INT8 calibration build of {onnx_path} failed: {detail}")


def write_tensorrt_cache(
    onnx_path: PathLike, calibration: np.ndarray, cache_path: PathLike, method: str,
    batch_size: int = 1, details: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Calibrate with TensorRT and write ``cache_path`` + key file; reuse a valid existing cache.

    Returns what the report says about it.
    """
    trt = import_tensorrt()
    details = dict(details or {}, tensorrt_version=str(getattr(trt, "__version__", "?")))
    calibrator = build_int8_calibrator(onnx_path, cache_path, calibration, method, batch_size, details=details)
    reused = len(calibrator.feeder) == 0  # a valid cache: TensorRT reads it instead of calibrating
    if not reused:
        calibrate_with_tensorrt(onnx_path, calibrator)
        if not calibrator.cache_written:
            raise CalibrationError(f"TensorRT finished without writing a calibration cache to {cache_path}")
    return {
        "path": str(cache_path), "key_file": str(cache_sidecar_path(cache_path)), "reused": reused,
        "algorithm": ALGORITHMS[method], "tensorrt": str(getattr(trt, "__version__", "?")),
        "key": calibrator.key.to_dict(), "batches": calibrator.feeder.served,
    }
