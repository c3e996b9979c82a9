"""ResNet18/34 encoders in plain torch.nn with torchvision's state-dict keys, and their weights.

The module names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0`` ...) match
``torchvision.models.resnet`` exactly, so the official ImageNet ``.pth`` files load as they are,
without torchvision installed. The classifier (``fc``) is left out: a depth encoder never uses it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import torch
from torch import nn

from edgedepth.errors import CheckpointError, ConfigError
from edgedepth.training.model.state_dict import state_dict_mismatch

#: Blocks per stage; also used to tell which ResNet a state dict holds.
RESNET_LAYERS: Dict[str, List[int]] = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}
#: torchvision's ImageNet weights (IMAGENET1K_V1); the hex part of the name is a sha256 prefix.
PRETRAINED_URLS: Dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
}
#: Keys of a torchvision checkpoint that the encoder deliberately does not have.
IGNORED_PREFIXES = ("fc.",)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (two 3x3 convs and an identity or 1x1 downsample)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet without pooling head; ``forward`` returns features at strides 2, 4, 8, 16, 32.

    ``channels`` lists their widths (``[64, 64, 128, 256, 512]`` for ResNet18/34) so the decoder
    can be built for any registered encoder.
    """

    def __init__(self, name: str, layers: Sequence[int]) -> None:
        super().__init__()
        self.name = name
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = [64, 128, 256, 512]
        self.layer1 = self._make_stage(64, widths[0], layers[0], stride=1)
        self.layer2 = self._make_stage(widths[0], widths[1], layers[1], stride=2)
        self.layer3 = self._make_stage(widths[1], widths[2], layers[2], stride=2)
        self.layer4 = self._make_stage(widths[2], widths[3], layers[3], stride=2)
        self.channels: List[int] = [64] + widths
        self._init_weights()

    @staticmethod
    def _make_stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
        first = BasicBlock(in_channels, channels, stride)
        return nn.Sequential(first, *(BasicBlock(channels, channels) for _ in range(blocks - 1)))

    def _init_weights(self) -> None:
        # torchvision's initialisation, so "none" means the same random start as torchvision.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(self.maxpool(stem))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        return [stem, s4, s8, s16, self.layer4(s16)]


def build_resnet_encoder(name: str) -> ResNetEncoder:
    """A randomly initialised ``resnet18`` or ``resnet34`` encoder."""
    if name not in RESNET_LAYERS:
        raise ConfigError(f"ResNet encoder {name!r} is unknown: use one of {sorted(RESNET_LAYERS)}")
    return ResNetEncoder(name, RESNET_LAYERS[name])


def infer_resnet_name(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> str:
    """Which ResNet a state dict holds, from its blocks per stage (``unknown`` if none fits)."""
    counts = []
    for stage in range(1, 5):
        head = f"{prefix}layer{stage}."
        counts.append(len({key[len(head):].split(".")[0] for key in state_dict if key.startswith(head)}))
    names = [name for name, layers in RESNET_LAYERS.items() if layers == counts]
    return names[0] if names else f"an unknown encoder (blocks per stage {counts})"


def load_pretrained(encoder: ResNetEncoder, source: str) -> None:
    """Initialise ``encoder`` from ``source``: ``none``, ``imagenet`` or a torchvision ``.pth`` path.

    ``imagenet`` downloads torchvision's weights (cached by ``torch.hub``); offline, pass the file
    instead. Classifier keys (``fc.*``) are ignored; any other missing, unexpected or mis-shaped
    key raises CheckpointError.
    """
    if source == "none":
        return
    if source == "imagenet":
        state_dict = _download_imagenet(encoder.name)
        origin = PRETRAINED_URLS[encoder.name]
    else:
        state_dict = _read_state_dict(Path(source), encoder.name)
        origin = source
    _load_encoder_state(encoder, state_dict, origin)


def _download_imagenet(name: str) -> Dict[str, torch.Tensor]:
    url = PRETRAINED_URLS.get(name)
    if url is None:
        raise ConfigError(f"no ImageNet weights are known for encoder {name!r}; use model.pretrained=none or a path")
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except OSError as exc:  # URLError/HTTPError/socket errors all derive from OSError
        raise CheckpointError(
            f"cannot download ImageNet weights for {name} from {url} ({exc}); when offline, fetch the "
            f"file elsewhere and pass it: model.pretrained=/path/{name}.pth"
        ) from exc
    except RuntimeError as exc:  # torch.hub's hash check
        raise CheckpointError(
            f"downloaded {name} weights from {url} are damaged ({str(exc).splitlines()[0]}); delete "
            f"{torch.hub.get_dir()}/checkpoints/{os.path.basename(url)} and retry"
        ) from exc


def _read_state_dict(path: Path, name: str) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(
            f"model.pretrained={str(path)!r} is neither 'none', 'imagenet' nor an existing file; "
            f"pass a torchvision-format {name}.pth"
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a damaged file; all mean the same
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read pretrained weights {path} ({first_line}); re-download the file") from exc
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(
            f"{path} is not a torchvision state dict (a flat name -> tensor mapping); pass torchvision's "
            f"{name} weights file, e.g. {os.path.basename(PRETRAINED_URLS[name])}"
        )
    return dict(state_dict)


def _load_encoder_state(encoder: ResNetEncoder, state_dict: Mapping[str, torch.Tensor], origin: str) -> None:
    wanted = {k: v for k, v in state_dict.items() if not k.startswith(IGNORED_PREFIXES)}
    mismatch = state_dict_mismatch(encoder.state_dict(), wanted)
    if mismatch:
        raise CheckpointError(
            f"{origin} does not fit the {encoder.name} encoder (it holds {infer_resnet_name(wanted)}): "
            f"{mismatch}; pass weights of a torchvision {encoder.name}"
        )
    encoder.load_state_dict(wanted, strict=True)
