"""``--sparse-depth DIR``: per-frame sparse metric depth (LiDAR, ToF, stereo points) for alignment.

One file per frame in one folder: a 16-bit single-channel PNG in millimetres (the format
``--save-depth`` writes) or a ``.npy`` of float metres; 0 (or NaN) means "no measurement". Files
are matched to frames by name:

* image folders (``match="name"``): the file stem equals the frame's name, which is the image's
  stem (``rgb/0042.jpg`` -> ``sparse/0042.png``); where two images share a stem depth-run names the
  frames ``x.png``/``x.jpg`` and their sparse files are ``x.png.png``/``x.jpg.npy``;
* videos, cameras and streams (``match="index"``): the stem is the frame index, zero-padded or not
  (``000123.png`` and ``123.npy`` both belong to frame 123).

The folder is listed once, at start (a missing or empty folder is refused before any work). A
frame without a file is not aligned (the alignment stage counts it). A map of another size
than the depth is mapped onto the depth grid point by point (each measurement goes to the depth
pixel its centre falls in: nearest neighbour, so a sparse map stays sparse and no measurement is
invented or blurred across an edge), provided it covers the same view: its size equals the
depth's or its aspect ratio equals the camera image's, which the network input is stretched from.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from edgedepth.camera import same_aspect
from edgedepth.errors import DataError, UsageError
from edgedepth.preprocess import import_cv2
from edgedepth.runtime.sinks import PNG_DEPTH_SCALE
from edgedepth.runtime.sources.base import Frame

SPARSE_SUFFIXES = (".png", ".npy")
MATCH_MODES = ("name", "index")
#: depth-run prefixes image names with the position when looping over a folder (``000012_x``).
_LOOP_PREFIX = re.compile(r"^\d{6}_(.+)$")


def match_mode(source_kind: str) -> str:
    """How files are matched for a source of ``source_kind`` (:class:`SourceURI.kind`): by name for
    image folders, by frame index for videos, cameras and streams."""
    return "name" if source_kind == "images" else "index"


class SparseDepthReader:
    """Finds and reads the sparse depth of each frame from one folder (see the module docstring)."""

    def __init__(self, uri: str, match: str = "name") -> None:
        if match not in MATCH_MODES:
            raise UsageError(f"sparse-depth match mode {match!r} is unknown: use one of {', '.join(MATCH_MODES)}")
        self.folder = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
        self.match = match
        self._by_key = _index_folder(self.folder, match)

    def __len__(self) -> int:
        return len(self._by_key)

    def path_for(self, frame: Frame) -> Optional[Path]:
        """The file holding ``frame``'s sparse depth, or None when there is none."""
        if self.match == "index":
            return self._by_key.get(str(frame.index))
        found = self._by_key.get(frame.name)
        looped = _LOOP_PREFIX.match(frame.name)
        if found is None and looped is not None:
            found = self._by_key.get(looped.group(1))
        return found

    def read(self, frame: Frame, depth_shape: Tuple[int, int]) -> Optional[np.ndarray]:
        """``frame``'s sparse depth on the depth grid (HxW float32 metres, 0 = none), or None when
        no file belongs to the frame. Raises DataError for an unreadable file or another view."""
        path = self.path_for(frame)
        if path is None:
            return None
        sparse = read_sparse_file(path)
        return to_depth_grid(sparse, depth_shape, frame.image.shape[:2], str(path))


def _index_folder(folder: Path, match: str) -> Dict[str, Path]:
    if not folder.is_dir():
        raise UsageError(f"--sparse-depth {str(folder)!r} is not a folder: expected a folder of per-frame "
                         "16-bit PNG (millimetres) or .npy (metres) files named like the frames")
    by_key: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in SPARSE_SUFFIXES or not path.is_file():
            continue
        key = _key(path.stem, match)
        if key is None:
            continue
        if key in by_key:
            raise UsageError(f"--sparse-depth: {by_key[key].name} and {path.name} both belong to frame {key!r}: "
                             "keep one of them")
        by_key[key] = path
    if not by_key:
        expected = "000123.png / 000123.npy (frame index)" if match == "index" else "<image stem>.png / .npy"
        raise UsageError(f"--sparse-depth {str(folder)!r} holds no sparse depth file: expected files named "
                         f"{expected}, 16-bit PNG in millimetres or .npy in metres")
    return by_key


def _key(stem: str, match: str) -> Optional[str]:
    if match == "name":
        return stem
    return str(int(stem)) if stem.isdigit() else None


def read_sparse_file(path: Path) -> np.ndarray:
    """A sparse depth file -> HxW float32 metres with 0 where nothing was measured."""
    if path.suffix.lower() == ".npy":
        array = _read_npy(path)
    else:
        array = _read_png_mm(path)
    squeezed = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    squeezed = squeezed[0] if squeezed.ndim == 3 and squeezed.shape[0] == 1 else squeezed
    if squeezed.ndim != 2:
        raise DataError(f"sparse depth {path} has shape {array.shape}: expected an HxW map (or HxWx1, 1xHxW)")
    depth = np.asarray(squeezed, dtype=np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0))


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)  # a data file must not run code
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"sparse depth {path} cannot be read ({exc}): the file is truncated or not a .npy") from exc
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"sparse depth {path} holds {array.dtype}: expected float metres")
    return array


def _read_png_mm(path: Path) -> np.ndarray:
    cv2 = import_cv2()
    raw = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"sparse depth {path} cannot be decoded: the file is truncated or not a PNG")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(f"sparse depth {path} is {raw.dtype} with shape {raw.shape}: expected a 16-bit "
                        "single-channel PNG in millimetres (an 8-bit or colour PNG is a picture, not depth)")
    return raw.astype(np.float32) / np.float32(PNG_DEPTH_SCALE)


def to_depth_grid(sparse: np.ndarray, depth_shape: Tuple[int, int], image_shape: Tuple[int, int],
                  source: str = "sparse depth") -> np.ndarray:
    """Map a sparse map onto the HxW depth grid, measurement by measurement (see the module docstring).

    Where several measurements land on one depth pixel the nearest wins: it is the surface the
    camera sees there (the others are behind it, seen by a sensor mounted elsewhere)."""
    if sparse.shape == tuple(depth_shape):
        return sparse
    if not same_aspect(sparse.shape[1], sparse.shape[0], image_shape[1], image_shape[0]):
        raise DataError(
            f"{source} is {sparse.shape[1]}x{sparse.shape[0]} but the depth is {depth_shape[1]}x{depth_shape[0]} "
            f"and the camera image {image_shape[1]}x{image_shape[0]}: expected the depth's size or the image's "
            "aspect ratio; project the points into the camera image first"
        )
    rows, cols = np.nonzero(sparse)
    height, width = depth_shape
    # Pixel centres: source pixel r covers [r, r+1), its centre (r + 0.5) lands in target row
    # floor((r + 0.5) * height / source_height), as cv2's INTER_NEAREST_EXACT maps them.
    target_rows = np.minimum(((rows + 0.5) * height / sparse.shape[0]).astype(np.intp), height - 1)
    target_cols = np.minimum(((cols + 0.5) * width / sparse.shape[1]).astype(np.intp), width - 1)
    grid = np.full(depth_shape, np.inf, dtype=np.float32)
    np.minimum.at(grid, (target_rows, target_cols), sparse[rows, cols])
    grid[np.isinf(grid)] = 0.0
    return grid


#: Sampling patterns of :func:`simulate_sparse`.
PATTERNS = ("uniform", "scanlines", "scanlines_missing_quarter", "blocked")


def simulate_sparse(depth: np.ndarray, density: float, pattern: str = "uniform",
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Sparse measurements of a dense ``depth`` (HxW metres, 0 = invalid) as a sensor would give them,
    to try alignment on one's own RGB-D data before deploying (and in the tests and benchmark).

    ``density`` is the fraction of pixels measured (0 < density <= 1). Patterns: "uniform" (random
    pixels: stereo or ToF points), "scanlines" (a LiDAR: evenly spaced rows, each sampled every few
    columns), "scanlines_missing_quarter" (a quarter of those rows lost, as when a LiDAR's beams
    are blocked or dropped), "blocked" (uniform, but nothing in a rectangle of a quarter of the image:
    a sensor sector hidden by the robot's own body).
    """
    if not 0 < density <= 1:
        raise UsageError(f"sparse density {density}: expected a fraction 0 < density <= 1")
    if pattern not in PATTERNS:
        raise UsageError(f"sparse pattern {pattern!r} is unknown: use one of {', '.join(PATTERNS)}")
    rng = rng or np.random.default_rng(0)
    if pattern.startswith("scanlines"):
        keep = _scanlines(depth.shape, density, pattern.endswith("quarter"), rng)
    else:
        keep = rng.random(depth.shape) < density
        if pattern == "blocked":
            height, width = depth.shape
            top, left = int(rng.integers(0, height // 2 + 1)), int(rng.integers(0, width // 2 + 1))
            keep[top:top + height // 2, left:left + width // 2] = False
    return np.where(keep & (depth > 0) & np.isfinite(depth), depth, 0.0).astype(np.float32)


def _scanlines(shape: Tuple[int, ...], density: float, drop_quarter: bool, rng: np.random.Generator) -> np.ndarray:
    """Rows spread evenly over the height (about sqrt(density) x H of them), each sampled with the
    column step that makes the total ``density``; a random quarter of the rows dropped if asked."""
    height, width = shape
    rows = int(np.clip(round(height * math.sqrt(density)), 1, height))
    step = max(1, round(rows * width / (density * height * width)))
    row_index = np.unique(np.linspace(0, height - 1, rows).round().astype(int) + int(rng.integers(0, 2)))
    row_index = row_index[row_index < height]
    if drop_quarter:
        row_index = np.sort(rng.permutation(row_index)[: max(1, round(0.75 * row_index.size))])
    keep = np.zeros(shape, dtype=bool)
    keep[row_index[:, None], np.arange(int(rng.integers(0, step)), width, step)[None, :]] = True
    return keep
