"""The config's one place: field metadata -> choices, ranges, known keys, defaults, docs, loss checks."""
import dataclasses
import math
import re
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch", reason="needs torch (the train extra): edgedepth.training imports it")
from omegaconf import OmegaConf

from edgedepth.errors import ConfigError
from edgedepth.training import config as C
from edgedepth.training.config import CHOICES, FIELDS, RANGES, check_value, config_to_dict, load_config
from edgedepth.training.losses import DepthLoss, MultiScaleGradientLoss, SiLogLoss, SSILoss

REPO = Path(__file__).resolve().parents[2]
LEAVES = {key: fld for key, fld in FIELDS.items() if "section" not in fld.metadata}


def _nested(dotted: str, value):
    """``"a.b.c", v`` -> ``{"a": {"b": {"c": v}}}`` (a base layer: no YAML parsing of the value)."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _default(key: str):
    fld = FIELDS[key]
    return fld.default_factory() if fld.default_factory is not dataclasses.MISSING else fld.default


def _step(key: str, bound: float) -> float:
    """Just past ``bound`` for the key's type: 1 for an integer key, a relative step for a float."""
    return 1 if isinstance(_default(key), int) else (abs(bound) / 2 or 0.5)


def _bounds(low, high) -> str:
    return re.escape(f"expected a value in [{low}, {'inf' if high is None else high}]")


def test_every_key_has_a_default_and_a_reason_beside_it():
    for key, fld in LEAVES.items():
        assert fld.default is not dataclasses.MISSING or fld.default_factory is not dataclasses.MISSING, key
        assert fld.metadata["help"].strip() and "\n" not in fld.metadata["help"], key
    assert set(C.KNOWN_KEYS) == set(FIELDS) and "data.augment.scale_min" in C.KNOWN_KEYS


def test_tables_are_derived_from_the_fields():
    assert CHOICES == {k: f.metadata["choices"] for k, f in LEAVES.items() if f.metadata["choices"]}
    assert RANGES == {k: f.metadata["range"] for k, f in LEAVES.items() if f.metadata["range"]}
    # A representative of each table, so an empty derivation cannot pass.
    assert CHOICES["loss.ssi_space"] == ("depth", "disparity") and RANGES["train.steps"] == (1, None)
    assert C.LOSS_KEYS == tuple(f.name for f in dataclasses.fields(C.LossConfig))


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_every_choice_key_refuses_other_values_listing_the_allowed_ones(key):
    allowed = re.escape(", ".join(map(str, CHOICES[key])))
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)} is 'bogus'.*choose one of {allowed}$") as info:
        load_config(None, [f"{key}=bogus"])
    assert "\n" not in str(info.value)
    for value in CHOICES[key]:
        check_value(key, value)


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_range_is_enforced_at_both_ends(key):
    low, high = RANGES[key]
    for inside in [v for v in (low, high) if v is not None]:
        check_value(key, inside)
    if low is not None:
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)} is .*{_bounds(low, high)}"):
            load_config(None, base=_nested(key, low - _step(key, low)))
    if high is not None:
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)} is .*{_bounds(low, high)}"):
            load_config(None, base=_nested(key, high + _step(key, high)))


@pytest.mark.parametrize("key", sorted(k for k in RANGES if isinstance(_default(k), float)))
def test_nan_and_inf_are_never_in_range(key):
    for value in (math.nan, math.inf):
        with pytest.raises(ConfigError, match=re.escape(key)):
            check_value(key, value)


def test_docs_config_reference_is_generated_from_the_metadata():
    page = (REPO / "docs" / "CONFIG.md").read_text()
    assert page == C.config_reference(), "docs/CONFIG.md is stale: regenerate it (command at its top)"
    for key, fld in LEAVES.items():
        assert f"| `{key}` |" in page and fld.metadata["help"] in page


def test_base_yaml_lists_every_key_with_its_default():
    base = yaml.safe_load((REPO / "configs" / "base.yaml").read_text())
    defaults = config_to_dict(OmegaConf.structured(C.Config))
    for meta in ("name", "description"):
        base.pop(meta), defaults.pop(meta)
    assert base == defaults


def test_choice_tables_agree_with_their_implementations():
    from edgedepth.training.data.factory import DATASET_NAMES
    from edgedepth.training.model.blocks import ACTIVATIONS, ATTENTIONS

    assert tuple(ACTIVATIONS) == CHOICES["model.activation"]
    assert ATTENTIONS == CHOICES["model.attention"]
    assert DATASET_NAMES == CHOICES["data.dataset"]


# ----------------------------------------------------------------------------- losses use the same place


def _config_error(overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    return str(info.value)


@pytest.mark.parametrize(
    "key,value",
    [("ssi_standardize", "median"), ("ssi_space", "log"), ("gradient_space", "disparity"),
     ("ssi_weight", -0.1), ("silog_lambda", 1.5), ("silog_scale", 0.0)],
)  # fmt: skip
def test_depth_loss_refuses_a_value_with_the_configs_own_message(key, value):
    with pytest.raises(ConfigError) as info:
        DepthLoss(**{key: value})
    assert str(info.value) == _config_error([f"loss.{key}={value}"])


def test_all_zero_weights_and_bad_scales_get_the_configs_message():
    zero = {key: 0.0 for key in C.LOSS_WEIGHT_KEYS}
    with pytest.raises(ConfigError) as info:
        DepthLoss(**zero)
    assert str(info.value) == _config_error([f"loss.{key}=0" for key in zero])
    with pytest.raises(ConfigError) as info:
        DepthLoss(gradient_scales=[2, 2])
    assert str(info.value) == _config_error(["loss.gradient_scales=[2,2]"])


def test_loss_defaults_come_from_loss_config():
    defaults = C.LossConfig()
    weights = {"ssi": defaults.ssi_weight, "silog": defaults.silog_weight, "grad": defaults.gradient_weight}
    assert DepthLoss().weights == weights
    ssi, silog, grad = SSILoss(), SiLogLoss(), MultiScaleGradientLoss()
    assert (ssi.standardize, ssi.space) == (defaults.ssi_standardize, defaults.ssi_space)
    assert (silog.lambd, silog.scale) == (defaults.silog_lambda, defaults.silog_scale)
    assert (list(grad.scales), grad.space) == (defaults.gradient_scales, defaults.gradient_space)
    with pytest.raises(ConfigError, match=r"unknown loss keys \['silog_lamda'\] \(did you mean 'silog_lambda'\?\)"):
        DepthLoss(silog_lamda=0.5)
