"""edgedepth: monocular depth from training to a live camera on a Jetson.

The top-level package is the torch-free core shared by every stage: :class:`ModelSpec`,
the one preprocessing, depth metrics, colour maps and the error types. The stages live in
``edgedepth.training``, ``edgedepth.export``, ``edgedepth.calib`` and ``edgedepth.runtime``.
"""
__version__ = "0.1.0"

from edgedepth.errors import EdgeDepthError  # noqa: E402
from edgedepth.spec import ModelSpec  # noqa: E402

__all__ = ["__version__", "EdgeDepthError", "ModelSpec"]
