"""Engine input shapes: parsing NxCxHxW and the profile a static or dynamic ONNX builds with."""
from __future__ import annotations

import pytest

from edgedepth.errors import ExportError
from edgedepth.export.profiles import parse_shape, resolve_profile
from edgedepth.spec import ModelSpec

SPEC = ModelSpec(256, 320)
DYNAMIC = ("batch", 3, "height", "width")
STATIC = (1, 3, 256, 320)


@pytest.mark.parametrize("text", ["1x3x256x320", "1,3,256,320", " 1X3X256X320 "])
def test_shapes_parse_in_the_usual_spellings(text):
    assert parse_shape(text) == (1, 3, 256, 320)


@pytest.mark.parametrize("text", ["1x3x256", "1x3x256xW", "0x3x256x320", ""])
def test_malformed_shapes_are_refused(text):
    with pytest.raises(ExportError):
        parse_shape(text)


def test_static_onnx_needs_no_profile_and_rejects_other_shapes():
    assert resolve_profile("input", STATIC, SPEC) is None
    assert resolve_profile("input", STATIC, SPEC, opt_shape=STATIC) is None
    with pytest.raises(ExportError, match="ONNX fixes it at 256.*--dynamic"):
        resolve_profile("input", STATIC, SPEC, max_shape=(1, 3, 512, 320))


def test_dynamic_onnx_defaults_to_the_nominal_size_only():
    profile = resolve_profile("input", DYNAMIC, SPEC)
    assert profile.min == profile.opt == profile.max == (1, 3, 256, 320)


def test_dynamic_profile_fills_missing_bounds_from_opt():
    profile = resolve_profile("input", DYNAMIC, SPEC, max_shape=(4, 3, 512, 640))
    assert (profile.min, profile.opt, profile.max) == ((1, 3, 256, 320), (1, 3, 256, 320), (4, 3, 512, 640))
    assert profile.to_dict() == {"min": [1, 3, 256, 320], "opt": [1, 3, 256, 320], "max": [4, 3, 512, 640]}


def test_profile_bounds_must_be_ordered():
    with pytest.raises(ExportError, match="min .* <= opt .* <= max"):
        resolve_profile("input", DYNAMIC, SPEC, min_shape=(1, 3, 512, 320), opt_shape=(1, 3, 256, 320))


def test_profile_sizes_must_be_multiples_of_32_with_three_channels():
    with pytest.raises(ExportError, match="height 250 is not a multiple of 32"):
        resolve_profile("input", DYNAMIC, SPEC, max_shape=(1, 3, 250, 320))
    with pytest.raises(ExportError, match="4 channels"):
        resolve_profile("input", DYNAMIC, SPEC, opt_shape=(1, 4, 256, 320))
