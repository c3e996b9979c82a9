"""The engine cache: keys that change with everything that changes the plan, entries with sidecars."""
from __future__ import annotations

from edgedepth.export import engine_meta
from edgedepth.spec import ModelSpec
from edgedepth.trt.platform import GpuInfo
from edgedepth.trt.sidecar import BuildOptions, EngineSidecar

ORIN = GpuInfo("Orin", "8.7")
RTX = GpuInfo("NVIDIA GeForce RTX 4090", "8.9")
SHAPES = {"input": {"static": [1, 3, 256, 320]}}
OPTIONS = {"precision": "fp16", "workspace_gib": None, "version_compatible": False, "hardware_compatibility": "none"}


def _key(**changes):
    args = dict(onnx_sha256="a" * 64, trt_version="10.3.0", gpu=ORIN, precision="fp16", shapes=SHAPES, options=OPTIONS)
    args.update(changes)
    return engine_meta.cache_key(**args)


def _sidecar() -> EngineSidecar:
    return EngineSidecar(
        ModelSpec(256, 320, max_depth=20.0), "10.3.0", "10", ORIN, "fp16", SHAPES,
        {"name": "model.onnx", "sha256": "b" * 64}, BuildOptions("fp16"), 93.456, "c" * 64, _key(),
    )


def test_cache_key_is_stable_and_changes_with_everything_that_changes_the_plan():
    assert _key() == _key()
    variants = [
        _key(onnx_sha256="d" * 64), _key(trt_version="10.3.1"), _key(gpu=RTX), _key(precision="fp32"),
        _key(shapes={"input": {"static": [1, 3, 224, 320]}}), _key(options={**OPTIONS, "workspace_gib": 2.0}),
    ]
    assert len({_key(), *variants}) == len(variants) + 1


def test_cache_holds_plan_and_sidecar_under_the_key(tmp_path):
    plan = tmp_path / "built.engine"
    plan.write_bytes(b"opaque plan bytes")
    sidecar = _sidecar()
    key = sidecar.cache_key
    assert engine_meta.lookup_cache(tmp_path / "cache", key) is None
    engine_meta.store_in_cache(tmp_path / "cache", key, plan, sidecar)
    cached, cached_sidecar = engine_meta.lookup_cache(tmp_path / "cache", key)
    assert cached.read_bytes() == b"opaque plan bytes" and cached_sidecar.cache_key == key
    assert engine_meta.lookup_cache(tmp_path / "cache", _key(precision="fp32")) is None
    engine_meta.place_file(cached, tmp_path / "out" / "model.engine")
    assert (tmp_path / "out" / "model.engine").read_bytes() == b"opaque plan bytes"
