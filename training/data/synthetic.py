"""The ``synthetic`` dataset: procedural RGB-D rooms with exact metric depth, as a torch Dataset.

Samples are rendered by :mod:`edgedepth.training.data.render` (numpy only; scenes from
:mod:`edgedepth.training.data.random_scenes`). Every sample is a pure function of
``(seed, split, index)``: splits draw from disjoint seed streams, so train, val and test never
share a scene. Rendered splits are cached as one memory-mapped ``.npy`` of records per split,
keyed by generator version, split, size, count, seed and depth range.
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import logging
import multiprocessing
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from edgedepth.errors import DataError
from edgedepth.io import atomic_path
from edgedepth.training.data.random_scenes import SPLIT_STREAMS, CameraRig, sample_scene, scene_rng
from edgedepth.training.data.render import GENERATOR_VERSION, render_scene
from edgedepth.training.data.scene import Scene

LOGGER = logging.getLogger(__name__)

#: Splits smaller than this render in-process: a worker pool costs more to start than it saves.
MIN_SAMPLES_FOR_POOL = 64
#: A progress bar is shown when rendering more samples than this.
PROGRESS_THRESHOLD = 100


def record_dtype(height: int, width: int) -> np.dtype:
    """One cached sample; the mask is not stored: it is ``depth > 0`` (invalid depth is 0)."""
    return np.dtype([("rgb", np.uint8, (height, width, 3)), ("depth", np.float32, (height, width))])


#: (seed, split, index, height, width, min_depth, max_depth, rig)
RenderJob = Tuple[int, str, int, int, int, float, float, CameraRig]


def _render_job(job: RenderJob) -> Tuple[np.ndarray, np.ndarray]:
    seed, split, index, height, width, min_depth, max_depth, rig = job
    scene = sample_scene(scene_rng(seed, split, index), rig)
    rgb, depth, _ = render_scene(scene, height, width, min_depth, max_depth)
    return rgb, depth


def _check_arguments(split: str, height: int, width: int, num_samples: int, seed: int,
                     min_depth: float, max_depth: float) -> None:
    if split not in SPLIT_STREAMS:
        raise DataError(f"synthetic split {split!r} is unknown: use one of {', '.join(SPLIT_STREAMS)}")
    if height < 1 or width < 1 or num_samples < 1:
        raise DataError(f"synthetic dataset of {num_samples} samples of {height}x{width}: all three must be >= 1")
    if seed < 0:
        raise DataError(f"synthetic seed {seed} is negative: use a seed >= 0")
    if not 0 < min_depth < max_depth:
        raise DataError(f"synthetic depth range [{min_depth}, {max_depth}]: expected 0 < min_depth < max_depth")


class SyntheticScenes(Dataset):
    """``num_samples`` procedural rooms of ``height`` x ``width`` for ``split`` (train, val, test).

    ``__getitem__`` returns ``{"rgb": uint8 HxWx3 RGB, "depth": float32 HxW metres, "mask": bool
    HxW, "name": str}``. Samples are rendered once at construction (``workers`` processes for
    large splits) and, with ``cache_dir``, stored there and memory-mapped on later runs.
    """

    def __init__(self, split: str, height: int, width: int, num_samples: int, seed: int = 0,
                 cache_dir: Optional[str] = None, min_depth: float = 0.1, max_depth: float = 10.0,
                 workers: int = 2, rig: Optional[CameraRig] = None) -> None:
        _check_arguments(split, height, width, num_samples, seed, min_depth, max_depth)
        self.rig = rig or CameraRig()
        self.split, self.height, self.width = split, int(height), int(width)
        self.num_samples, self.seed, self.workers = int(num_samples), int(seed), int(workers)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.cache_path: Optional[Path] = None if cache_dir is None else Path(cache_dir) / self.cache_name()
        self._records: Optional[np.ndarray] = None
        self._records = self._load_or_render()

    @classmethod
    def from_config(cls, data_cfg, split: str) -> "SyntheticScenes":
        """Build from a ``DataConfig``: size, depth range and ``data.synthetic`` (counts, seed,
        cache, camera rig).

        ``train`` gets ``num_train`` samples; ``val`` and ``test`` get ``num_val`` each.
        """
        synthetic = data_cfg.synthetic
        count = synthetic.num_train if split == "train" else synthetic.num_val
        rig = CameraRig(tuple(synthetic.camera_height), tuple(synthetic.camera_pitch_deg))
        return cls(split, data_cfg.height, data_cfg.width, count, seed=synthetic.seed,
                   cache_dir=synthetic.cache_dir or None, min_depth=data_cfg.min_depth, max_depth=data_cfg.max_depth,
                   rig=rig)

    def cache_name(self) -> str:
        """File name of this split's cache: every setting that changes the pixels is in it."""
        return (f"synthetic-v{GENERATOR_VERSION}-{self.split}-{self.height}x{self.width}-n{self.num_samples}"
                f"-seed{self.seed}-depth{self.min_depth:g}-{self.max_depth:g}-{self.rig.key()}.npy")

    def scene(self, index: int) -> Scene:
        """The scene description of sample ``index``."""
        return sample_scene(scene_rng(self.seed, self.split, index), self.rig)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Dict[str, object]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} is out of range for {self.num_samples} synthetic samples")
        index %= self.num_samples
        record = self._array()[index]
        depth = np.array(record["depth"], dtype=np.float32)  # a private copy, off the memory map
        return {"rgb": np.array(record["rgb"]), "depth": depth, "mask": depth > 0,
                "name": f"synthetic/{self.split}/{index:06d}"}

    def __getstate__(self) -> Dict[str, object]:
        # DataLoader workers reopen the memory map instead of receiving a pickled copy of it.
        state = dict(self.__dict__)
        if self.cache_path is not None:
            state["_records"] = None
        return state

    def _array(self) -> np.ndarray:
        if self._records is None:
            assert self.cache_path is not None, "only a cached set drops its records (__getstate__)"
            self._records = np.load(self.cache_path, mmap_mode="r")
        return self._records

    def _load_or_render(self) -> np.ndarray:
        if self.cache_path is None:
            return self._render_into(np.empty(self.num_samples, dtype=record_dtype(self.height, self.width)))
        cached = self._open_cache()
        if cached is not None:
            LOGGER.info("synthetic %s: %d samples loaded from cache %s", self.split, self.num_samples,
                        self.cache_path.resolve())
            return cached
        LOGGER.info("synthetic %s: rendering %d samples of %dx%d into cache %s", self.split, self.num_samples,
                    self.height, self.width, self.cache_path.resolve())
        with atomic_path(self.cache_path) as tmp:
            records = np.lib.format.open_memmap(tmp, mode="w+", dtype=record_dtype(self.height, self.width),
                                                shape=(self.num_samples,))
            _allocate(tmp)
            self._render_into(records)
            records.flush()
            del records
        return np.load(self.cache_path, mmap_mode="r")

    def _open_cache(self) -> Optional[np.ndarray]:
        assert self.cache_path is not None
        if not self.cache_path.is_file():
            return None
        try:
            records = np.load(self.cache_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            LOGGER.warning("synthetic cache %s is unreadable (%s): rendering it again", self.cache_path, exc)
            return None
        if records.dtype != record_dtype(self.height, self.width) or records.shape != (self.num_samples,):
            LOGGER.warning("synthetic cache %s holds %s %s, not %d samples of %dx%d: rendering it again",
                           self.cache_path, records.shape, records.dtype, self.num_samples, self.height, self.width)
            return None
        return records

    def _render_into(self, records: np.ndarray) -> np.ndarray:
        jobs = [(self.seed, self.split, i, self.height, self.width, self.min_depth, self.max_depth, self.rig)
                for i in range(self.num_samples)]
        with tqdm(total=len(jobs), disable=len(jobs) <= PROGRESS_THRESHOLD, unit="sample",
                  desc=f"rendering synthetic {self.split}") as progress:
            done = 0
            try:
                for rgb, depth in self._render_jobs(jobs):
                    records["rgb"][done], records["depth"][done] = rgb, depth
                    done += 1
                    progress.update()
            except concurrent.futures.process.BrokenProcessPool as exc:
                # Worker start-up fails where __main__ cannot be re-imported (``python -``, some
                # notebooks); rendering is deterministic per index, so finish in this process.
                LOGGER.warning("synthetic render workers failed (%s): rendering in this process", exc)
                for rgb, depth in map(_render_job, jobs[done:]):
                    records["rgb"][done], records["depth"][done] = rgb, depth
                    done += 1
                    progress.update()
        return records

    def _render_jobs(self, jobs: List[RenderJob]):
        if self.workers <= 1 or len(jobs) < MIN_SAMPLES_FOR_POOL:
            yield from map(_render_job, jobs)
            return
        # forkserver: forking a parent that holds torch's thread pools can deadlock the children,
        # and the server imports this module (and torch) once instead of once per worker.
        context: multiprocessing.context.BaseContext
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
        else:
            context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context) as pool:
            yield from pool.map(_render_job, jobs, chunksize=8)


def _allocate(path: Path) -> None:
    """Reserve the disk blocks of a memory-mapped file before writing into it.

    The file starts sparse: storing into a page the disk cannot hold is not an OSError but SIGBUS,
    which kills the process (no message, the render workers and the temporary file left behind).
    Reserved up front, a full disk is an ENOSPC here. Where the OS has no posix_fallocate, as before.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
