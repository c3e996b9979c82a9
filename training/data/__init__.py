"""Training data: RGB-D dataset readers, augmentation, and the dataset / loader factory.

Raw datasets (``NYUDepthV2``, ``KITTIDepth``, ``DepthFolder``, ``DIODE``, ``SyntheticScenes``)
yield numpy samples at their own resolution; :class:`PreparedDataset` resizes and augments them
into uint8 image / metric depth / mask tensors; :func:`normalize_torch` normalises a batch on the
device exactly like :func:`edgedepth.preprocess.preprocess`.
"""
from __future__ import annotations

from edgedepth.training.data.augment import (
    AugmentParams,
    DepthSampleTransform,
    PreparedDataset,
    normalize_torch,
)
from edgedepth.training.data.base import DepthDataset
from edgedepth.training.data.diode import DIODE
from edgedepth.training.data.factory import (
    DATASET_NAMES,
    build_dataloader,
    build_dataset,
    build_raw_dataset,
    spec_from_data_config,
)
from edgedepth.training.data.folder import DepthFolder
from edgedepth.training.data.kitti import KITTIDepth
from edgedepth.training.data.nyu import NYUDepthV2


def __getattr__(name: str):
    # SyntheticScenes is imported on first use so this package imports without its module.
    if name == "SyntheticScenes":
        from edgedepth.training.data.synthetic import SyntheticScenes

        return SyntheticScenes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AugmentParams",
    "DATASET_NAMES",
    "DIODE",
    "DepthDataset",
    "DepthFolder",
    "DepthSampleTransform",
    "KITTIDepth",
    "NYUDepthV2",
    "PreparedDataset",
    "SyntheticScenes",
    "build_dataloader",
    "build_dataset",
    "build_raw_dataset",
    "normalize_torch",
    "spec_from_data_config",
]
