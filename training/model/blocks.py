"""Decoder building blocks: conv-BN-activation, spatial attention, ReZero, refinement.

Every block uses only ops that export to ONNX opset 13+ and build in TensorRT 8.5 to 11
(Conv, BatchNormalization folded into Conv, Elu/Gelu-as-Erf, ReduceMean/ReduceMax, Sigmoid,
Mul/Add, Resize with constant scales) and has no data-dependent control flow.
"""
from __future__ import annotations

from typing import Dict, Type

import torch
import torch.nn.functional as F
from torch import nn

from edgedepth.errors import ConfigError
from edgedepth.training.config import CHOICES

#: The implementation of each ``model.activation`` choice (a test checks they agree).
ACTIVATIONS: Dict[str, Type[nn.Module]] = {"elu": nn.ELU, "gelu": nn.GELU}
ATTENTIONS = CHOICES["model.attention"]


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (``elu`` or ``gelu``)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation {name!r} is not supported: use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvBNAct(nn.Sequential):
    """3x3 (or ``kernel_size``) conv without bias, BatchNorm, then an optional activation."""

    def __init__(self, in_channels: int, out_channels: int, activation: str, kernel_size: int = 3) -> None:
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation != "none":
            layers.append(make_activation(activation))
        super().__init__(*layers)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: per-pixel channel mean and max -> 7x7 conv -> sigmoid -> x * gate."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # amax, not max(dim) -> (values, indices): a single ReduceMax node in ONNX.
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.conv(pooled))


class ReZero(nn.Module):
    """``x + alpha * branch(x)`` with a learnable scalar ``alpha`` starting at 0 (Bachlechner et al.).

    At initialisation the block is the identity, so a pretrained encoder's features pass through
    the decoder unchanged until training grows ``alpha``.
    """

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.branch(x)


class Residual(nn.Module):
    """``x + branch(x)``: the plain residual used when ReZero is off."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def refinement_branch(channels: int, activation: str) -> nn.Sequential:
    """Two 3x3 convs; the second has no activation so the residual sum stays unbounded."""
    return nn.Sequential(ConvBNAct(channels, channels, activation), ConvBNAct(channels, channels, "none"))


def make_refinement(channels: int, activation: str, rezero: bool) -> nn.Module:
    """Residual refinement, wrapped in ReZero when asked."""
    branch = refinement_branch(channels, activation)
    return ReZero(branch) if rezero else Residual(branch)


def make_attention(kind: str, rezero: bool) -> nn.Module:
    """Spatial attention (optionally as a ReZero branch) or the identity for ``none``."""
    if kind not in ATTENTIONS:
        raise ConfigError(f"attention {kind!r} is not supported: use one of {list(ATTENTIONS)}")
    if kind == "none":
        return nn.Identity()
    return ReZero(SpatialAttention()) if rezero else SpatialAttention()


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2: a constant-scale Resize that every TensorRT generation builds."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
