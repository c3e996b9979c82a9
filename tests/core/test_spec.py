"""ModelSpec: round trips through JSON and ONNX metadata, and the messages users see."""
from __future__ import annotations

import json

import pytest

from edgedepth.errors import SpecError
from edgedepth.spec import MAX_INPUT_SIDE, ONNX_METADATA_KEY, ModelSpec, check_input_size


def custom_spec() -> ModelSpec:
    return ModelSpec(
        height=192, width=640, min_depth=0.5, max_depth=80.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        color_order="BGR", arch_options={"decoder_channels": [256, 128, 64, 32, 16]}, dynamic=True,
        config_hash="abc123", provenance={"checkpoint_sha256": "00ff"},
    )


def test_json_round_trip_keeps_every_field():
    spec = custom_spec()
    text = spec.to_json()
    assert json.loads(text)["mean"] == [0.5, 0.5, 0.5]  # plain JSON, readable by other tools
    assert ModelSpec.from_json(text) == spec


def test_metadata_props_round_trip():
    spec = custom_spec()
    props = spec.to_metadata_props()
    assert list(props) == [ONNX_METADATA_KEY] and all(isinstance(v, str) for v in props.values())
    assert ModelSpec.from_metadata_props(props) == spec


def test_missing_metadata_says_how_to_fix():
    with pytest.raises(SpecError, match="depth-export onnx"):
        ModelSpec.from_metadata_props({"producer": "someone"}, source="model.onnx")


def test_unknown_keys_are_refused_by_name():
    data = custom_spec().to_dict()
    data["future_field"] = 1
    with pytest.raises(SpecError, match="future_field"):
        ModelSpec.from_dict(data)


def test_missing_size_and_bad_json_are_spec_errors():
    with pytest.raises(SpecError, match="height"):
        ModelSpec.from_dict({"width": 64})
    with pytest.raises(SpecError, match="not valid JSON"):
        ModelSpec.from_json("{not json")
    with pytest.raises(SpecError, match="object"):
        ModelSpec.from_json("[1, 2]")


@pytest.mark.parametrize("value, below, above", [(100, 96, 128), (200, 192, 224), (10, 32, 32)])
def test_size_not_multiple_of_32_names_nearest_sizes(value, below, above):
    with pytest.raises(SpecError, match=f"height {value} .*use {below} or {above}"):
        ModelSpec(height=value, width=320)
    with pytest.raises(SpecError, match=f"width {value} "):
        check_input_size(224, value)


def test_valid_sizes_pass():
    check_input_size(480, 640)
    assert ModelSpec(height=480, width=640).input_shape == (1, 3, 480, 640)


@pytest.mark.parametrize("min_depth, max_depth", [(0.0, 10.0), (5.0, 5.0), (10.0, 1.0), (-1.0, 10.0)])
def test_bad_depth_range_is_refused(min_depth, max_depth):
    with pytest.raises(SpecError, match="0 < min_depth < max_depth"):
        ModelSpec(height=64, width=64, min_depth=min_depth, max_depth=max_depth)


def test_other_invalid_fields_are_refused():
    with pytest.raises(SpecError, match="color_order"):
        ModelSpec(height=64, width=64, color_order="YUV")
    with pytest.raises(SpecError, match="std"):
        ModelSpec(height=64, width=64, std=(0.2, 0.0, 0.2))
    with pytest.raises(SpecError, match="NCHW"):
        ModelSpec(height=64, width=64, layout="NHWC")


def test_replace_validates_the_copy():
    spec = custom_spec()
    assert spec.replace(height=256).height == 256 and spec.height == 192
    with pytest.raises(SpecError):
        spec.replace(width=650)


@pytest.mark.parametrize("change", [
    {"height": 96}, {"width": 128}, {"mean": (0.5, 0.5, 0.5)}, {"std": (0.5, 0.5, 0.5)}, {"color_order": "BGR"},
])
def test_preprocessing_key_changes_with_every_preprocessing_field(change):
    spec = ModelSpec(height=64, width=96)
    assert spec.preprocessing_key() == ModelSpec(height=64, width=96).preprocessing_key()
    assert spec.replace(**change).preprocessing_key() != spec.preprocessing_key()


def test_preprocessing_key_ignores_what_the_preprocessing_does_not_use_and_stays_stable():
    spec = ModelSpec(height=64, width=96)
    other = spec.replace(max_depth=80.0, architecture="resnet50", provenance={"precision": "fp16"})
    assert other.preprocessing_key() == spec.preprocessing_key()
    # Saved calibration sets and TensorRT calibration caches store this value: it must not drift.
    assert spec.preprocessing_key() == "689b3104739f5d44"


@pytest.mark.parametrize("height, width", [(38400, 51200), (8224, 64), (64, 16384)])
def test_absurd_sizes_are_refused_in_one_line(height, width):
    """D15: a checkpoint whose spec says 38400 x 51200 made numpy raise MemoryError deep in the
    export; the spec itself refuses sizes beyond MAX_INPUT_SIDE, naming the limit."""
    with pytest.raises(SpecError, match=f"at most {MAX_INPUT_SIDE}") as caught:
        ModelSpec(height=height, width=width)
    assert "\n" not in str(caught.value)
    ModelSpec(height=MAX_INPUT_SIDE, width=MAX_INPUT_SIDE)  # the limit itself is allowed


@pytest.mark.parametrize("data", ["hello", ["height", "width"], 42, None])
def test_a_spec_that_is_not_a_mapping_says_it_must_be_an_object(data):
    """D16: spec="hello" was reported as "unknown keys ['e', 'h', 'l', 'o']"."""
    with pytest.raises(SpecError, match="must be a JSON object") as caught:
        ModelSpec.from_dict(data)
    assert "unknown keys" not in str(caught.value)


@pytest.mark.parametrize("field, value", [
    ("height", "64"), ("width", 96.5), ("min_depth", "near"), ("max_depth", None), ("mean", "abc"), ("std", 3),
    ("mean", [0.5, 0.5]), ("arch_options", "x"), ("provenance", [1]), ("dynamic", "yes"),
])
def test_wrongly_typed_fields_are_spec_errors_naming_the_field(field, value):
    data = ModelSpec(height=64, width=96).to_dict()
    data[field] = value
    with pytest.raises(SpecError, match=field) as caught:
        ModelSpec.from_dict(data)
    assert "\n" not in str(caught.value)


def test_check_graph_input_takes_symbolic_dimensions_and_refuses_other_sizes():
    spec = ModelSpec(height=64, width=96)
    spec.check_graph_input([1, 3, 64, 96], "m.onnx")
    spec.check_graph_input(["batch", 3, "height", "width"], "m.onnx")
    for shape in ([1, 3, 480, 640], [1, 1, 64, 96], [3, 64, 96]):
        with pytest.raises(SpecError, match=r"m.onnx: its model spec says 1x3x64x96 \(NCHW\)"):
            spec.check_graph_input(shape, "m.onnx")
