"""Accuracy parity (``depth-parity``): every artifact judged against the PyTorch checkpoint.

* :mod:`.inputs` - the built-in structured set, folders/globs/videos, datasets with depth;
* :mod:`.artifacts` - a candidate's kind, precision (from the graph or engine sidecar), spec, sha256;
* the comparison and the budget are the core's, shared with export and calib
  (:mod:`edgedepth.agreement`, :mod:`edgedepth.budget`, ``configs/budgets/default.yaml``);
* :mod:`.runner` - ``run_parity(ParityOptions)``; :mod:`.report` / :mod:`.pictures` - JSON, Markdown, PNG;
* :mod:`.cli` - the command.

Importing this package imports neither torch, ONNX Runtime nor TensorRT; running it does (the
reference is the checkpoint in PyTorch).
"""
from __future__ import annotations

from edgedepth.lazy import lazy_getattr

_LAZY = {
    "ParityOptions": "edgedepth.parity.runner",
    "ParityResult": "edgedepth.parity.runner",
    "run_parity": "edgedepth.parity.runner",
    "ParityUsageError": "edgedepth.parity.artifacts",
    "describe_artifact": "edgedepth.parity.artifacts",
    "builtin_images": "edgedepth.parity.inputs",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
