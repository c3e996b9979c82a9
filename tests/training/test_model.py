"""The depth network: shapes, range, gradients, ReZero, input checks, torchvision keys, ONNX export."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.errors import CheckpointError, ConfigError, SpecError
from edgedepth.spec import ModelSpec
from edgedepth.training.model import DepthNet, available_models, create_model, load_pretrained, register_model, registry
from edgedepth.training.model.blocks import ReZero
from edgedepth.training.model.resnet import PRETRAINED_URLS, build_resnet_encoder

FULL_OPTIONS = {"activation": "gelu", "attention": "spatial", "rezero": True}
VARIANTS = [
    ("resnet18", {}, 96, 128),
    ("resnet18", {}, 256, 320),
    ("resnet18", FULL_OPTIONS, 96, 128),
    ("resnet18", FULL_OPTIONS, 256, 320),
    ("resnet34", {}, 96, 128),
]


def make(architecture: str = "resnet18", height: int = 96, width: int = 128, **options) -> DepthNet:
    torch.manual_seed(0)
    spec = ModelSpec(height=height, width=width, max_depth=10.0, architecture=architecture, arch_options=options)
    return create_model(spec)


def rezero_branch_params(model: torch.nn.Module) -> set:
    """Names of parameters inside ReZero branches: their gradient is exactly 0 while alpha is 0."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, ReZero):
            names.update(f"{prefix}.branch.{name}" for name, _ in module.branch.named_parameters())
    return names


@pytest.mark.parametrize("architecture,options,height,width", VARIANTS)
def test_forward_backward_gives_metric_depth_and_trains_every_part(architecture, options, height, width):
    model = make(architecture, height, width, **options).train()
    depth = model(torch.randn(2 if height < 200 else 1, 3, height, width))
    assert depth.shape == (depth.shape[0], 1, height, width)
    assert float(depth.detach().min()) > 0.0 and float(depth.detach().max()) < model.max_depth
    depth.mean().backward()
    frozen_by_rezero = rezero_branch_params(model)
    starved = [
        name
        for name, p in model.named_parameters()
        if name not in frozen_by_rezero and (p.grad is None or not torch.any(p.grad != 0))
    ]
    assert starved == []
    assert model.encoder.conv1.weight.grad.abs().sum() > 0
    assert model.head.conv.weight.grad.abs().sum() > 0


def test_rezero_alphas_start_at_zero_get_gradient_and_make_branches_identity():
    model = make(**FULL_OPTIONS).eval()
    alphas = {name: p for name, p in model.named_parameters() if name.endswith(".alpha")}
    # one refinement and one attention ReZero per decoder block
    assert len(alphas) == 2 * len(model.decoder.blocks)
    assert all(float(a.detach()) == 0.0 for a in alphas.values())
    x = torch.randn(1, 3, 96, 128)
    before = model(x)
    with torch.no_grad():  # while alpha is 0 the branch weights cannot change the output
        for name in rezero_branch_params(model):
            model.get_parameter(name).normal_()
    torch.testing.assert_close(model(x), before)
    model.train()(x).mean().backward()
    assert all(a.grad is not None and float(a.grad.abs()) > 0 for a in alphas.values())


@pytest.mark.parametrize("height,width,named", [(100, 128, ("96", "128")), (96, 130, ("128", "160"))])
def test_input_not_multiple_of_32_is_refused_with_nearest_sizes(height, width, named):
    model = make().eval()
    with pytest.raises(SpecError) as err:
        model(torch.zeros(1, 3, height, width))
    assert all(size in str(err.value) for size in named)


def test_input_without_three_channels_is_refused():
    with pytest.raises(SpecError, match="N x 3 x H x W"):
        make().eval()(torch.zeros(1, 1, 96, 128))


def test_encoder_uses_torchvision_keys_and_reports_widths_and_strides():
    encoder = build_resnet_encoder("resnet18")
    keys = list(encoder.state_dict())
    sample = [
        "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
        "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.1.conv2.weight", "layer1.1.bn2.running_var",
        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "layer2.0.downsample.1.running_mean",
        "layer3.0.downsample.0.weight", "layer4.0.downsample.1.bias", "layer4.1.conv2.weight", "layer4.1.bn2.bias",
    ]  # fmt: skip
    assert [k for k in sample if k not in keys] == []
    # torchvision's resnet18 has 122 entries; 120 once fc.weight and fc.bias are dropped
    assert len(keys) == 120 and not any(k.startswith("fc.") for k in keys)
    assert "layer1.0.downsample.0.weight" not in keys  # stage 1 keeps stride and width: no downsample
    assert list(encoder.state_dict()["conv1.weight"].shape) == [64, 3, 7, 7]
    assert encoder.channels == [64, 64, 128, 256, 512]
    features = encoder(torch.zeros(1, 3, 64, 96))
    expected = [(c, 64 // s, 96 // s) for c, s in zip(encoder.channels, (2, 4, 8, 16, 32))]
    assert [tuple(f.shape[1:]) for f in features] == expected
    assert build_resnet_encoder("resnet34").channels == [64, 64, 128, 256, 512]
    assert len(build_resnet_encoder("resnet34").layer3) == 6


def test_pretrained_file_with_fc_keys_loads_into_encoder(tmp_path):
    torch.manual_seed(1)
    source = build_resnet_encoder("resnet18")
    state = dict(source.state_dict(), **{"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)})
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = create_model(ModelSpec(height=64, width=64), pretrained=str(path))
    loaded = model.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_pretrained_file_of_another_resnet_is_refused(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(build_resnet_encoder("resnet34").state_dict(), path)
    with pytest.raises(CheckpointError, match="holds resnet34") as err:
        load_pretrained(build_resnet_encoder("resnet18"), str(path))
    assert "unexpected keys (layer1.2." in str(err.value) and "\n" not in str(err.value)


def test_pretrained_file_with_wrong_shape_is_refused(tmp_path):
    state = build_resnet_encoder("resnet18").state_dict()
    state["conv1.weight"] = torch.zeros(64, 4, 7, 7)  # e.g. an RGB-D stem
    path = tmp_path / "rgbd.pth"
    torch.save(state, path)
    mis_shaped = r"1 mis-shaped keys \(conv1.weight: \[64, 4, 7, 7\] vs \[64, 3, 7, 7\]\)"
    with pytest.raises(CheckpointError, match=mis_shaped):
        load_pretrained(build_resnet_encoder("resnet18"), str(path))


def test_pretrained_path_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="neither 'none', 'imagenet' nor an existing file"):
        load_pretrained(build_resnet_encoder("resnet18"), str(tmp_path / "nope.pth"))


def test_imagenet_offline_says_how_to_pass_a_local_file(monkeypatch):
    requested = []

    def offline(url, **kwargs):
        requested.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError, match=r"model\.pretrained=/path/resnet34\.pth"):
        create_model(ModelSpec(height=64, width=64, architecture="resnet34"), pretrained="imagenet")
    assert requested == [PRETRAINED_URLS["resnet34"]] == ["https://download.pytorch.org/models/resnet34-b627a593.pth"]


def test_unknown_architecture_lists_available_ones():
    assert {"resnet18", "resnet34"} <= set(available_models())
    with pytest.raises(ConfigError, match=r"did you mean 'resnet18'.*available: \['resnet18', 'resnet34'"):
        create_model(ModelSpec(height=64, width=64, architecture="resnet81"))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"activaton": "gelu"}, "did you mean 'activation'"),
        ({"activation": "relu"}, "activation 'relu' is not supported"),
        ({"attention": "channel"}, "attention 'channel' is not supported"),
        ({"rezero": "yes"}, "rezero='yes' must be true or false"),
        ({"decoder_channels": [64, 32]}, "has 2 entries; expected 5"),
    ],
)
def test_bad_arch_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        create_model(ModelSpec(height=64, width=64, arch_options=options))


def test_decoder_channels_option_sets_decoder_widths():
    model = make(decoder_channels=[64, 48, 32, 24, 8])
    assert [block.reduce[0].out_channels for block in model.decoder.blocks] == [64, 48, 32, 24, 8]
    assert model.head.conv.in_channels == 8


def test_register_model_adds_an_architecture_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @register_model("tiny18")
    def tiny(spec, pretrained="none", **options):
        return registry._MODELS["resnet18"](spec, pretrained, **dict(options, decoder_channels=[8] * 5))

    assert "tiny18" in available_models()
    model = create_model(ModelSpec(height=64, width=64, architecture="tiny18"))
    assert model.head.conv.in_channels == 8
    with pytest.raises(ConfigError, match="already registered"):
        register_model("resnet18")(tiny)


@pytest.mark.parametrize("options", [{}, FULL_OPTIONS], ids=["default", "gelu-spatial-rezero"])
def test_onnx_export_matches_torch_and_keeps_head_nodes_findable(tmp_path, options):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = make(height=64, width=64, **options).eval()
    with torch.no_grad():  # non-zero ReZero alphas so the exported branches actually matter
        for name, p in model.named_parameters():
            if name.endswith(".alpha"):
                p.fill_(0.5)
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["depth"])
    node_names = {node.name for node in onnx.load(str(path)).graph.node}
    assert {"/head/conv/Conv", "/head/sigmoid/Sigmoid", "/head/Mul"} <= node_names
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["depth"], {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (1, 1, 64, 64)
    assert np.abs(got - expected).max() <= 1e-4 * model.max_depth
