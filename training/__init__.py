"""edgedepth.training: the depth network, losses, datasets, trainer and checkpoints (needs torch)."""
from edgedepth.training.checkpoint import load_checkpoint, save_checkpoint
from edgedepth.training.model import create_model

__all__ = ["create_model", "load_checkpoint", "save_checkpoint"]
