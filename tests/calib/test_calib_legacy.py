"""Legacy implicit INT8 (TensorRT 8.5-10.x): cache key, stale/foreign cache refusal, batching, the
calibrator adapter (against a stand-in for the tensorrt module), and real TensorRT where present."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

from edgedepth.calib import legacy
from edgedepth.calib.calibration_set import calibration_batches
from edgedepth.calib.errors import CalibrationCacheError, CalibrationError
from edgedepth.errors import DeviceError
from edgedepth.spec import ModelSpec

from calib_helpers import build_small_depth_onnx, moving_frames

SPEC = ModelSpec(height=32, width=32)


@pytest.fixture()
def small_onnx(tmp_path):
    return build_small_depth_onnx(tmp_path / "small.onnx")


def test_cache_key_covers_model_preprocessing_shape_and_algorithm(small_onnx, tmp_path):
    key = legacy.cache_key(small_onnx, SPEC, batch_size=2, algorithm="minmax")
    assert key.input_shape == (2, 3, 32, 32) and key.algorithm == "minmax" and len(key.model_sha256) == 64
    other = build_small_depth_onnx(tmp_path / "other.onnx", seed=1)
    assert legacy.cache_key(other, SPEC, 2, "minmax").model_sha256 != key.model_sha256
    other_std = SPEC.replace(std=(0.5, 0.5, 0.5))
    assert legacy.cache_key(small_onnx, other_std, 2, "minmax").preprocess_hash != key.preprocess_hash
    with pytest.raises(CalibrationError, match="minmax or entropy"):
        legacy.cache_key(small_onnx, SPEC, 1, "percentile")


def test_cache_round_trip_and_key_file_beside_it(small_onnx, tmp_path):
    cache = tmp_path / "model.calib"
    key = legacy.cache_key(small_onnx, SPEC, 1, "entropy")
    assert legacy.check_cache(cache, key) is False  # no cache yet: calibration will write one
    legacy.write_cache(cache, key, b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n", {"calibration_images": 4})
    sidecar = json.loads((tmp_path / "model.calib.json").read_text())
    assert sidecar["key"]["input_shape"] == [1, 3, 32, 32] and sidecar["calibration_images"] == 4
    assert legacy.check_cache(cache, key) is True
    assert legacy.read_cache(cache, key).startswith(b"TRT-8601")


def test_stale_cache_is_refused_naming_what_changed(small_onnx, tmp_path):
    cache = tmp_path / "model.calib"
    legacy.write_cache(cache, legacy.cache_key(small_onnx, SPEC, 1, "minmax"), b"cache")
    resized = legacy.cache_key(small_onnx, SPEC.replace(height=64), 1, "minmax")
    with pytest.raises(CalibrationCacheError, match="input size, normalisation or colour order changed") as info:
        legacy.check_cache(cache, resized)
    assert "delete it to recalibrate" in str(info.value) and "input_shape" in str(info.value)
    retrained = legacy.cache_key(build_small_depth_onnx(tmp_path / "retrained.onnx", seed=3), SPEC, 1, "minmax")
    with pytest.raises(CalibrationCacheError, match="the ONNX changed"):
        legacy.check_cache(cache, retrained)


def test_foreign_or_tampered_cache_is_refused(small_onnx, tmp_path):
    key = legacy.cache_key(small_onnx, SPEC, 1, "minmax")
    foreign = tmp_path / "foreign.calib"
    foreign.write_bytes(b"TRT-8502-MinMaxCalibration\n")
    with pytest.raises(CalibrationCacheError, match="has no key file foreign.calib.json"):
        legacy.check_cache(foreign, key)
    cache = tmp_path / "model.calib"
    legacy.write_cache(cache, key, b"original")
    cache.write_bytes(b"edited by hand")
    with pytest.raises(CalibrationCacheError, match="changed after its key was written"):
        legacy.check_cache(cache, key)


def test_export_can_verify_a_cache_against_its_onnx(small_onnx, tmp_path):
    cache = tmp_path / "model.calib"
    with pytest.raises(CalibrationError, match="not found: make one with `depth-calib --cache`"):
        legacy.verify_cache_for_onnx(small_onnx, cache)
    key = legacy.cache_key(small_onnx, SPEC, 2, "entropy")
    legacy.write_cache(cache, key, b"cache", {"higher_precision_nodes": ["/head/conv/Conv"]})
    stored = legacy.verify_cache_for_onnx(small_onnx, cache)
    assert stored["key"]["algorithm"] == "entropy" and stored["higher_precision_nodes"] == ["/head/conv/Conv"]
    with pytest.raises(CalibrationCacheError, match="the ONNX changed"):
        legacy.verify_cache_for_onnx(build_small_depth_onnx(tmp_path / "new.onnx", seed=5), cache)


@pytest.mark.parametrize("field, value, match", [
    ("input_shape", [-1, 3, 32, 32], r"input_shape \[-1, 3, 32, 32\].*4 whole numbers >= 1"),
    ("input_shape", [0, 3, 32, 32], r"input_shape \[0, 3, 32, 32\]"),
    ("input_shape", "abc", "input_shape 'abc'"),  # was ValueError: invalid literal for int()
    ("input_shape", [1, 3, 32], r"input_shape \[1, 3, 32\]"),
    ("input_shape", [1.5, 3, 32, 32], r"input_shape \[1.5, 3, 32, 32\]"),
    ("input_shape", [True, 3, 32, 32], r"input_shape \[True, 3, 32, 32\]"),
    ("input_shape", [1, 1, 32, 32], r"input_shape \[1, 1, 32, 32\].*3 channels"),
    ("algorithm", 5, "algorithm 5"),
    ("algorithm", "percentile", "algorithm 'percentile'"),
    ("model_sha256", None, "model_sha256 None"),
    ("preprocess_hash", ["x"], r"preprocess_hash \['x'\]"),
])
def test_a_hand_edited_key_file_is_refused_naming_the_field(small_onnx, tmp_path, field, value, match):
    """D19: an edited key file with input_shape [-1,3,32,32] or [0,...] was accepted, "abc" raised
    ValueError, through verify_cache_for_onnx (what `depth-export engine --calib-cache` calls)."""
    cache = tmp_path / "model.calib"
    legacy.write_cache(cache, legacy.cache_key(small_onnx, SPEC, 1, "minmax"), b"TRT-8601-MinMaxCalibration\n")
    key_file = tmp_path / "model.calib.json"
    data = json.loads(key_file.read_text())
    data["key"][field] = value
    key_file.write_text(json.dumps(data))
    with pytest.raises(CalibrationCacheError, match=match) as caught:
        legacy.verify_cache_for_onnx(small_onnx, cache)
    message = str(caught.value)
    assert "model.calib.json" in message and "delete" in message and "\n" not in message


@pytest.mark.parametrize("change, match", [
    ({"key": "oops"}, "key 'oops'"),  # was AttributeError: 'str' object has no attribute 'get'
    ({"key": None}, "key None"),
    ({"cache_sha256": 7}, "cache_sha256 7"),
    ({"higher_precision_nodes": "/head/conv/Conv"}, "higher_precision_nodes '/head/conv/Conv'"),
    ({"tensorrt_version": 8.6}, "tensorrt_version 8.6"),
])
def test_a_key_file_with_a_mangled_top_level_field_is_refused(small_onnx, tmp_path, change, match):
    cache = tmp_path / "model.calib"
    legacy.write_cache(cache, legacy.cache_key(small_onnx, SPEC, 1, "minmax"), b"TRT-8601-MinMaxCalibration\n")
    key_file = tmp_path / "model.calib.json"
    key_file.write_text(json.dumps({**json.loads(key_file.read_text()), **change}))
    with pytest.raises(CalibrationCacheError, match=match):
        legacy.verify_cache_for_onnx(small_onnx, cache)


def test_batch_feeder_serves_full_batches_then_none():
    data = np.zeros((5, 3, 32, 32), np.float32)
    feeder = legacy.BatchFeeder(calibration_batches(data, 2), (2, 3, 32, 32))
    assert len(feeder) == 2  # the 5th image cannot fill a batch of 2
    assert feeder.next().shape == (2, 3, 32, 32) and feeder.next() is not None and feeder.next() is None
    with pytest.raises(CalibrationError, match="does not match the network input"):
        legacy.BatchFeeder([np.zeros((1, 3, 64, 64), np.float32)], (1, 3, 32, 32))


class FakeCalibratorBase:
    """Stands in for trt.IInt8*Calibrator: records that the base constructor ran."""

    def __init__(self):
        self.base_initialised = True


class FakeMemory:
    def __init__(self):
        self.copies, self.freed = [], False

    def device(self, nbytes):
        self.nbytes = nbytes
        return 4096

    def copy_to_device_async(self, pointer, host):
        self.copies.append((pointer, host.copy()))

    def synchronize(self):
        pass

    def free_device(self, pointer):
        pass

    def close(self):
        self.freed = True


@pytest.fixture()
def fake_tensorrt(monkeypatch):
    trt = types.SimpleNamespace(__version__="8.6.1", IInt8EntropyCalibrator2=FakeCalibratorBase,
                                IInt8MinMaxCalibrator=FakeCalibratorBase)
    memory = FakeMemory()
    monkeypatch.setattr(legacy, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(legacy, "open_cuda_memory", lambda: memory)
    return trt, memory


def test_calibrator_adapter_feeds_device_batches_and_writes_the_keyed_cache(small_onnx, tmp_path, fake_tensorrt):
    _, memory = fake_tensorrt
    data = np.random.default_rng(0).normal(0, 1, (3, 3, 32, 32)).astype(np.float32)
    cache = tmp_path / "model.calib"
    calibrator = legacy.build_int8_calibrator(small_onnx, cache, data, method="entropy")
    assert calibrator.base_initialised and calibrator.get_batch_size() == 1
    assert calibrator.read_calibration_cache() is None
    pointers = [calibrator.get_batch(["input"]) for _ in range(4)]
    assert pointers[:3] == [[4096]] * 3 and pointers[3] is None
    assert np.array_equal(memory.copies[1][1], data[1:2])
    calibrator.write_calibration_cache(memoryview(b"TRT-8601-EntropyCalibration2\n"))
    calibrator.check()
    calibrator.close()
    assert memory.freed and calibrator.cache_written
    again = legacy.build_int8_calibrator(small_onnx, cache)  # algorithm and batch come from the key file
    assert again.key.algorithm == "entropy" and len(again.feeder) == 0
    assert again.read_calibration_cache() == b"TRT-8601-EntropyCalibration2\n"


def test_calibrator_reads_images_from_a_source_with_the_onnx_spec(small_onnx, tmp_path, fake_tensorrt):
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    for index, frame in enumerate(moving_frames(6)):
        cv2.imwrite(str(folder / f"{index}.png"), frame)
    calibrator = legacy.build_int8_calibrator(small_onnx, tmp_path / "m.calib", str(folder), batch_size=2)
    assert len(calibrator.feeder) == 3 and calibrator.key.input_shape == (2, 3, 32, 32)


def test_calibrator_refuses_a_stale_cache_before_any_build(small_onnx, tmp_path, fake_tensorrt):
    cache = tmp_path / "model.calib"
    legacy.write_cache(cache, legacy.cache_key(small_onnx, SPEC, 4, "minmax"), b"cache")
    with pytest.raises(CalibrationCacheError, match="is stale"):
        legacy.build_int8_calibrator(small_onnx, cache, np.zeros((4, 3, 32, 32), np.float32), batch_size=1)
    with pytest.raises(CalibrationError, match="no calibration cache"):
        legacy.build_int8_calibrator(small_onnx, tmp_path / "none.calib", None)


def test_callback_errors_surface_after_the_build(small_onnx, tmp_path, fake_tensorrt, monkeypatch):
    calibrator = legacy.build_int8_calibrator(small_onnx, tmp_path / "m.calib", np.zeros((1, 3, 32, 32), np.float32))
    monkeypatch.setattr(legacy, "open_cuda_memory", lambda: (_ for _ in ()).throw(RuntimeError("no CUDA device")))
    assert calibrator.get_batch(["input"]) is None  # TensorRT would just stop calibrating
    with pytest.raises(DeviceError, match="no CUDA device"):
        calibrator.check()


def test_a_cache_tensorrt_refuses_is_named_instead_of_a_generic_calibration_error(small_onnx, tmp_path, fake_tensorrt):
    """TensorRT asks for images when it does not accept the cache it was served; with none to give,
    the calibrator says so instead of TensorRT's bare "calibration failure"."""
    cache = tmp_path / "model.calib"
    legacy.write_cache(cache, legacy.cache_key(small_onnx, SPEC, 1, "minmax"), b"TRT-8502-MinMaxCalibration\n",
                       {"tensorrt_version": "8.5.2.2"})
    calibrator = legacy.build_int8_calibrator(small_onnx, cache)
    assert calibrator.read_calibration_cache() is not None
    assert calibrator.get_batch(["input"]) is None
    with pytest.raises(DeviceError, match="did not accept the calibration cache.*recalibrate"):
        calibrator.check()


def test_writing_back_the_cache_tensorrt_just_read_keeps_the_key_files_details(small_onnx, tmp_path, fake_tensorrt):
    cache = tmp_path / "model.calib"
    key = legacy.cache_key(small_onnx, SPEC, 1, "minmax")
    legacy.write_cache(cache, key, b"TRT-8601-MinMaxCalibration\n", {"higher_precision_nodes": ["/head/conv/Conv"]})
    calibrator = legacy.build_int8_calibrator(small_onnx, cache)
    calibrator.write_calibration_cache(memoryview(calibrator.read_calibration_cache()))
    calibrator.check()
    assert legacy.read_key_file(cache)["higher_precision_nodes"] == ["/head/conv/Conv"]


def test_tensorrt_11_gets_a_message_pointing_to_qdq(small_onnx, tmp_path, monkeypatch):
    monkeypatch.setattr(legacy, "import_tensorrt", lambda: types.SimpleNamespace(__version__="11.0.0"))
    with pytest.raises(DeviceError, match="TensorRT 11 removed implicit INT8"):
        legacy.build_int8_calibrator(small_onnx, tmp_path / "m.calib", np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.tensorrt
def test_tensorrt_calibration_writes_a_cache_that_the_next_build_reuses(small_onnx, tmp_path):
    data = np.random.default_rng(0).normal(0, 1, (8, 3, 32, 32)).astype(np.float32)
    cache = tmp_path / "model.calib"
    first = legacy.write_tensorrt_cache(small_onnx, data, cache, "entropy")
    assert not first["reused"] and first["batches"] == 8 and cache.is_file()
    assert legacy.check_cache(cache, legacy.cache_key(small_onnx, SPEC, 1, "entropy"))
    second = legacy.write_tensorrt_cache(small_onnx, data, cache, "entropy")
    assert second["reused"] and second["batches"] == 0


@pytest.mark.tensorrt
def test_tensorrt_builds_an_int8_engine_from_the_cache_alone(small_onnx, tmp_path):
    data = np.random.default_rng(0).normal(0, 1, (4, 3, 32, 32)).astype(np.float32)
    cache = tmp_path / "model.calib"
    legacy.write_tensorrt_cache(small_onnx, data, cache, "minmax")
    calibrator = legacy.build_int8_calibrator(small_onnx, cache, data=None, method="minmax")
    legacy.calibrate_with_tensorrt(small_onnx, calibrator)  # raises if the build fails
    assert calibrator.feeder.served == 0  # TensorRT read the cache instead of asking for images


@pytest.mark.tensorrt
def test_depth_export_builds_int8_from_the_cache_with_the_kept_nodes_pinned(small_onnx, tmp_path):
    """`depth-export engine --precision int8 --calib-cache`: the cache's key file says which nodes
    depth-calib kept in higher precision; the engine pins them (and records them in its sidecar)."""
    from edgedepth.export.onnx_info import find_output_head
    from edgedepth.export.trt_build import build_engine
    from edgedepth.runtime import open_backend
    from edgedepth.trt.generation import probe_api
    from edgedepth.trt.imports import import_tensorrt

    if not probe_api(import_tensorrt()).calibrator:
        pytest.skip("this TensorRT (11+) has no implicit INT8 calibrator")
    data = np.random.default_rng(0).normal(0, 1, (8, 3, 32, 32)).astype(np.float32)
    cache = tmp_path / "model.calib"
    kept = find_output_head(small_onnx) + ["/block/conv1/Conv"]
    legacy.write_tensorrt_cache(small_onnx, data, cache, "entropy", details={"higher_precision_nodes": kept})
    result = build_engine(str(small_onnx), str(tmp_path / "m.int8.engine"), precision="int8", calib_cache=str(cache),
                          log=lambda message: None)
    options = result.sidecar.build_options
    assert set(kept) <= set(options.fp32_nodes) and options.calibration_cache_sha256
    assert options.unquantized_precision == "fp16"
    with open_backend(str(result.path)) as backend:
        assert np.isfinite(backend.infer(data[:1])).all()
