"""Training data: RGB-D dataset readers, augmentation, and the dataset / loader factory.

Raw datasets (``NYUDepthV2``, ``KITTIDepth``, ``DepthFolder``, ``DIODE``, ``SyntheticScenes``)
yield numpy samples at their own resolution; :class:`PreparedDataset` resizes and augments them
into uint8 image / metric depth / mask tensors; :func:`normalize_torch` normalises a batch on the
device exactly like :func:`edgedepth.preprocess.preprocess`.

The names below are imported on first use: this package then imports without torch, so its
numpy-only scene renderer (``render``, ``scene``, ``textures``, ``random_scenes``, ``clip``)
works where torch is not installed.
"""
from __future__ import annotations

from importlib import import_module

#: Public name -> the module of this package that defines it.
_EXPORTS = {
    "AugmentParams": "augment",
    "DepthSampleTransform": "augment",
    "PreparedDataset": "augment",
    "normalize_torch": "augment",
    "DepthDataset": "base",
    "DIODE": "diode",
    "DATASET_NAMES": "factory",
    "build_dataloader": "factory",
    "build_dataset": "factory",
    "build_raw_dataset": "factory",
    "spec_from_data_config": "factory",
    "DepthFolder": "folder",
    "KITTIDepth": "kitti",
    "NYUDepthV2": "nyu",
    "SyntheticScenes": "synthetic",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
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
