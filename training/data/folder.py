"""Your own RGB-D data: ``rgb/`` and ``depth/`` folders whose files pair up by name.

Layout: ``root/<split>/rgb/*.{jpg,jpeg,png}`` and ``root/<split>/depth/<same stem>.{png,npy}``;
where ``root/<split>`` does not exist, ``root/rgb`` and ``root/depth`` are used for every split.
Depth PNGs are 16-bit, ``metres = value / depth_scale`` (1000 for millimetres, 5000 for TUM,
256 for KITTI-style); ``.npy`` depth is float metres. A file list (``data.train_list``) of
``rgb_relpath depth_relpath`` lines, relative to root, replaces the folder scan.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Tuple

from edgedepth.errors import DataError
from edgedepth.training.data.base import (
    DepthDataset,
    Sample,
    depth_map,
    files_with_suffix,
    list_some,
    make_sample,
    read_depth_png,
    read_npy,
    read_rgb,
    require_dir,
    require_samples,
)
from edgedepth.training.data.kitti import read_pair_list

LOGGER = logging.getLogger(__name__)
RGB_SUFFIXES = (".jpg", ".jpeg", ".png")
DEPTH_SUFFIXES = (".png", ".npy")


def by_stem(paths: List[str], what: str) -> Dict[str, str]:
    """{stem: path}; two files with one stem (``a.png`` and ``a.npy``) are ambiguous."""
    stems: Dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise DataError(f"{what} {stems[stem]} and {path} share the name {stem!r}: keep one of them")
        stems[stem] = path
    return stems


def read_depth_file(path: str, depth_scale: float):
    """Depth from a 16-bit PNG (divided by ``depth_scale``) or a ``.npy`` of metres."""
    if path.lower().endswith(".npy"):
        return depth_map(read_npy(path), path)
    return read_depth_png(path, depth_scale)


class DepthFolder(DepthDataset):
    """RGB + depth files matched by name (see the module docstring)."""

    format_name = "folder"

    def __init__(self, root: str, split: str = "train", depth_scale: float = 1000.0,
                 list_file: Optional[str] = None, skip_corrupt: bool = False) -> None:
        super().__init__(root, skip_corrupt)
        if depth_scale <= 0:
            raise DataError(f"data.depth_scale must be > 0 (PNG value per metre), got {depth_scale}")
        self.depth_scale = float(depth_scale)
        self.split_dir = self._split_dir(split)
        self.samples = read_pair_list(list_file, self.root) if list_file else self._scan()
        require_samples(self.samples, self.split_dir, "rgb/<name>.{jpg,png} with depth/<name>.{png,npy}")

    def _split_dir(self, split: str) -> str:
        require_dir(self.root, "data.root")
        candidate = os.path.join(self.root, split)
        return candidate if os.path.isdir(candidate) else self.root

    def _scan(self) -> List[Tuple[str, str]]:
        rgb_dir, depth_dir = (os.path.join(self.split_dir, name) for name in ("rgb", "depth"))
        require_dir(rgb_dir, "RGB folder")
        require_dir(depth_dir, "depth folder")
        rgbs = by_stem(files_with_suffix(rgb_dir, RGB_SUFFIXES), "RGB files")
        depths = by_stem(files_with_suffix(depth_dir, DEPTH_SUFFIXES), "depth files")
        self._check_unmatched(sorted(set(rgbs) ^ set(depths)), rgbs, depths)
        return [(rgbs[stem], depths[stem]) for stem in sorted(set(rgbs) & set(depths))]

    def _check_unmatched(self, stems: List[str], rgbs: Dict[str, str], depths: Dict[str, str]) -> None:
        if not stems:
            return
        paths = [rgbs.get(stem) or depths[stem] for stem in stems]
        message = (f"{len(paths)} files under {self.split_dir} have no partner of the same name in "
                   f"rgb/ or depth/: {list_some(paths)}")
        if not self.skip_corrupt:
            raise DataError(message + "; add the missing files or set data.skip_corrupt=true to skip them")
        self.skipped_count += len(paths)
        LOGGER.warning("skipping unpaired files (data.skip_corrupt=true): %s", message)

    def load(self, index: int) -> Sample:
        rgb_path, depth_path = self.samples[index]
        rgb = read_rgb(rgb_path)
        depth = read_depth_file(depth_path, self.depth_scale)
        return make_sample(rgb, depth, os.path.relpath(rgb_path, self.root))
