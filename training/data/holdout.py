"""The validation set that selects ``best.pt``, held out of the training split by whole scenes.

NYU and KITTI ship a train and a test split, no validation split; choosing a checkpoint on the
test split (as selecting on NYU's ``testNdxs`` or the KITTI Eigen test list does) makes every
number reported from it optimistic. The held-out part is whole groups (NYU scenes, KITTI drives,
DIODE scans, folders): frames of one scene are near-duplicates, so a frame-level split would let
validation measure memorisation.

The split is a pure function of the list of groups, ``fraction`` and ``seed``: the groups are
sorted by name, shuffled with ``numpy.random.default_rng(seed)``, and taken in that order until
they hold at least ``fraction`` of the samples (at least one group, never all of them).
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import List, Sequence, Tuple

import numpy as np

from edgedepth.errors import DataError

LOGGER = logging.getLogger(__name__)


def holdout_indices(groups: Sequence[str], fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """(kept, held_out) sample indices; ``groups[i]`` is sample i's scene (see the module docstring)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"data.holdout_fraction={fraction}: expected a fraction between 0 and 1 (e.g. 0.05)")
    sizes = Counter(groups)
    if len(sizes) < 2:
        if len(groups) < 2:
            raise DataError(
                f"the training split has {len(groups)} sample(s): too few to hold any out for validation; add data "
                "or set data.val_list to a file list of validation samples"
            )
        # One folder of frames: nothing tells scenes apart, so frames are held out one by one.
        LOGGER.warning("the training split has no scene structure (one folder): holding out single frames, which "
                       "may share scenes with training; set data.val_list for a scene-disjoint validation set")
        groups = [str(index) for index in range(len(groups))]
        sizes = Counter(groups)
    names = sorted(sizes)
    order = np.random.default_rng(seed).permutation(len(names))
    target = max(1, int(round(fraction * len(groups))))
    held: set = set()
    count = 0
    for position in order:
        if count >= target or len(held) == len(names) - 1:
            break
        held.add(names[position])
        count += sizes[names[position]]
    kept = [index for index, group in enumerate(groups) if group not in held]
    held_out = [index for index, group in enumerate(groups) if group in held]
    return kept, held_out
