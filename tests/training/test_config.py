"""Config loading: shipped configs, _base_ chains, overrides, validation messages."""
import pytest

pytest.importorskip("torch", reason="needs torch (the train extra): edgedepth.training imports it")

from omegaconf.errors import ReadonlyConfigError

from edgedepth.errors import ConfigError
from edgedepth.training.config import (
    config_hash,
    config_to_dict,
    load_config,
    save_config,
    shipped_config_names,
    spec_from_config,
)

STUDY_WEIGHTS = {
    "baseline": (0.5, 0.5, 0.0),
    "grad_a": (0.4, 0.4, 0.2),
    "grad_b": (0.35, 0.35, 0.3),
    "grad_c": (0.5, 0.5, 0.1),
    "ssi_only": (1.0, 0.0, 0.0),
    "silog_only": (0.0, 1.0, 0.0),
    "ssi_silog": (0.5, 0.5, 0.0),
    "ssi_silog_grad": (0.4, 0.4, 0.2),
}


@pytest.mark.parametrize("name,weights", sorted(STUDY_WEIGHTS.items()))
def test_study_configs_carry_their_loss_weights(name, weights):
    cfg = load_config(name)
    assert (cfg.loss.ssi_weight, cfg.loss.silog_weight, cfg.loss.gradient_weight) == weights
    assert cfg.name == name


def test_every_shipped_config_loads():
    names = shipped_config_names()
    assert set(STUDY_WEIGHTS) <= set(names)
    for name in names:
        load_config(name)


def test_overrides_apply_on_top_of_file():
    cfg = load_config("grad_a", ["train.steps=7", "model.rezero=true", "data.height=64", "loss.gradient_scales=[1,2]"])
    assert cfg.train.steps == 7 and cfg.model.rezero is True and cfg.data.height == 64
    assert list(cfg.loss.gradient_scales) == [1, 2]
    assert cfg.loss.gradient_weight == 0.2


def test_base_chain_is_followed(tmp_path):
    (tmp_path / "parent.yaml").write_text("_base_: grad_b\ntrain: {steps: 11}\n")
    (tmp_path / "child.yaml").write_text("_base_: parent.yaml\ntrain: {batch_size: 3}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.train.steps, cfg.train.batch_size, cfg.loss.gradient_weight) == (11, 3, 0.3)


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'train.steps'"):
        load_config(None, ["train.stpes=5"])


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("loss: {gradient_wieght: 0.3}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*loss.gradient_weight"):
        load_config(path)


def test_a_config_that_is_not_yaml_says_where_in_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  steps: 10\n lr: [0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "line 3, column" in message and "\n" not in message and "^" not in message


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.activation=relu", "choose one of elu, gelu"),
        ("train.steps=0", r"expected a value in \[1, inf\]"),
        ("data.height=100", "use 96 or 128"),
        ("train.steps=abc", "wrong type"),
        ("data.min_depth=20", "below data.max_depth"),
    ],
)
def test_bad_values_name_the_allowed_range(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_all_zero_loss_weights_are_refused():
    with pytest.raises(ConfigError, match="at least one"):
        load_config(None, ["loss.ssi_weight=0", "loss.silog_weight=0"])


def test_missing_config_lists_shipped_names():
    with pytest.raises(ConfigError, match="grad_a"):
        load_config("no_such_config")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("grad_c", ["train.steps=9"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    assert config_to_dict(load_config(None, base=config_to_dict(cfg))) == config_to_dict(cfg)


def test_config_is_read_only():
    cfg = load_config()
    with pytest.raises(ReadonlyConfigError):
        cfg.train.steps = 3


def test_hash_ignores_output_dir_but_not_weights():
    a = load_config(None, ["train.output_dir=/tmp/a"])
    b = load_config(None, ["train.output_dir=/tmp/b"])
    c = load_config(None, ["loss.gradient_weight=0.2"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_spec_from_config_carries_size_range_and_architecture():
    cfg = load_config(None, ["data.height=64", "data.width=96", "data.max_depth=80", "model.attention=spatial"])
    spec = spec_from_config(cfg)
    assert (spec.height, spec.width, spec.max_depth) == (64, 96, 80.0)
    assert spec.arch_options["attention"] == "spatial"
    assert spec.config_hash == config_hash(cfg)
