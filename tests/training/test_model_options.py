"""Model builders take resolved options: defaults come from ModelConfig, old checkpoints still load."""
import inspect

import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.errors import ConfigError
from edgedepth.spec import ModelSpec
from edgedepth.training import load_checkpoint, save_checkpoint
from edgedepth.training.config import ModelConfig, arch_options, load_config, spec_from_config
from edgedepth.training.model import DepthNet, create_model
from edgedepth.training.model.decoder import DecoderBlock, DepthDecoder
from edgedepth.training.model.registry import resolve_arch_options
from edgedepth.training.model.resnet import build_resnet_encoder


def test_depthnet_from_a_default_model_config_is_what_depth_train_builds():
    cfg = load_config()
    spec = spec_from_config(cfg)
    torch.manual_seed(0)
    trained = create_model(spec, pretrained=cfg.model.pretrained)  # as Trainer builds it
    defaults = ModelConfig()
    torch.manual_seed(0)
    direct = DepthNet(spec, build_resnet_encoder(defaults.architecture), **arch_options(defaults))
    assert spec.arch_options == arch_options(defaults) == resolve_arch_options({})
    assert repr(direct) == repr(trained)
    trained_state = trained.state_dict()
    assert all(torch.equal(value, trained_state[name]) for name, value in direct.state_dict().items())


@pytest.mark.parametrize("builder", [DepthNet.__init__, DepthDecoder.__init__, DecoderBlock.__init__])
def test_builders_hold_no_option_defaults(builder):
    parameters = inspect.signature(builder).parameters
    for name in arch_options(ModelConfig()):
        if name in parameters:
            assert parameters[name].default is inspect.Parameter.empty, f"{builder.__qualname__}({name}=...)"


def test_builders_refuse_a_missing_option():
    with pytest.raises(TypeError, match="rezero"):
        DepthNet(ModelSpec(height=64, width=64), build_resnet_encoder("resnet18"),
                 activation="elu", attention="none", decoder_channels=[8] * 5)  # fmt: skip


def test_checkpoint_written_before_an_option_existed_loads_with_its_default(tmp_path):
    # A spec that only knows `activation`: the other options did not exist when it was written.
    old_spec = ModelSpec(height=64, width=64, arch_options={"activation": "gelu"})
    torch.manual_seed(0)
    model = create_model(old_spec)
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, old_spec)
    loaded, spec = load_checkpoint(path)
    assert spec.arch_options == {"activation": "gelu"}
    defaults = ModelConfig()
    widths = [block.reduce[0].out_channels for block in loaded.decoder.blocks]
    assert widths == defaults.decoder_channels
    assert isinstance(loaded.decoder.blocks[0].attention, torch.nn.Identity) and defaults.attention == "none"
    state = loaded.state_dict()
    assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items())


def test_unknown_arch_option_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown arch option keys \['rezro'\] \(did you mean 'rezero'\?\)"):
        resolve_arch_options({"rezro": True})
