"""The depth network: ResNet encoders, additive-skip decoder, metric head, registry/factory."""
from edgedepth.training.model.depthnet import DepthNet
from edgedepth.training.model.registry import available_models, create_model, register_model
from edgedepth.training.model.resnet import load_pretrained

__all__ = ["DepthNet", "available_models", "create_model", "register_model", "load_pretrained"]
