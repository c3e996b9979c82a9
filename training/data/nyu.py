"""NYU Depth v2 in its two common layouts, read lazily one frame at a time.

* FastDepth / sparse-to-dense ``.h5`` files: ``root/<split>/**/*.h5``, each holding ``rgb``
  (uint8 3xHxW) and ``depth`` (float32 HxW metres).
* The labeled ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5). MATLAB is column-major, so h5py
  sees ``images`` as (N, 3, W, H) and ``depths`` as (N, W, H); each frame is transposed back to
  HxWx3 / HxW. The official split (795 train / 654 test of the 1449 frames) comes from
  ``splits.mat`` next to the .mat (``trainNdxs`` / ``testNdxs``, 1-based; a MATLAB v5 file, read
  with SciPy) or from a ``data.train_list`` / ``data.val_list`` text file with one 1-based frame
  index per line (the same numbers as ``splits.mat``; use it where SciPy is not installed).

Splits: ``train`` and ``test`` (the official 654 frames: ``testNdxs``, or FastDepth's ``val/``
folder, which holds exactly them, where there is no ``test/``); ``all`` (.mat). There is no NYU
``val``: validation is held out of ``train`` by scene (:mod:`edgedepth.training.data.holdout`).

``border_crop`` (training): NYU's RGB-D registration leaves a blank (white RGB, invalid depth)
border; like BTS, training frames keep rows 45:472 and columns 43:608 of 480x640 (scaled for
other sizes). Evaluation keeps whole frames and applies ``eval.crop`` (Eigen) to the metrics.

h5py handles must not cross a ``fork``: each process opens its own .mat handle on first access;
the small per-frame .h5 files are opened and closed per read.
"""
from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Any, Dict, List, Optional

import numpy as np

from edgedepth.errors import DataError
from edgedepth.training.data.base import (
    DepthDataset,
    Sample,
    files_with_suffix,
    make_sample,
    read_list_file,
    require_samples,
)
from edgedepth.training.data.intrinsics import NYU_BORDER_CROP

LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
#: Split names -> the ``splits.mat`` variable holding their 1-based frame indices.
SPLIT_VARIABLES = {"train": "trainNdxs", "test": "testNdxs"}
H5_PATTERN = "root/<split>/**/*.h5 (FastDepth layout) or root/" + LABELED_MAT
#: FastDepth names the folder of the official test frames ``val``.
H5_TEST_FOLDERS = ("test", "val")
#: (top, bottom, left, right) of the training border crop, as fractions of 480x640: BTS's box, defined once
#: with the camera it crops (intrinsics.NYU_BORDER_CROP, which stays importable without torch).
_LEFT, _TOP, _WIDTH, _HEIGHT = NYU_BORDER_CROP
BORDER_CROP = (Fraction(_TOP, 480), Fraction(_TOP + _HEIGHT, 480), Fraction(_LEFT, 640), Fraction(_LEFT + _WIDTH, 640))
LOGGER = logging.getLogger(__name__)


def border_crop(array: np.ndarray) -> np.ndarray:
    """``array`` (HxW or HxWxC) without NYU's blank registration border (:data:`BORDER_CROP`)."""
    height, width = array.shape[:2]
    top, bottom, left, right = BORDER_CROP
    return array[int(top * height): int(bottom * height), int(left * width): int(right * width)]


def open_h5(path: str):
    """Open an HDF5 file read-only, or raise DataError naming it."""
    import h5py  # lazy: only NYU needs it

    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"HDF5 file {path} cannot be opened ({exc}): it is missing, truncated or not HDF5") from exc


class MatHandle:
    """The labeled .mat opened once per process (a handle opened before a fork is unsafe in the child)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pid: Optional[int] = None
        self._file = None

    def get(self):
        if self._pid != os.getpid():
            self._pid, self._file = os.getpid(), open_h5(self.path)
        return self._file

    def __getstate__(self) -> Dict[str, Any]:
        return {"path": self.path, "_pid": None, "_file": None}  # spawn-started workers reopen


def read_key(handle, path: str, key: str, index: Optional[int] = None) -> np.ndarray:
    """One dataset (or frame ``index`` of it) of an open HDF5 file; DataError naming the file."""
    if key not in handle:
        raise DataError(f"HDF5 file {path} has no dataset {key!r}; found {sorted(handle.keys())}")
    try:
        return handle[key][()] if index is None else handle[key][index]
    except (OSError, ValueError, IndexError) as exc:
        raise DataError(f"HDF5 file {path}: reading {key!r} failed ({exc})") from exc


class NYUDepthV2(DepthDataset):
    """NYU Depth v2 from FastDepth ``.h5`` files or the labeled ``.mat`` (see the module docstring).

    ``root`` is the folder holding ``<split>/`` or ``nyu_depth_v2_labeled.mat``, or the .mat
    itself. ``list_file`` overrides the split: h5 paths relative to root (h5 layout) or 1-based
    frame indices (.mat layout).
    """

    format_name = "nyu"

    def __init__(self, root: str, split: str = "train", list_file: Optional[str] = None,
                 skip_corrupt: bool = False, border_crop: bool = False) -> None:
        super().__init__(root, skip_corrupt)
        self.split = split
        self.border_crop = bool(border_crop)
        self.split_dir = self._split_folder(root, split)
        self.mat_path = None if os.path.isdir(self.split_dir) else self._find_mat(root)
        self._mat = MatHandle(self.mat_path) if self.mat_path else None
        if self.mat_path is None:
            self.samples = self._h5_samples(list_file)
        else:
            self.samples = self._mat_indices(self.mat_path, list_file)
        require_samples(self.samples, self.root, H5_PATTERN)

    @staticmethod
    def _split_folder(root: str, split: str) -> str:
        """``root/<split>`` of the h5 layout (``test``: ``root/test``, else FastDepth's ``root/val``)."""
        names = H5_TEST_FOLDERS if split == "test" else (split,)
        folders = [os.path.join(root, name) for name in names]
        return next((folder for folder in folders if os.path.isdir(folder)), folders[0])

    @staticmethod
    def _find_mat(root: str) -> Optional[str]:
        if os.path.isfile(root):
            return root
        candidate = os.path.join(root, LABELED_MAT)
        return candidate if os.path.isfile(candidate) else None

    def _h5_samples(self, list_file: Optional[str]) -> List[str]:
        if list_file:
            return [os.path.join(self.root, fields[0]) for fields in read_list_file(list_file)]
        folder = self.split_dir
        return files_with_suffix(folder, [".h5"], recursive=True) if os.path.isdir(folder) else []

    def group_of(self, index: int) -> str:
        """The scene of sample ``index``: its folder (h5 layout) or the .mat's ``scenes`` label."""
        if self._mat is None:
            return super().group_of(index)
        scenes = self._scene_names()
        return scenes[self.samples[index]] if scenes else str(self.samples[index])

    def _scene_names(self) -> List[str]:
        """The labeled .mat's per-frame scene names (``scenes``, MATLAB char arrays), [] if absent."""
        cached: Optional[List[str]] = getattr(self, "_scenes", None)
        if cached is not None:
            return cached
        assert self.mat_path is not None
        with open_h5(self.mat_path) as handle:
            if "scenes" not in handle:
                LOGGER.warning("%s has no 'scenes': the validation holdout takes single frames", self.mat_path)
                names: List[str] = []
            else:
                names = ["".join(map(chr, handle[ref][()].ravel())) for ref in handle["scenes"][()].ravel()]
        self._scenes = names
        return names

    def _mat_indices(self, mat_path: str, list_file: Optional[str]) -> List[int]:
        if list_file:
            one_based = [_parse_index(fields[0], list_file) for fields in read_list_file(list_file)]
        else:
            one_based = self._official_split(mat_path)
        count = self._frame_count(mat_path)
        bad = [index for index in one_based if not 1 <= index <= count]
        if bad:
            raise DataError(f"frame indices {bad[:5]} are outside 1..{count} of {mat_path} (indices are 1-based)")
        return [index - 1 for index in one_based]

    def _official_split(self, mat_path: str) -> List[int]:
        splits = os.path.join(os.path.dirname(mat_path), SPLITS_MAT)
        if self.split == "all":
            return list(range(1, self._frame_count(mat_path) + 1))
        if self.split not in SPLIT_VARIABLES:
            raise DataError(
                f"NYU split {self.split!r} is unknown: use one of {sorted(SPLIT_VARIABLES) + ['all']} (NYU has no "
                "validation split: depth-train holds one out of train, data.val_split=val)"
            )
        if not os.path.isfile(splits):
            raise DataError(
                f"{splits} is missing: put the official splits.mat next to {mat_path}, or set "
                "data.train_list / data.test_list to a text file of 1-based frame indices"
            )
        return read_splits_mat(splits, SPLIT_VARIABLES[self.split])

    def _frame_count(self, mat_path: str) -> int:
        # A short-lived handle: the process building the dataset may fork DataLoader workers.
        with open_h5(mat_path) as handle:
            if "images" not in handle:
                raise DataError(f"{mat_path} has no 'images' dataset: expected the labeled {LABELED_MAT}")
            return int(handle["images"].shape[0])

    def load(self, index: int) -> Sample:
        if self._mat is None:  # set exactly when mat_path is
            sample = self._load_h5(self.samples[index])
        else:
            sample = self._load_mat(self._mat, self.samples[index])
        if self.border_crop:
            for key in ("rgb", "depth", "mask"):
                sample[key] = np.ascontiguousarray(border_crop(sample[key]))  # type: ignore[arg-type]
        return sample

    def _load_h5(self, path: str) -> Sample:
        # One small file per frame: opened and closed per read, so tens of thousands of files
        # never hold tens of thousands of descriptors.
        with open_h5(path) as handle:
            rgb = read_key(handle, path, "rgb")
            depth = read_key(handle, path, "depth")
        if rgb.ndim != 3 or rgb.shape[0] != 3:
            raise DataError(f"{path}: 'rgb' has shape {rgb.shape}, expected 3xHxW uint8")
        name = os.path.relpath(path, self.root)
        return make_sample(rgb.transpose(1, 2, 0), depth.astype(np.float32), name)

    def _load_mat(self, mat: MatHandle, frame: int) -> Sample:
        # (3, W, H) -> (H, W, 3) and (W, H) -> (H, W): undo MATLAB's column-major order.
        handle = mat.get()
        rgb = read_key(handle, mat.path, "images", frame).transpose(2, 1, 0)
        depth = read_key(handle, mat.path, "depths", frame).T.astype(np.float32)
        return make_sample(rgb, depth, f"{frame + 1:04d}")


def _parse_index(text: str, source: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise DataError(f"{source}: {text!r} is not a frame index; expected one 1-based integer per line") from exc


def read_splits_mat(path: str, variable: str) -> List[int]:
    """1-based frame indices stored as ``variable`` in the official (MATLAB v5) ``splits.mat``."""
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise DataError(
            f"reading {path} needs SciPy (`pip install scipy`); or set data.train_list / data.test_list to a "
            "text file of 1-based frame indices instead"
        ) from exc
    try:
        content = loadmat(path)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path} cannot be read as a MATLAB file ({exc})") from exc
    if variable not in content:
        raise DataError(f"{path} has no {variable!r}; found {sorted(k for k in content if not k.startswith('__'))}")
    return [int(value) for value in np.asarray(content[variable]).ravel()]
