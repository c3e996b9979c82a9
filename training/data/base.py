"""What every RGB-D file dataset shares: the raw sample contract, file readers, skip_corrupt.

A raw dataset's ``__getitem__(i)`` returns ``{"rgb": uint8 HxWx3 RGB, "depth": float32 HxW
metres, "mask": bool HxW, "name": str}``. ``mask`` is False where the depth is missing (0 or
non-finite; non-finite values are replaced by 0 so no NaN ever reaches a loss) or where the
dataset says so (e.g. DIODE's mask). Every reader raises :class:`DataError` naming the file.

``skip_corrupt``: a sample whose files are missing or unreadable is replaced by the next readable
index (deterministic), a warning names the file, and ``skipped_count`` counts it. The count lives
in the process that read the file: each DataLoader worker keeps its own copy of the dataset, so
with ``num_workers > 0`` the main process's count stays 0 and the warnings in the log are the
complete record.
"""
from __future__ import annotations

import abc
import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import Dataset

from edgedepth.errors import DataError
from edgedepth.preprocess import import_cv2

LOGGER = logging.getLogger(__name__)

#: A raw sample: rgb (uint8 HxWx3 RGB), depth (float32 HxW metres), mask (bool HxW), name (str).
Sample = Dict[str, object]
#: How many offending names an error message lists before "and N more".
LISTED_NAMES = 5


def list_some(names: Sequence[str], limit: int = LISTED_NAMES) -> str:
    """``a, b, c and 7 more`` — short enough for a one-line error."""
    shown = ", ".join(str(name) for name in names[:limit])
    rest = len(names) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def require_file(path: str, what: str) -> None:
    """Raise DataError unless ``path`` is an existing file."""
    if not os.path.isfile(path):
        raise DataError(f"{what} {path} does not exist: check data.root and the file list")


def read_rgb(path: str) -> np.ndarray:
    """An image file (png/jpg) -> uint8 HxWx3 RGB."""
    cv2 = import_cv2()
    require_file(path, "RGB image")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"RGB image {path} cannot be decoded: the file is truncated or not an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_depth_png(path: str, scale: float) -> np.ndarray:
    """A 16-bit single-channel PNG -> float32 metres (``value / scale``; 0 stays 0 = missing)."""
    cv2 = import_cv2()
    require_file(path, "depth image")
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"depth image {path} cannot be decoded: the file is truncated or not a PNG")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(
            f"depth image {path} is {raw.dtype} with shape {raw.shape}: expected a 16-bit single-channel "
            "PNG (an 8-bit or colour PNG is a visualisation, not depth)"
        )
    return raw.astype(np.float32) / np.float32(scale)


def read_npy(path: str, what: str = "depth array") -> np.ndarray:
    """A ``.npy`` file -> its array (no pickles: a dataset file must not run code)."""
    require_file(path, what)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{what} {path} cannot be read ({exc}): the file is truncated or not a .npy") from exc


def depth_map(array: np.ndarray, source: str) -> np.ndarray:
    """Squeeze an HxW or HxWx1 / 1xHxW array to float32 HxW, or raise naming ``source``."""
    squeezed = np.squeeze(array)
    if squeezed.ndim != 2:
        raise DataError(f"depth in {source} has shape {array.shape}: expected HxW or HxWx1")
    return squeezed.astype(np.float32, copy=False)


def make_sample(rgb: np.ndarray, depth: np.ndarray, name: str, extra_mask: Optional[np.ndarray] = None) -> Sample:
    """Check shapes agree, replace non-finite depth by 0, and build the validity mask."""
    if rgb.shape[:2] != depth.shape:
        raise DataError(f"sample {name}: RGB is {rgb.shape[:2]} but depth is {depth.shape}; they must be the same size")
    depth = np.array(depth, dtype=np.float32, copy=True)
    finite = np.isfinite(depth)
    depth[~finite] = 0.0
    mask = finite & (depth > 0)
    if extra_mask is not None:
        if extra_mask.shape != depth.shape:
            raise DataError(f"sample {name}: mask is {extra_mask.shape} but depth is {depth.shape}")
        mask &= extra_mask.astype(bool)
    return {"rgb": np.ascontiguousarray(rgb, dtype=np.uint8), "depth": depth, "mask": mask, "name": name}


def read_list_file(path: str) -> List[List[str]]:
    """Whitespace-separated fields of each non-blank, non-``#`` line of a list file."""
    require_file(path, "file list")
    with open(path, "r", encoding="utf-8") as handle:
        lines = [line.split() for line in handle]
    return [fields for fields in lines if fields and not fields[0].startswith("#")]


def require_samples(samples: Sequence[object], root: str, pattern: str) -> None:
    """Raise DataError if a dataset found nothing, naming where it looked and what it expected."""
    if not samples:
        raise DataError(f"no samples found under {root}: expected {pattern}; check data.root and the split name")


def require_dir(path: str, what: str) -> None:
    """Raise DataError unless ``path`` is an existing directory."""
    if not os.path.isdir(path):
        raise DataError(f"{what} {path} does not exist or is not a directory: set data.root to the dataset folder")


def files_with_suffix(folder: str, suffixes: Iterable[str], recursive: bool = False) -> List[str]:
    """Sorted paths under ``folder`` whose lower-cased names end with one of ``suffixes``."""
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    if recursive:
        found = [os.path.join(base, name) for base, _, names in os.walk(folder) for name in names]
    else:
        found = [os.path.join(folder, name) for name in os.listdir(folder)]
    return sorted(path for path in found if path.lower().endswith(suffixes) and os.path.isfile(path))


class DepthDataset(Dataset, abc.ABC):
    """Base of the file datasets: ``len(samples)`` records read lazily by :meth:`load`.

    Subclasses fill ``self.samples`` and implement ``load(index) -> Sample``; this class adds
    index checks and the ``skip_corrupt`` policy (see the module docstring).
    """

    #: Short name used in messages and the factory (``nyu``, ``kitti``, ...).
    format_name = "files"

    def __init__(self, root: str, skip_corrupt: bool = False) -> None:
        self.root = str(root)
        self.skip_corrupt = bool(skip_corrupt)
        self.skipped_count = 0
        # One record per sample, of the format's own kind: a path, a pair of paths, an index.
        self.samples: List[Any] = []

    def __len__(self) -> int:
        return len(self.samples)

    def group_of(self, index: int) -> str:
        """The scene sample ``index`` belongs to (its folder): the unit a validation holdout keeps
        whole (:mod:`edgedepth.training.data.holdout`); datasets with better labels override it."""
        record = self.samples[index]
        path = record[0] if isinstance(record, (tuple, list)) else record
        return os.path.dirname(os.path.relpath(str(path), self.root))

    @abc.abstractmethod
    def load(self, index: int) -> Sample:
        """Read sample ``index`` from disk; raise DataError naming the file on any problem."""

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        for offset in range(len(self)):
            current = (index + offset) % len(self)
            try:
                return self.load(current)
            except DataError as exc:
                if not self.skip_corrupt:
                    raise
                self._record_skip(exc)
        raise DataError(f"every one of the {len(self)} {self.format_name} samples under {self.root} is unreadable")

    def _check_index(self, index: int) -> int:
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} is out of range for a dataset of {length} samples")
        return index % length

    def _record_skip(self, error: DataError) -> None:
        self.skipped_count += 1
        LOGGER.warning("skipping corrupt sample (data.skip_corrupt=true, %d skipped in pid %d): %s",
                       self.skipped_count, os.getpid(), error)


def pair_paths(root: str, fields: Sequence[str], where: str, depth_root: Optional[str] = None) -> Tuple[str, str]:
    """``rgb_relpath depth_relpath [...]`` -> the RGB path joined to ``root``, the depth path to
    ``depth_root`` (default ``root``); absolute paths are kept."""
    if len(fields) < 2:
        raise DataError(f"{where}: expected 'rgb_path depth_path [focal]', got {' '.join(fields)!r}")
    return os.path.join(root, fields[0]), os.path.join(depth_root or root, fields[1])
