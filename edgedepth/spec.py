"""ModelSpec: the one description of a model that every stage reads.

Training writes it into the checkpoint, export into the ONNX ``metadata_props`` and the engine
sidecar JSON; calibration, the runtime and parity read it back from there. No stage re-types
the input size, normalisation or depth range.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from edgedepth.camera import PinholeIntrinsics, is_number
from edgedepth.errors import SpecError

#: Key under which the spec is stored in ONNX ``metadata_props`` (value: JSON of ``to_dict``).
ONNX_METADATA_KEY = "edgedepth.model_spec"
#: Every network edgedepth builds downsamples by 32 (ResNet stem + 4 stages).
SIZE_MULTIPLE = 32
#: Largest input side a spec may name: 8192 x 8192 is already 805 MB per float32 image; larger
#: sizes come from a corrupt or hand-edited file and would only fail later, deep in numpy.
MAX_INPUT_SIDE = 8192
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: What a model's output can be: ``metric`` = metres, right for the training camera (``intrinsics``).
DEPTH_KINDS = ("metric",)
#: Bump when the preprocessing changes what a given spec produces: it is part of every preprocessing key.
PREPROCESS_KEY_VERSION = 1


def nearest_valid_sizes(value: int, multiple: int = SIZE_MULTIPLE) -> Tuple[int, int]:
    """The multiples of ``multiple`` just below and just above ``value`` (below is >= multiple)."""
    below = max(multiple, (value // multiple) * multiple)
    above = max(multiple, int(math.ceil(value / multiple)) * multiple)
    return below, above


def check_input_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> None:
    """Raise SpecError unless height and width are positive multiples of ``multiple``, at most
    :data:`MAX_INPUT_SIDE`."""
    check_input_side("height", height, multiple)
    check_input_side("width", width, multiple)


def check_input_side(name: str, value: int, multiple: int = SIZE_MULTIPLE) -> None:
    """Raise SpecError unless ``value`` (the input ``name``: height or width) is a positive multiple
    of ``multiple``, at most :data:`MAX_INPUT_SIDE`."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value % multiple:
        below, above = nearest_valid_sizes(int(value) if isinstance(value, (int, float)) else 0, multiple)
        raise SpecError(
            f"input {name} {value!r} is not a multiple of {multiple}: the encoder downsamples by "
            f"{multiple}; use {below} or {above}"
        )
    if value > MAX_INPUT_SIDE:
        raise SpecError(
            f"input {name} {value} is beyond the limit: edgedepth models take at most {MAX_INPUT_SIDE} pixels "
            "per side; the file naming this size is corrupt or hand-edited: re-export it, or give a smaller size"
        )


#: Text fields; mappings; numbers (checked before any value is used, so a hand-edited file gets
#: one line naming the field instead of a TypeError deep inside a stage).
_TEXT_FIELDS = ("color_order", "input_name", "output_name", "layout", "output_unit", "architecture", "config_hash",
                "edgedepth_version", "depth_kind")
_MAPPING_FIELDS = ("arch_options", "provenance")


def _wrong_field(spec: Any) -> Optional[Tuple[str, str]]:
    """``(field, what it should be)`` for the first field of the wrong type, else None."""
    for name in ("min_depth", "max_depth"):
        if not is_number(getattr(spec, name)):
            return name, "a number"
    for name in ("mean", "std"):
        value = getattr(spec, name)
        values = [] if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable) else list(value)
        if len(values) != 3 or not all(is_number(v) for v in values):
            return name, "a list of 3 numbers"
    wrong = [(name, "a string") for name in _TEXT_FIELDS if not isinstance(getattr(spec, name), str)]
    wrong += [(name, "a JSON object") for name in _MAPPING_FIELDS if not isinstance(getattr(spec, name), Mapping)]
    if not isinstance(spec.dynamic, bool):
        wrong.append(("dynamic", "true or false"))
    return wrong[0] if wrong else None


def _check_field_types(spec: Any) -> None:
    wrong = _wrong_field(spec)
    if wrong:
        name, expected = wrong
        value = getattr(spec, name)
        raise SpecError(
            f"model spec field {name} is {value!r:.60} ({type(value).__name__}), expected {expected}; "
            "the file carrying the spec is corrupt or hand-edited: re-export it"
        )


@dataclass
class ModelSpec:
    """Everything a stage needs to feed a depth model and read its output.

    Input is ``layout`` (NCHW) float32, ``(pixel/255 - mean) / std`` in ``color_order``; output
    ``output_name`` is ``N x 1 x H x W`` depth in ``output_unit`` (metres) in
    ``(0, max_depth)``; values below ``min_depth`` are outside the trained range.

    ``intrinsics`` is the camera the network was trained with, at ``height`` x ``width`` (the
    input size; :meth:`replace` rescales it with the size): metric depth is right for that focal
    length, and depth-run rescales it for another camera's (``--intrinsics``). None for artifacts
    trained without a known camera or written before it was recorded.
    """

    height: int
    width: int
    min_depth: float = 0.1
    max_depth: float = 10.0
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    color_order: str = "RGB"
    input_name: str = "input"
    output_name: str = "depth"
    layout: str = "NCHW"
    output_unit: str = "m"
    architecture: str = "resnet18"
    arch_options: Dict[str, Any] = field(default_factory=dict)
    #: True when the artifact accepts any batch and any multiple-of-32 height/width;
    #: height/width are then the nominal (optimisation) size.
    dynamic: bool = False
    config_hash: str = ""
    edgedepth_version: str = ""
    #: Where the artifact came from (checkpoint sha256, source ONNX sha256, ...), filled by export.
    provenance: Dict[str, Any] = field(default_factory=dict)
    #: The training camera at height x width; None when unknown (older artifacts, folder datasets
    #: without ``data.intrinsics``).
    intrinsics: Optional[PinholeIntrinsics] = None
    #: What the output is (:data:`DEPTH_KINDS`).
    depth_kind: str = "metric"

    def __post_init__(self) -> None:
        if not self.edgedepth_version:
            from edgedepth import __version__

            self.edgedepth_version = __version__
        _check_field_types(self)
        if self.intrinsics is not None and not isinstance(self.intrinsics, PinholeIntrinsics):
            self.intrinsics = PinholeIntrinsics.from_dict(self.intrinsics, "model spec field intrinsics")
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise SpecError naming the first inconsistent field."""
        check_input_size(self.height, self.width)
        if not all(math.isfinite(v) for v in (self.min_depth, self.max_depth, *self.mean, *self.std)):
            raise SpecError(f"depth range and mean/std must be finite numbers, got min_depth={self.min_depth}, "
                            f"max_depth={self.max_depth}, mean={self.mean}, std={self.std}; re-export the artifact")
        if not 0 < self.min_depth < self.max_depth:
            raise SpecError(
                f"depth range min_depth={self.min_depth}, max_depth={self.max_depth} is invalid: "
                "expected 0 < min_depth < max_depth (metres)"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise SpecError(f"mean/std must be 3 values each with std > 0, got mean={self.mean} std={self.std}")
        if self.color_order not in ("RGB", "BGR"):
            raise SpecError(f"color_order {self.color_order!r} is not supported: use 'RGB' or 'BGR'")
        if self.layout != "NCHW":
            raise SpecError(f"layout {self.layout!r} is not supported: edgedepth models take 'NCHW'")
        if self.depth_kind not in DEPTH_KINDS:
            raise SpecError(f"depth_kind {self.depth_kind!r} is not supported: edgedepth models output "
                            f"{' or '.join(DEPTH_KINDS)} depth; the artifact was written by another tool")
        if self.intrinsics is not None and self.intrinsics.size != (self.width, self.height):
            raise SpecError(f"model spec intrinsics are for {self.intrinsics.width}x{self.intrinsics.height} but the "
                            f"input is {self.width}x{self.height}; the spec was hand-edited: re-export it")

    @property
    def input_shape(self) -> Tuple[int, int, int, int]:
        """Nominal input shape (1, 3, H, W)."""
        return (1, 3, self.height, self.width)

    def check_graph_input(self, shape: Sequence[Any], source: str) -> None:
        """Raise SpecError unless a graph input of ``shape`` takes this spec's input: N x 3 x H x W
        with every static (int) dimension equal to the spec's; symbolic ones take anything. A spec
        edited or copied from another export would otherwise fail deep inside ONNX Runtime or
        TensorRT. ``source`` names the file in the message."""
        expected = self.input_shape[1:]  # (3, H, W)
        if len(shape) == 4 and all(not isinstance(dim, int) or dim == want for dim, want in zip(shape[1:], expected)):
            return
        raise SpecError(
            f"{source}: its model spec says 1x3x{self.height}x{self.width} (NCHW) but the graph input "
            f"{self.input_name!r} is {'x'.join(str(dim) for dim in shape)}; the spec was edited or belongs to another "
            "model: re-export it with `depth-export onnx`"
        )

    def preprocessing_fields(self) -> Dict[str, Any]:
        """The fields that decide what the preprocessing produces, with the key's version."""
        return {
            "height": self.height,
            "width": self.width,
            "mean": list(self.mean),
            "std": list(self.std),
            "color_order": self.color_order,
            "layout": self.layout,
            "version": PREPROCESS_KEY_VERSION,
        }

    def preprocessing_key(self) -> str:
        """Short hash of :meth:`preprocessing_fields`: equal keys mean an image becomes the same network input.

        Saved calibration sets and TensorRT calibration caches store it, so its value must stay stable.
        """
        text = json.dumps(self.preprocessing_fields(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with ``changes`` applied (validated). A new height/width rescales ``intrinsics``
        (the camera as the network sees it at the new input size) unless ``changes`` names them."""
        width, height = changes.get("width", self.width), changes.get("height", self.height)
        resized = (width, height) != (self.width, self.height)
        sizes_usable = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height))
        if resized and sizes_usable and self.intrinsics is not None and "intrinsics" not in changes:
            changes["intrinsics"] = self.intrinsics.scaled_to(width, height)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["intrinsics"] = self.intrinsics.to_dict() if self.intrinsics is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        """Build from ``to_dict`` output; unknown keys are refused with their names."""
        if not isinstance(data, Mapping):
            raise SpecError(
                f"model spec must be a JSON object (field -> value), got {type(data).__name__} {data!r:.60}; "
                "the file carrying it is corrupt or was not written by edgedepth: re-export it"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(
                f"model spec has unknown keys {unknown}: it was written by a newer or different tool; "
                f"expected only {sorted(known)}"
            )
        missing = [name for name in ("height", "width") if name not in data]
        if missing:
            raise SpecError(f"model spec lacks required keys {missing}; got keys {sorted(data)}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"model spec is not valid JSON ({exc}); re-export the artifact") from exc
        return cls.from_dict(data)

    def to_metadata_props(self) -> Dict[str, str]:
        """Key/value strings for ONNX ``metadata_props``."""
        return {ONNX_METADATA_KEY: self.to_json()}

    @classmethod
    def from_metadata_props(cls, props: Mapping[str, str], source: str = "ONNX model") -> "ModelSpec":
        """Read the spec back from ONNX ``metadata_props`` (as a plain mapping)."""
        if ONNX_METADATA_KEY not in props:
            raise SpecError(
                f"{source} carries no edgedepth model spec (metadata key {ONNX_METADATA_KEY!r} missing; "
                f"found {sorted(props)}): export it with `depth-export onnx`"
            )
        return cls.from_json(props[ONNX_METADATA_KEY])
