"""KITTI depth: RGB png + 16-bit depth png (metres = value / 256, 0 = no LiDAR return).

Samples come from a file list, one per line: ``rgb_relpath depth_relpath [focal]`` — the
BTS / AdaBins eigen split files. RGB paths are relative to ``data.root`` (the raw KITTI tree,
``2011_09_26/2011_09_26_drive_0001_sync/image_02/data/...``), depth paths to ``data.gt_root``
(the annotated depth, ``2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/...``, with
``train`` and ``val`` of data_depth_annotated merged, as BTS's ``gt_path``); without ``gt_root``
both are relative to ``data.root``. Absolute paths are used as they are. Lines whose depth is
``None`` (frames without ground truth) are left out: they can neither train nor be evaluated.
The drive (``2011_09_26_drive_0001``) is the scene a validation holdout keeps whole.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

from edgedepth.training.data.base import (
    DepthDataset,
    Sample,
    make_sample,
    pair_paths,
    read_depth_png,
    read_list_file,
    read_rgb,
    require_samples,
)

#: 16-bit KITTI depth PNGs store metres x 256.
KITTI_DEPTH_SCALE = 256.0
#: A KITTI raw drive in a path: ``2011_09_26_drive_0001``.
DRIVE = re.compile(r"\d{4}_\d{2}_\d{2}_drive_\d{4}")


def read_pair_list(list_file: str, root: str, depth_root: Optional[str] = None) -> List[Tuple[str, str]]:
    """(rgb, depth) paths of a ``rgb depth [focal]`` list, skipping ``None`` depths; depth paths
    are relative to ``depth_root`` (default: ``root``)."""
    pairs = []
    for number, fields in enumerate(read_list_file(list_file), start=1):
        if len(fields) >= 2 and fields[1] == "None":
            continue
        pairs.append(pair_paths(root, fields, f"{list_file} line {number}", depth_root))
    return pairs


class KITTIDepth(DepthDataset):
    """KITTI (or any ``rgb depth`` list of 16-bit PNGs scaled by ``depth_scale``)."""

    format_name = "kitti"

    def __init__(self, root: str, split: str = "train", list_file: Optional[str] = None,
                 skip_corrupt: bool = False, depth_scale: float = KITTI_DEPTH_SCALE,
                 gt_root: Optional[str] = None) -> None:
        super().__init__(root, skip_corrupt)
        self.list_file = list_file or os.path.join(root, f"{split}.txt")
        self.depth_scale = float(depth_scale)
        self.gt_root = str(gt_root) if gt_root else self.root
        self.samples = read_pair_list(self.list_file, self.root, self.gt_root)
        require_samples(self.samples, self.root, f"lines 'rgb_path depth_path' in {self.list_file}")

    def group_of(self, index: int) -> str:
        """The drive of sample ``index`` (its folder where the path names none)."""
        found = DRIVE.search(self.samples[index][0])
        return found.group(0) if found else super().group_of(index)

    def load(self, index: int) -> Sample:
        rgb_path, depth_path = self.samples[index]
        rgb = read_rgb(rgb_path)
        depth = read_depth_png(depth_path, self.depth_scale)
        return make_sample(rgb, depth, os.path.relpath(rgb_path, self.root))
