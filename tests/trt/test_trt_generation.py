"""The generation probe and target versions, against recorded facts of every TensorRT generation."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgedepth.errors import DeviceError
from edgedepth.trt.generation import TrtTarget, detect_generation, network_flags, parse_target, parse_version, probe_api
from edgedepth.trt.network import network_flag_names

from trt_facts import (
    BUILDER_FLAGS,
    GENERATIONS,
    HARDWARE_LEVELS,
    NETWORK_FLAGS,
    VERSIONS,
    fake_tensorrt,
    fake_tensorrt_84,
)

HEADERS = Path(__file__).resolve().parents[3] / "shared" / "third_party" / "tensorrt-headers"


@pytest.mark.parametrize("text, expected", [
    ("8.5.2.2", (8, 5)), ("8.6.1", (8, 6)), ("10.3.0", (10, 3)), ("11.4.0.106", (11, 4)),
])
def test_version_strings_of_every_packaging_parse(text, expected):
    assert parse_version(text) == expected


def test_unreadable_version_is_refused():
    with pytest.raises(DeviceError, match="cannot read a TensorRT version"):
        parse_version("unknown")


@pytest.mark.parametrize("key", sorted(VERSIONS))
def test_generation_comes_from_feature_probes(key):
    assert detect_generation(fake_tensorrt(key)) == GENERATIONS[key]


def test_a_version_string_that_disagrees_does_not_fool_the_probes():
    liar = fake_tensorrt("11.1")
    liar.__version__ = "10.0.0"
    assert detect_generation(liar) == "11"


def test_tensorrt_older_than_8_5_is_refused():
    with pytest.raises(DeviceError, match="older than 8.5"):
        detect_generation(fake_tensorrt_84())


@pytest.mark.parametrize("key, needed", [
    ("8.5", True), ("8.6", True), ("9.0", True), ("10.3", False), ("10.16", False), ("11.1", False),
])
def test_explicit_batch_is_requested_exactly_where_implicit_batch_still_exists(key, needed):
    """9.x probes as the "10" helper, yet its parser asserts an explicit-batch network."""
    api = probe_api(fake_tensorrt(key))
    assert api.explicit_batch_flag is needed
    assert ("EXPLICIT_BATCH" in network_flag_names(api)) is needed


def test_explicit_batch_also_follows_the_major_when_the_binding_api_is_hidden():
    trt = fake_tensorrt("9.0")
    trt.IExecutionContext = type("Context", (), {"execute_async_v3": None})
    assert probe_api(trt).explicit_batch_flag


@pytest.mark.parametrize("key, strongly_typed, expected", [
    ("8.6", False, 1 << 0),
    ("9.0", True, (1 << 0) | (1 << 2)),
    ("10.3", True, 1 << 1),
    ("10.16", False, 0),
    ("11.1", True, 0),  # always strongly typed; bit 0 is STRONGLY_TYPED there, and deprecated
])
def test_network_flags_use_each_generations_own_bits(key, strongly_typed, expected):
    trt = fake_tensorrt(key)
    assert network_flags(trt, network_flag_names(probe_api(trt), strongly_typed)) == expected


def test_probes_reflect_removed_and_added_apis():
    api11, api85, api86 = (probe_api(fake_tensorrt(key)) for key in ("11.1", "8.5", "8.6"))
    flags = (api11.fp16_flag, api11.int8_flag, api11.calibrator, api11.precision_constraints)
    assert flags == (False, False, False, False)
    assert api11.progress_monitor and api11.strongly_typed_flag and api11.tf32_flag
    assert not api85.progress_monitor and not api85.optimization_level and not api85.version_compatible
    assert api86.optimization_level and api86.version_compatible and api86.hardware_levels == ("NONE", "AMPERE_PLUS")
    assert probe_api(fake_tensorrt("10.16")).hardware_levels[-1] == "SAME_COMPUTE_CAPABILITY"


@pytest.mark.parametrize("text, major, minor, generation", [
    ("8.5", 8, 5, "8"), ("8.6.1", 8, 6, "8"), ("10", 10, None, "10"), ("10.16", 10, 16, "10"),
    ("11.4.0.106", 11, 4, "11"),
])
def test_targets_parse(text, major, minor, generation):
    target = parse_target(text)
    assert (target.major, target.minor, target.generation) == (major, minor, generation)


@pytest.mark.parametrize("text", ["8.4", "7.2", "ten", "10.x", ""])
def test_unsupported_or_unreadable_targets_are_refused(text):
    with pytest.raises(DeviceError):
        parse_target(text)


def test_target_label():
    assert TrtTarget(10, 3).label == "TensorRT 10.3" and str(TrtTarget(11)) == "11"


def _header_enum(version: str, name: str) -> dict:
    text = (HEADERS / version / "include" / "NvInfer.h").read_text()
    body = re.sub(r"//.*", "", re.search(r"enum class %s\s*:\s*\w+\s*\{(.*?)\};" % name, text, re.S).group(1))
    return {key: int(value) for key, value in re.findall(r"k([A-Z0-9_]+)\s*(?:TRT_DEPRECATED_ENUM)?\s*=\s*(\d+)", body)}


@pytest.mark.skipif(not HEADERS.is_dir(), reason=f"NVIDIA's TensorRT headers are not at {HEADERS}")
@pytest.mark.parametrize("version", ["8.6", "10.3", "10.16", "11.1"])
def test_recorded_enums_match_nvidias_headers(version):
    assert NETWORK_FLAGS[version] == _header_enum(version, "NetworkDefinitionCreationFlag")
    assert BUILDER_FLAGS[version] == _header_enum(version, "BuilderFlag")
    assert HARDWARE_LEVELS[version] == _header_enum(version, "HardwareCompatibilityLevel")
