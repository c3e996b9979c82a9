"""What a candidate is: precision read from the artifact (never its name), spec findings, sizes."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgedepth.parity.artifacts import ParityUsageError, describe_artifact, feed_spec, spec_findings


def test_precision_comes_from_the_graph_not_the_file_name(artifacts, tmp_path):
    misnamed = {"fp32": tmp_path / "model.int8.onnx", "fp16": tmp_path / "model.fp32.onnx",
                "int8": tmp_path / "model.fp16.onnx"}
    for precision, target in misnamed.items():
        shutil.copyfile(artifacts[precision], target)
        assert describe_artifact(str(target)).precision == precision


def test_engine_precision_and_spec_come_from_its_sidecar(artifacts, tmp_path):
    from edgedepth.export.onnx_info import read_spec
    from edgedepth.trt.platform import GpuInfo
    from edgedepth.trt.sidecar import BuildOptions, EngineSidecar, write_sidecar

    engine = tmp_path / "model.fp16.engine"  # the name says fp16; the sidecar says int8
    engine.write_bytes(b"not a real plan: describe_artifact never deserialises it")
    spec = read_spec(artifacts["int8"])
    sidecar = EngineSidecar(spec, "10.3.0", "10", GpuInfo("Orin", "8.7"), "int8",
                            {"input": {"static": [1, 3, 64, 96]}}, {"name": artifacts["int8"].name, "sha256": "0" * 64},
                            BuildOptions("int8"), 12.0, "1" * 64, "key")
    write_sidecar(engine, sidecar)
    described = describe_artifact(str(engine))
    assert (described.kind, described.precision) == ("tensorrt", "int8")
    assert described.spec == spec and described.details["tensorrt_version"] == "10.3.0"


def test_engine_without_sidecar_is_a_usage_error(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ParityUsageError, match="model.engine.json not found"):
        describe_artifact(str(engine))


@pytest.mark.parametrize("name", ["missing.onnx", "weights.bin"])
def test_missing_or_unknown_files_are_usage_errors(tmp_path, name):
    if name == "weights.bin":
        (tmp_path / name).write_bytes(b"\0")
    with pytest.raises(ParityUsageError, match=name):
        describe_artifact(str(tmp_path / name))


def test_spec_findings_name_every_field_that_changes_the_numbers(tiny_checkpoint, artifacts, spec_rewriter, tmp_path):
    reference = describe_artifact(str(tiny_checkpoint), "checkpoint")
    assert spec_findings(describe_artifact(str(artifacts["fp16"])), reference) == []
    lying = spec_rewriter(artifacts["fp32"], tmp_path / "bgr.onnx", color_order="BGR", max_depth=20.0)
    findings = spec_findings(describe_artifact(str(lying)), reference)
    assert {(f.severity, f.spec_field) for f in findings} == {("error", "color_order"), ("error", "max_depth")}


def test_a_candidate_from_another_checkpoint_is_a_warning(tiny_checkpoint, artifacts, spec_rewriter, tmp_path):
    reference = describe_artifact(str(tiny_checkpoint), "checkpoint")
    other = describe_artifact(str(artifacts["fp32"]))
    provenance = dict(other.spec.provenance, checkpoint_sha256="f" * 64)
    moved = describe_artifact(str(spec_rewriter(artifacts["fp32"], tmp_path / "other.onnx", provenance=provenance)))
    findings = spec_findings(moved, reference)
    assert [f.severity for f in findings] == ["warning"]
    assert "ffffffffffff" in findings[0].message and reference.sha256[:12] in findings[0].message


def test_dynamic_candidates_are_fed_at_the_reference_size(tiny_checkpoint, artifacts, spec_rewriter, tmp_path):
    reference = describe_artifact(str(tiny_checkpoint), "checkpoint")
    rewritten = spec_rewriter(artifacts["fp32"], tmp_path / "d.onnx", dynamic=True, height=320, width=320)
    dynamic = describe_artifact(str(rewritten))
    fed = feed_spec(dynamic, reference)
    assert (fed.height, fed.width) == (64, 96) and np.allclose(fed.mean, dynamic.spec.mean)
    static = describe_artifact(str(spec_rewriter(artifacts["fp32"], tmp_path / "s.onnx", height=96, width=96)))
    with pytest.raises(ParityUsageError, match="96x96 input but the checkpoint's reference runs at 64x96"):
        feed_spec(static, reference)
