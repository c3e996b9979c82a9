"""DepthNet: encoder -> decoder -> metric head, and the registered ResNet variants."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from edgedepth.errors import SpecError
from edgedepth.spec import ModelSpec, check_input_size
from edgedepth.training.model.decoder import DepthDecoder, DepthHead
from edgedepth.training.model.registry import register_model
from edgedepth.training.model.resnet import ResNetEncoder, build_resnet_encoder, load_pretrained

# torch.compiler.is_compiling arrived in torch 2.3; before it, compiling just runs the check.
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


def _is_exporting() -> bool:
    """True while torch.onnx / torch.jit / torch.compile / torch.export trace the model: the shape
    check is skipped there, since a traced Python check is baked in or specialises dynamic sizes."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or _is_compiling()


def check_input_tensor(x: torch.Tensor) -> None:
    """Raise SpecError unless ``x`` is N x 3 x H x W with H and W multiples of 32."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise SpecError(f"input has shape {list(x.shape)}; expected N x 3 x H x W (normalised RGB/BGR, NCHW)")
    check_input_size(int(x.shape[2]), int(x.shape[3]))


class DepthNet(nn.Module):
    """Monocular depth network: ``forward(x: N x 3 x H x W normalised) -> N x 1 x H x W metres``.

    Output is ``sigmoid(head.conv(...)) * max_depth``, so depth lies in ``(0, max_depth)``.
    Submodules: ``encoder`` (reports ``channels``), ``decoder``, ``head`` (``head.conv``,
    ``head.sigmoid``). ``spec`` is the ModelSpec it was built from. The options are resolved
    ones (``create_model`` fills them from ``ModelConfig``); there are no defaults here.
    """

    def __init__(
        self,
        spec: ModelSpec,
        encoder: ResNetEncoder,
        *,
        activation: str,
        attention: str,
        rezero: bool,
        decoder_channels: Sequence[int],
    ) -> None:
        super().__init__()
        self.spec = spec
        self.max_depth = float(spec.max_depth)
        self.encoder = encoder
        self.decoder = DepthDecoder(
            encoder.channels,
            decoder_channels=decoder_channels,
            activation=activation,
            attention=attention,
            rezero=rezero,
        )
        self.head = DepthHead(self.decoder.out_channels, self.max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _is_exporting():
            check_input_tensor(x)
        return self.head(self.decoder(self.encoder(x)))


def _resnet_depthnet(name: str, spec: ModelSpec, pretrained: str, **options: Any) -> DepthNet:
    encoder = build_resnet_encoder(name)
    load_pretrained(encoder, pretrained)
    return DepthNet(spec, encoder, **options)


@register_model("resnet18")
def resnet18_depth(spec: ModelSpec, pretrained: str, **options: Any) -> DepthNet:
    """ResNet18 encoder (11.2 M params) + additive-skip decoder; the default."""
    return _resnet_depthnet("resnet18", spec, pretrained, **options)


@register_model("resnet34")
def resnet34_depth(spec: ModelSpec, pretrained: str, **options: Any) -> DepthNet:
    """ResNet34 encoder (21.3 M params) + the same decoder: slower, a little more accurate."""
    return _resnet_depthnet("resnet34", spec, pretrained, **options)
