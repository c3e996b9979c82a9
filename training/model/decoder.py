"""Depth decoder: five x2 upsampling blocks with additive skips, and the metric depth head."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from edgedepth.errors import ConfigError
from edgedepth.training.model.blocks import ConvBNAct, make_activation, make_attention, make_refinement, upsample2x


class DecoderBlock(nn.Module):
    """reduce (3x3) -> x2 upsample -> + projected skip -> refinement residual -> attention."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        activation: str,
        attention: str,
        rezero: bool,
    ) -> None:
        super().__init__()
        self.reduce = ConvBNAct(in_channels, out_channels, activation)
        # A 1x1 projection makes the encoder feature addable whatever its width (additive skips
        # keep the decoder's channel count, unlike monodepth2's concatenation).
        self.skip = ConvBNAct(skip_channels, out_channels, "none", kernel_size=1) if skip_channels else None
        self.fuse_act = make_activation(activation) if skip_channels else nn.Identity()
        self.refine = make_refinement(out_channels, activation, rezero)
        self.attention = make_attention(attention, rezero)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = upsample2x(self.reduce(x))
        if self.skip is not None and skip is not None:
            x = self.fuse_act(x + self.skip(skip))
        return self.attention(self.refine(x))


class DepthDecoder(nn.Module):
    """Upsamples the stride-32 feature back to full resolution, adding encoder features on the way.

    ``encoder_channels`` are the widths at strides 2, 4, 8, 16, 32; block ``i`` upsamples to
    stride ``16 / 2**i`` and adds the encoder feature of that stride (none at stride 1). The
    options are resolved ones (from ``ModelConfig``); there are no defaults here.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        *,
        decoder_channels: Sequence[int],
        activation: str,
        attention: str,
        rezero: bool,
    ) -> None:
        super().__init__()
        if len(decoder_channels) != len(encoder_channels):
            raise ConfigError(
                f"decoder_channels {list(decoder_channels)} has {len(decoder_channels)} entries; expected "
                f"{len(encoder_channels)} (one per x2 upsampling from stride 32 to full resolution)"
            )
        skips = list(encoder_channels[-2::-1]) + [0]  # strides 16, 8, 4, 2, then none at stride 1
        ins = [encoder_channels[-1]] + list(decoder_channels[:-1])
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o, activation=activation, attention=attention, rezero=rezero)
            for i, s, o in zip(ins, skips, decoder_channels)
        )
        self.out_channels = int(decoder_channels[-1])

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        skips = features[-2::-1]
        for index, block in enumerate(self.blocks):
            x = block(x, skips[index] if index < len(skips) else None)
        return x


class DepthHead(nn.Module):
    """conv3x3 -> 1 channel, ``sigmoid * max_depth``: metres in ``(0, max_depth)``.

    Kept as its own submodule (``head.conv``, ``head.sigmoid``) so export and INT8 calibration
    can find these nodes (ONNX names ``/head/conv/Conv``, ``/head/sigmoid/Sigmoid``, ``/head/Mul``)
    and keep them in FP16/FP32: at INT8 a sigmoid x 80 m output has 127 levels, 63 cm apart.
    """

    def __init__(self, in_channels: int, max_depth: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=3, padding=1)
        self.sigmoid = nn.Sigmoid()
        self.max_depth = float(max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under autocast the head still runs in FP32: bf16 keeps 8 significant bits, so
        # sigmoid x max_depth would come out in steps of ~0.4% (30 cm at 80 m) before any loss sees it.
        if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.sigmoid(self.conv(x.float())) * self.max_depth
        return self.sigmoid(self.conv(x)) * self.max_depth

    def extra_repr(self) -> str:
        return f"max_depth={self.max_depth}"
