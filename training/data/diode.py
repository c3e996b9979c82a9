"""DIODE: ``<name>.png`` + ``<name>_depth.npy`` (HxWx1 metres) + ``<name>_depth_mask.npy`` (HxW).

Samples are found recursively under ``root/<split>`` (DIODE ships ``train`` and ``val``, each
with indoors/outdoors scenes and scans). A pixel is valid where the depth is > 0 and finite
and DIODE's own mask is set (the mask removes the scanner's unreliable returns). A file list
(``data.train_list``) of png paths relative to root replaces the scan.
"""
from __future__ import annotations

import os
from typing import List, Optional

from edgedepth.training.data.base import (
    DepthDataset,
    Sample,
    depth_map,
    files_with_suffix,
    make_sample,
    read_list_file,
    read_npy,
    read_rgb,
    require_dir,
    require_samples,
)


def companion(rgb_path: str, suffix: str) -> str:
    """``scene/x.png`` -> ``scene/x<suffix>`` (``_depth.npy`` or ``_depth_mask.npy``)."""
    return os.path.splitext(rgb_path)[0] + suffix


class DIODE(DepthDataset):
    """DIODE RGB-D (see the module docstring)."""

    format_name = "diode"

    def __init__(self, root: str, split: str = "train", list_file: Optional[str] = None,
                 skip_corrupt: bool = False) -> None:
        super().__init__(root, skip_corrupt)
        self.split_dir = os.path.join(self.root, split)
        self.samples = self._from_list(list_file) if list_file else self._scan()
        require_samples(self.samples, self.split_dir, "**/<name>.png with <name>_depth.npy and <name>_depth_mask.npy")

    def _from_list(self, list_file: str) -> List[str]:
        return [os.path.join(self.root, fields[0]) for fields in read_list_file(list_file)]

    def _scan(self) -> List[str]:
        require_dir(self.split_dir, "DIODE split folder")
        return files_with_suffix(self.split_dir, [".png"], recursive=True)

    def load(self, index: int) -> Sample:
        rgb_path = self.samples[index]
        depth_path = companion(rgb_path, "_depth.npy")
        mask_path = companion(rgb_path, "_depth_mask.npy")
        rgb = read_rgb(rgb_path)
        depth = depth_map(read_npy(depth_path), depth_path)
        mask = read_npy(mask_path, "depth mask") > 0
        return make_sample(rgb, depth, os.path.relpath(rgb_path, self.root), extra_mask=mask)
