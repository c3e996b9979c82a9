"""Model registry (timm-style): architectures register a builder by name; ``create_model`` builds.

A builder is called as ``builder(spec, pretrained=..., activation=..., attention=..., rezero=...,
decoder_channels=...)`` with every option resolved (``ModelSpec.arch_options`` over the defaults of
``ModelConfig`` in training/config.py, their one place) and returns a
:class:`~edgedepth.training.model.depthnet.DepthNet`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, TypeVar

from edgedepth.errors import ConfigError
from edgedepth.spec import ModelSpec
from edgedepth.training.config import ModelConfig, arch_options, did_you_mean, with_defaults

if TYPE_CHECKING:  # the registry itself needs no model classes at import time
    from edgedepth.training.model.depthnet import DepthNet

ModelBuilder = Callable[..., "DepthNet"]
BuilderT = TypeVar("BuilderT", bound=ModelBuilder)

_MODELS: Dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[BuilderT], BuilderT]:
    """Decorator registering ``builder`` under ``name`` (refuses a name used twice)."""

    def decorator(builder: BuilderT) -> BuilderT:
        if name in _MODELS:
            raise ConfigError(f"model name {name!r} is already registered by {_MODELS[name].__qualname__}")
        _MODELS[name] = builder
        return builder

    return decorator


def available_models() -> List[str]:
    """Names accepted as ``ModelSpec.architecture`` / ``model.architecture``."""
    return sorted(_MODELS)


def resolve_arch_options(options: Mapping[str, Any]) -> Dict[str, Any]:
    """``options`` over ModelConfig's defaults; unknown keys and ill-typed values raise ConfigError.

    A checkpoint written before an option existed lacks it and gets its default here.
    """
    resolved = with_defaults(arch_options(ModelConfig()), options, "arch option")
    if not isinstance(resolved["rezero"], bool):
        raise ConfigError(f"arch option rezero={resolved['rezero']!r} must be true or false")
    channels = resolved["decoder_channels"]
    if not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
        raise ConfigError(f"arch option decoder_channels={list(channels)!r} must be positive integers")
    resolved["decoder_channels"] = [int(c) for c in channels]
    return resolved


def create_model(spec: ModelSpec, pretrained: str = "none") -> "DepthNet":
    """Build the network ``spec`` describes, its encoder initialised from ``pretrained``.

    ``pretrained`` is ``none`` (random), ``imagenet`` (torchvision weights, downloaded once) or a
    path to a torchvision-format ``.pth``. Raises ConfigError for an unknown architecture or
    option, CheckpointError when the weights cannot be had.
    """
    builder = _MODELS.get(spec.architecture)
    if builder is None:
        raise ConfigError(
            f"model architecture {spec.architecture!r} is unknown"
            f"{did_you_mean(spec.architecture, available_models())}; available: {available_models()}"
        )
    return builder(spec, pretrained=pretrained, **resolve_arch_options(spec.arch_options))
