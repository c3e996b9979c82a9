"""KITTI depth: RGB png + 16-bit depth png (metres = value / 256, 0 = no LiDAR return).

Samples come from a file list, one per line: ``rgb_relpath depth_relpath [focal]`` — the
BTS / AdaBins eigen split files. Both paths are relative to ``data.root`` (absolute paths are
used as they are; BTS keeps RGB and ground truth under two roots: symlink both under one root
or write absolute paths). Lines whose depth is ``None`` (frames without ground truth) are left
out: they can neither train nor be evaluated.
"""
from __future__ import annotations

import os
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


def read_pair_list(list_file: str, root: str) -> List[Tuple[str, str]]:
    """(rgb, depth) paths of a ``rgb depth [focal]`` list, skipping ``None`` depths."""
    pairs = []
    for number, fields in enumerate(read_list_file(list_file), start=1):
        if len(fields) >= 2 and fields[1] == "None":
            continue
        pairs.append(pair_paths(root, fields, f"{list_file} line {number}"))
    return pairs


class KITTIDepth(DepthDataset):
    """KITTI (or any ``rgb depth`` list of 16-bit PNGs scaled by ``depth_scale``)."""

    format_name = "kitti"

    def __init__(self, root: str, split: str = "train", list_file: Optional[str] = None,
                 skip_corrupt: bool = False, depth_scale: float = KITTI_DEPTH_SCALE) -> None:
        super().__init__(root, skip_corrupt)
        self.list_file = list_file or os.path.join(root, f"{split}.txt")
        self.depth_scale = float(depth_scale)
        self.samples = read_pair_list(self.list_file, self.root)
        require_samples(self.samples, self.root, f"lines 'rgb_path depth_path' in {self.list_file}")

    def load(self, index: int) -> Sample:
        rgb_path, depth_path = self.samples[index]
        rgb = read_rgb(rgb_path)
        depth = read_depth_png(depth_path, self.depth_scale)
        return make_sample(rgb, depth, os.path.relpath(rgb_path, self.root))
