"""edgedepth.training: the depth network, losses, datasets, trainer and checkpoints (needs torch).

The names below are imported on first use, so the numpy-only scene renderer
(``edgedepth.training.data.render``) imports where torch is not installed.
"""
from importlib import import_module

#: Public name -> the module that defines it.
_EXPORTS = {
    "create_model": "edgedepth.training.model",
    "load_checkpoint": "edgedepth.training.checkpoint",
    "save_checkpoint": "edgedepth.training.checkpoint",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["create_model", "load_checkpoint", "save_checkpoint"]
