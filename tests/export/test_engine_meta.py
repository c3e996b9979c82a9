"""Engine sidecar, cache keys and the compatibility verdict the runtime relies on."""
from __future__ import annotations

import json

import pytest

from edgedepth.errors import ExportError
from edgedepth.spec import ModelSpec
from edgedepth.export import engine_meta
from edgedepth.export.engine_meta import GpuInfo

ORIN = GpuInfo("Orin", "8.7")
RTX = GpuInfo("NVIDIA GeForce RTX 4090", "8.9")
SHAPES = {"input": {"static": [1, 3, 256, 320]}}
OPTIONS = {"precision": "fp16", "workspace_gib": None, "version_compatible": False, "hardware_compatibility": "none"}


def _key(**changes):
    args = dict(onnx_sha256="a" * 64, trt_version="10.3.0", gpu=ORIN, precision="fp16", shapes=SHAPES, options=OPTIONS)
    args.update(changes)
    return engine_meta.cache_key(**args)


def _sidecar(tmp_path, trt="10.3.0", gpu=ORIN, options=OPTIONS):
    spec = ModelSpec(256, 320, max_depth=20.0, provenance={"precision": "fp16"})
    return engine_meta.engine_sidecar(
        spec, trt, "10", gpu, "fp16", SHAPES, tmp_path / "model.onnx", "b" * 64, options, 93.456, "c" * 64, _key()
    )


def test_cache_key_is_stable_and_changes_with_everything_that_changes_the_plan():
    assert _key() == _key()
    variants = [
        _key(onnx_sha256="d" * 64), _key(trt_version="10.3.1"), _key(gpu=RTX), _key(precision="fp32"),
        _key(shapes={"input": {"static": [1, 3, 224, 320]}}), _key(options={**OPTIONS, "workspace_gib": 2.0}),
    ]
    assert len({_key(), *variants}) == len(variants) + 1


def test_sidecar_round_trips_with_spec_and_provenance(tmp_path):
    engine = tmp_path / "model.engine"
    engine_meta.write_sidecar(engine, _sidecar(tmp_path))
    assert engine_meta.sidecar_path(engine).name == "model.engine.json"
    data = engine_meta.read_sidecar(engine)
    assert engine_meta.sidecar_spec(data).max_depth == 20.0
    assert data["tensorrt_version"] == "10.3.0" and data["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert data["source_onnx"] == {"name": "model.onnx", "sha256": "b" * 64}
    assert data["build_seconds"] == 93.46 and data["shapes"] == SHAPES


def test_missing_or_foreign_sidecar_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ExportError, match="rebuild the engine with `depth-export engine`"):
        engine_meta.read_sidecar(tmp_path / "model.engine")
    (tmp_path / "model.engine.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ExportError, match="not an edgedepth engine sidecar"):
        engine_meta.read_sidecar(tmp_path / "model.engine")


def test_compatibility_verdicts(tmp_path):
    sidecar = _sidecar(tmp_path)
    assert engine_meta.compatibility_problem(sidecar, "10.3.0", ORIN) is None
    assert engine_meta.compatibility_problem(sidecar, "10.3.0.30", ORIN) is None  # JetPack's 4-field spelling
    problem = engine_meta.compatibility_problem(sidecar, "10.7.0", ORIN)
    assert "built with TensorRT 10.3.0 but this machine has 10.7.0" in problem and "rebuild" in problem
    problem = engine_meta.compatibility_problem(sidecar, "10.3.0", RTX)
    assert "built for Orin (compute 8.7)" in problem and "RTX 4090" in problem


def test_version_and_hardware_compatible_engines_are_accepted_where_they_run(tmp_path):
    options = {**OPTIONS, "version_compatible": True, "hardware_compatibility": "ampere+"}
    sidecar = _sidecar(tmp_path, gpu=RTX, options=options)
    assert engine_meta.compatibility_problem(sidecar, "10.7.0", GpuInfo("NVIDIA A100", "8.0")) is None
    assert engine_meta.compatibility_problem(sidecar, "11.4.0.106", RTX) is None  # 10 -> 11 is one step
    assert "same or a later TensorRT" in engine_meta.compatibility_problem(sidecar, "10.1.0", RTX)


def test_hardware_compatibility_levels_still_check_the_gpu(tmp_path):
    ampere_plus = _sidecar(tmp_path, gpu=RTX, options={**OPTIONS, "hardware_compatibility": "ampere+"})
    problem = engine_meta.compatibility_problem(ampere_plus, "10.3.0", GpuInfo("Tesla T4", "7.5"))
    assert "Ampere and newer" in problem and "Tesla T4" in problem
    same_cc = _sidecar(tmp_path, gpu=ORIN, options={**OPTIONS, "hardware_compatibility": "same-compute-capability"})
    assert engine_meta.compatibility_problem(same_cc, "10.3.0", GpuInfo("Orin NX", "8.7")) is None
    assert "compute 8.7" in engine_meta.compatibility_problem(same_cc, "10.3.0", RTX)


def test_version_compatible_engines_do_not_skip_a_major(tmp_path):
    options = {**OPTIONS, "version_compatible": True}
    sidecar = {**_sidecar(tmp_path, options=options), "tensorrt_version": "8.6.2.3"}
    assert engine_meta.compatibility_problem(sidecar, "10.3.0", ORIN) is None
    assert "8->10, 10->11" in engine_meta.compatibility_problem(sidecar, "11.4.0.106", ORIN)


def test_cache_holds_plan_and_sidecar_under_the_key(tmp_path):
    plan = tmp_path / "built.engine"
    plan.write_bytes(b"opaque plan bytes")
    sidecar = _sidecar(tmp_path)
    key = sidecar["cache_key"]
    assert engine_meta.lookup_cache(tmp_path / "cache", key) is None
    engine_meta.store_in_cache(tmp_path / "cache", key, plan, sidecar)
    cached, cached_sidecar = engine_meta.lookup_cache(tmp_path / "cache", key)
    assert cached.read_bytes() == b"opaque plan bytes" and cached_sidecar["cache_key"] == key
    assert engine_meta.lookup_cache(tmp_path / "cache", _key(precision="fp32")) is None
    engine_meta.place_file(cached, tmp_path / "out" / "model.engine")
    assert (tmp_path / "out" / "model.engine").read_bytes() == b"opaque plan bytes"
