"""What a candidate artifact is, read from the artifact itself: kind, precision, spec, hash.

The precision comes from the ONNX graph (Q/DQ nodes -> int8, FP16 weights or casts -> fp16) or the
engine's sidecar, never from the file name. The candidate's spec is then compared with the
checkpoint's: a candidate is run with its own spec (as the runtime on the device would run it),
so metadata that lies about the normalisation shows up as wrong depth, and is named here too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgedepth.errors import EdgeDepthError, UsageError
from edgedepth.io import sha256_file
from edgedepth.spec import ModelSpec

#: Spec fields that change the numbers a model sees or produces: a difference is an error.
NUMERIC_SPEC_FIELDS = (
    "mean", "std", "color_order", "min_depth", "max_depth", "output_unit", "layout", "architecture", "arch_options",
)
#: Spec fields that only trace where an artifact came from: a difference is a warning.
PROVENANCE_FIELDS = ("config_hash",)


class ParityUsageError(UsageError):
    """A candidate or input that cannot be compared at all (missing, unreadable, wrong size): exit 2."""


@dataclass
class Finding:
    """Something about a candidate a signer must know: ``error`` fails it, ``warning`` does not."""

    severity: str
    message: str
    #: The spec field it concerns ("mean", "std", ...), empty when none.
    spec_field: str = ""

    def to_dict(self) -> Dict[str, str]:
        return {"severity": self.severity, "field": self.spec_field, "message": self.message}


@dataclass
class Artifact:
    """One model file under test (or the reference checkpoint)."""

    path: Path
    kind: str  # backend that runs it: "onnxruntime", "tensorrt", "pytorch"
    precision: str
    spec: ModelSpec
    sha256: str
    size_bytes: int
    details: Dict[str, Any] = field(default_factory=dict)
    findings: List[Finding] = field(default_factory=list)

    @property
    def spec_errors(self) -> List[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "precision": self.precision,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "spec": self.spec.to_dict(),
            "details": self.details,
            "findings": [finding.to_dict() for finding in self.findings],
        }


def _require_file(path: Path, what: str) -> None:
    if path.is_dir():
        inside = path / "checkpoints" / "best.pt"
        hint = f"pass {inside}" if what == "checkpoint" and inside.is_file() else "pass a model file inside it"
        raise ParityUsageError(f"{what} {str(path)!r} is a folder, not a file; {hint}")
    if not path.is_file():
        raise ParityUsageError(f"{what} {str(path)!r} does not exist; pass the path of an existing file")


def _backend_kind(path: Path) -> str:
    from edgedepth.runtime.backend import backend_for_path

    return backend_for_path(str(path))


def _onnx_facts(path: Path) -> Tuple[str, ModelSpec, Dict[str, Any]]:
    from edgedepth.export import onnx_info

    model = onnx_info.load_model(path, load_weights=False)
    spec = onnx_info.read_spec(model)
    return onnx_info.onnx_precision(model), spec, {"opset": _opset(model)}


def _opset(model: Any) -> Optional[int]:
    return next((int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)


def _engine_facts(path: Path) -> Tuple[str, ModelSpec, Dict[str, Any]]:
    from edgedepth.trt.sidecar import read_sidecar

    sidecar = read_sidecar(path)
    data = sidecar.to_dict()
    details = {key: data[key] for key in ("tensorrt_version", "gpu", "shapes", "source_onnx", "built_at")}
    return sidecar.precision, sidecar.model_spec, details


def _checkpoint_facts(path: Path) -> Tuple[str, ModelSpec, Dict[str, Any]]:
    from edgedepth.training.checkpoint import read_checkpoint

    stored = read_checkpoint(str(path))
    config = stored.get("config") or {}
    details = {"config_name": config.get("name"), "train_step": (stored.get("train_state") or {}).get("step")}
    return "fp32", ModelSpec.from_dict(stored["spec"]), details


_FACTS = {"onnxruntime": _onnx_facts, "tensorrt": _engine_facts, "pytorch": _checkpoint_facts}


def describe_artifact(path: str, what: str = "candidate") -> Artifact:
    """Read kind, precision, spec and sha256 of ``path`` without running it.

    Raises ParityUsageError when the file is missing, of an unknown type, or carries no spec.
    """
    file = Path(path)
    _require_file(file, what)
    try:
        kind = _backend_kind(file)
        precision, spec, details = _FACTS[kind](file)
    except ParityUsageError:
        raise
    except EdgeDepthError as exc:
        raise ParityUsageError(f"{what} {file}: {exc}") from exc
    return Artifact(file, kind, precision, spec, sha256_file(file), file.stat().st_size, details)


def _differs(field_name: str, ours: Any, theirs: Any) -> bool:
    if field_name in ("mean", "std", "min_depth", "max_depth"):
        ours_values = ours if isinstance(ours, (list, tuple)) else [ours]
        theirs_values = theirs if isinstance(theirs, (list, tuple)) else [theirs]
        return len(ours_values) != len(theirs_values) or any(
            not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) for a, b in zip(ours_values, theirs_values)
        )
    return ours != theirs


def spec_findings(candidate: Artifact, reference: Artifact) -> List[Finding]:
    """Differences between the candidate's spec and the checkpoint's, worst first."""
    findings = []
    for name in NUMERIC_SPEC_FIELDS:
        ours, theirs = getattr(candidate.spec, name), getattr(reference.spec, name)
        if _differs(name, ours, theirs):
            findings.append(Finding("error", f"spec.{name} is {_text(ours)} but the checkpoint's is {_text(theirs)}: "
                                             "the device would feed or read this model differently; re-export it",
                                    name))
    findings += _provenance_findings(candidate, reference)
    recorded = candidate.spec.provenance.get("precision")
    if recorded and candidate.kind == "onnxruntime" and recorded != candidate.precision:
        findings.append(Finding(
            "warning", f"metadata says precision {recorded!r} but the graph is {candidate.precision}"
        ))
    return findings


def _provenance_findings(candidate: Artifact, reference: Artifact) -> List[Finding]:
    findings = []
    for name in PROVENANCE_FIELDS:
        ours, theirs = getattr(candidate.spec, name), getattr(reference.spec, name)
        if ours and theirs and ours != theirs:
            findings.append(Finding("warning", f"spec.{name} {ours} differs from the checkpoint's {theirs}", name))
    source = candidate.spec.provenance.get("checkpoint_sha256")
    if source and source != reference.sha256:
        findings.append(Finding(
            "warning",
            f"exported from a checkpoint with sha256 {str(source)[:12]}..., not this one ({reference.sha256[:12]}...)",
        ))
    return findings


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def feed_spec(candidate: Artifact, reference: Artifact) -> ModelSpec:
    """The spec the candidate's inputs are preprocessed with: its own, at the reference's size.

    Raises ParityUsageError when a static candidate takes another input size than the checkpoint.
    """
    ref, spec = reference.spec, candidate.spec
    if spec.dynamic:
        return spec.replace(height=ref.height, width=ref.width)
    if (spec.height, spec.width) != (ref.height, ref.width):
        raise ParityUsageError(
            f"candidate {candidate.path} takes {spec.height}x{spec.width} input but the checkpoint's reference runs at "
            f"{ref.height}x{ref.width}; export the candidate at {ref.height}x{ref.width} or with --dynamic"
        )
    return spec
