"""Engine input shapes: ``NxCxHxW`` parsing and the optimisation profile of a dynamic ONNX.

A static ONNX builds at its own shape (no profile; a given shape must equal it). A dynamic ONNX
gets one profile: ``opt`` defaults to batch 1 at the spec's nominal size, ``min``/``max`` default
to ``opt``, so an engine never accepts more than was asked for. Height and width must be
multiples of 32 (the encoder downsamples by 32) and ``min <= opt <= max`` in every dimension.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from edgedepth.errors import ExportError
from edgedepth.spec import SIZE_MULTIPLE, ModelSpec

Shape = Tuple[int, int, int, int]
Dim = Union[int, str]


def parse_shape(text: str) -> Shape:
    """``"1x3x256x320"`` (or ``1,3,256,320``) -> ``(1, 3, 256, 320)``."""
    parts = [part for part in re.split(r"[x,X*]", text.strip()) if part]
    if len(parts) != 4 or not all(part.isdigit() for part in parts):
        raise ExportError(f"shape {text!r} is not NxCxHxW: write four positive integers like 1x3x256x320")
    shape = tuple(int(part) for part in parts)
    if min(shape) <= 0:
        raise ExportError(f"shape {text!r} has a zero dimension: every dimension must be at least 1")
    return shape  # type: ignore[return-value]


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(dim)) for dim in shape)


@dataclass(frozen=True)
class ShapeProfile:
    """One TensorRT optimisation profile for the single input tensor."""

    input_name: str
    min: Shape
    opt: Shape
    max: Shape

    def to_dict(self) -> Dict[str, List[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def _check_against_onnx(label: str, shape: Shape, onnx_shape: Sequence[Dim]) -> None:
    if len(onnx_shape) != 4:
        raise ExportError(f"the ONNX input has {len(onnx_shape)} dimensions; edgedepth engines take NxCxHxW")
    if shape[1] != 3:
        raise ExportError(f"--{label}-shape {format_shape(shape)} has {shape[1]} channels; the network takes 3")
    for axis, (given, fixed) in enumerate(zip(shape, onnx_shape)):
        if isinstance(fixed, int) and fixed > 0 and given != fixed:
            raise ExportError(
                f"--{label}-shape {format_shape(shape)} sets dimension {axis} to {given}, but the ONNX fixes it at "
                f"{fixed}; use {fixed} there, or export with --dynamic"
            )
    for axis in (2, 3):
        if shape[axis] % SIZE_MULTIPLE:
            raise ExportError(
                f"--{label}-shape {format_shape(shape)}: {'height' if axis == 2 else 'width'} {shape[axis]} is not a "
                f"multiple of {SIZE_MULTIPLE} (the encoder downsamples by {SIZE_MULTIPLE})"
            )


def _check_order(profile: ShapeProfile) -> None:
    for axis in range(4):
        if not profile.min[axis] <= profile.opt[axis] <= profile.max[axis]:
            raise ExportError(
                f"shape profile min {format_shape(profile.min)} <= opt {format_shape(profile.opt)} <= max "
                f"{format_shape(profile.max)} does not hold in dimension {axis}; order them so"
            )


def _default_opt(onnx_shape: Sequence[Dim], spec: ModelSpec) -> Shape:
    nominal = (1, 3, spec.height, spec.width)
    return tuple(fixed if isinstance(fixed, int) and fixed > 0 else nominal[i] for i, fixed in enumerate(onnx_shape))  # type: ignore[return-value]


def resolve_profile(
    input_name: str,
    onnx_shape: Sequence[Dim],
    spec: ModelSpec,
    min_shape: Optional[Shape] = None,
    opt_shape: Optional[Shape] = None,
    max_shape: Optional[Shape] = None,
) -> Optional[ShapeProfile]:
    """The profile to build with, or None for a static ONNX (shapes checked against it)."""
    given = {"min": min_shape, "opt": opt_shape, "max": max_shape}
    for label, shape in given.items():
        if shape is not None:
            _check_against_onnx(label, shape, onnx_shape)
    if all(isinstance(dim, int) and dim > 0 for dim in onnx_shape):
        return None
    opt = opt_shape or _default_opt(onnx_shape, spec)
    _check_against_onnx("opt", opt, onnx_shape)
    profile = ShapeProfile(input_name, min_shape or opt, opt, max_shape or opt)
    _check_order(profile)
    return profile
