"""Datasets and loaders built from ``data:`` config (``training.config.DataConfig``).

``split`` names either a configured split (``data.train_split`` / ``data.val_split``, as the
trainer passes them) or a role (``"train"`` / ``"val"``): both select that split's folder name
and its list file (``data.train_list`` / ``data.val_list``). Any other value (e.g. ``"test"``) is
used as the dataset's split name directly, with no list file.
"""
from __future__ import annotations

import difflib
import os
import random
import re
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from edgedepth.errors import ConfigError, DataError, EdgeDepthError
from edgedepth.spec import ModelSpec
from edgedepth.training.data.augment import PreparedDataset, read_field
from edgedepth.training.data.base import DepthDataset
from edgedepth.training.data.diode import DIODE
from edgedepth.training.data.folder import DepthFolder
from edgedepth.training.data.kitti import KITTIDepth
from edgedepth.training.data.nyu import NYUDepthV2

DATASET_NAMES = ("synthetic", "nyu", "kitti", "folder", "diode")


def dataset_name(data_cfg: Any) -> str:
    """``data.dataset``, checked against the known names (with a "did you mean")."""
    name = str(read_field(data_cfg, "dataset", "synthetic"))
    if name not in DATASET_NAMES:
        close = difflib.get_close_matches(name, DATASET_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"data.dataset={name!r} is unknown: expected one of {', '.join(DATASET_NAMES)}{hint}")
    return name


def split_role(data_cfg: Any, split: str) -> Optional[str]:
    """``"train"`` / ``"val"`` when ``split`` is that configured split or that role, else None."""
    roles = ("train", "val")
    for role in roles:
        if split == str(read_field(data_cfg, f"{role}_split", role)):
            return role
    return split if split in roles else None


def split_settings(data_cfg: Any, split: str) -> Tuple[str, Optional[str]]:
    """(dataset split name, list file or None) for ``split`` (see the module docstring)."""
    role = split_role(data_cfg, split)
    if role is None:
        return split, None
    return str(read_field(data_cfg, f"{role}_split", role)), read_field(data_cfg, f"{role}_list", None)


def dataset_root(data_cfg: Any, name: str) -> str:
    """``data.root``, which every file dataset needs, checked to exist."""
    root = read_field(data_cfg, "root", None)
    if not root:
        raise ConfigError(
            f"data.dataset={name} reads files but data.root is not set: set data.root=/path/to/{name} "
            "(in the YAML or as a command-line override)"
        )
    root = os.path.expanduser(str(root))
    if not os.path.exists(root):
        raise DataError(f"data.root {root} does not exist: point data.root at the {name} dataset")
    return root


def _nyu(root: str, split: str, list_file: Optional[str], data_cfg: Any) -> DepthDataset:
    return NYUDepthV2(root, split, list_file, skip_corrupt=_skip(data_cfg))


def _kitti(root: str, split: str, list_file: Optional[str], data_cfg: Any) -> DepthDataset:
    return KITTIDepth(root, split, list_file, skip_corrupt=_skip(data_cfg))


def _folder(root: str, split: str, list_file: Optional[str], data_cfg: Any) -> DepthDataset:
    depth_scale = float(read_field(data_cfg, "depth_scale", 1000.0))
    return DepthFolder(root, split, depth_scale, list_file, skip_corrupt=_skip(data_cfg))


def _diode(root: str, split: str, list_file: Optional[str], data_cfg: Any) -> DepthDataset:
    return DIODE(root, split, list_file, skip_corrupt=_skip(data_cfg))


def _skip(data_cfg: Any) -> bool:
    return bool(read_field(data_cfg, "skip_corrupt", False))


FILE_DATASETS: Dict[str, Callable[[str, str, Optional[str], Any], DepthDataset]] = {
    "nyu": _nyu, "kitti": _kitti, "folder": _folder, "diode": _diode,
}


def build_raw_dataset(data_cfg: Any, split: str) -> Dataset:
    """The raw dataset (numpy samples, original resolution) that ``data_cfg`` describes."""
    name = dataset_name(data_cfg)
    if name == "synthetic":
        # Imported here so the file datasets work without the synthetic generator's dependencies.
        from edgedepth.training.data.synthetic import SyntheticScenes

        return SyntheticScenes.from_config(data_cfg, split_role(data_cfg, split) or split)
    split_name, list_file = split_settings(data_cfg, split)
    return FILE_DATASETS[name](dataset_root(data_cfg, name), split_name, list_file, data_cfg)


def spec_from_data_config(data_cfg: Any) -> ModelSpec:
    """The input/depth part of a ModelSpec from ``data:`` (size, normalisation, depth range)."""
    defaults = ModelSpec(height=32, width=32)
    fields = ("height", "width", "min_depth", "max_depth", "mean", "std")
    return ModelSpec(**{field: read_field(data_cfg, field, getattr(defaults, field)) for field in fields})


def build_dataset(data_cfg: Any, split: str, spec: Optional[ModelSpec] = None, train: Optional[bool] = None,
                  seed: int = 0) -> PreparedDataset:
    """The torch-ready dataset for ``split``: resized to ``spec`` (default: from ``data_cfg``),
    augmented with ``data.augment`` when ``train`` (default: ``split`` is the training split), depth beyond
    the spec's ``max_depth`` masked out."""
    raw = build_raw_dataset(data_cfg, split)
    spec = spec if spec is not None else spec_from_data_config(data_cfg)
    train = split_role(data_cfg, split) == "train" if train is None else bool(train)
    augment = read_field(data_cfg, "augment", None)
    return PreparedDataset(raw, spec, augment=augment, train=train, seed=seed)


def seed_worker(worker_id: int) -> None:
    """Seed NumPy's and Python's global generators from the worker's torch seed (PyTorch recipe).

    PreparedDataset does not need it (it seeds its own generators), but any other code a worker
    runs that uses ``np.random`` would otherwise repeat the same numbers in every forked worker.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_dataloader(dataset: Dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0,
                     seed: int = 0, distributed: bool = False, drop_last: bool = False) -> DataLoader:
    """A DataLoader that is reproducible for a given ``seed`` (shuffle order and worker seeds).

    With ``distributed`` a :class:`DistributedSampler` shards the data (the process group must be
    initialised; the trainer calls ``loader.sampler.set_epoch(epoch)``).
    """
    if batch_size < 1 or num_workers < 0:
        raise ConfigError(
            f"batch_size={batch_size}, num_workers={num_workers}: expected batch_size >= 1, num_workers >= 0"
        )
    sampler: Optional[DistributedSampler] = (
        DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last) if distributed else None
    )
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return WorkerErrorLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=num_workers, worker_init_fn=seed_worker, generator=generator,
        persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(), drop_last=drop_last,
    )


_OS_ERROR_TEXT = re.compile(r"\[Errno (\d+)\] (.*?)(?:: '(.*)')?$")


def unwrap_worker_error(exc: BaseException) -> BaseException:
    """The error a DataLoader worker raised, with its own message.

    torch re-raises a worker's exception in the main process as the same type, but with the
    worker's whole traceback as its message ("Caught DataError in DataLoader worker process 0.
    Original Traceback ..."): here the message is the traceback's last line again. Other
    exceptions are returned unchanged.
    """
    text, kind = str(exc), type(exc)
    if not text.startswith("Caught ") or "\nOriginal Traceback" not in text:
        return exc
    for prefix in (f"\n{kind.__module__}.{kind.__qualname__}: ", f"\n{kind.__qualname__}: "):
        at = text.rfind(prefix)
        if at >= 0:
            return _rebuild(kind, text[at + len(prefix):].strip()) or exc
    return exc


def _rebuild(kind: type, message: str) -> Optional[BaseException]:
    found = _OS_ERROR_TEXT.match(message) if issubclass(kind, OSError) else None
    try:
        return kind(int(found[1]), found[2], *([found[3]] if found[3] else [])) if found else kind(message)
    except Exception:  # an exception type that takes other arguments: keep torch's
        return None


class _UnwrappedWorkerErrors:
    """Iterates a DataLoader iterator, re-raising worker errors with their own message."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator

    def __iter__(self) -> "_UnwrappedWorkerErrors":
        return self

    def __next__(self) -> Any:
        try:
            return next(self._iterator)
        except (EdgeDepthError, OSError) as exc:
            unwrapped = unwrap_worker_error(exc)
            if unwrapped is exc:
                raise
            raise unwrapped from exc

    def __len__(self) -> int:
        return len(self._iterator)  # type: ignore[arg-type]


class WorkerErrorLoader(DataLoader):
    """A DataLoader whose worker errors read as they would without workers: one line (a corrupt
    file is named by the DataError its reader raised, not by 40 lines of worker traceback)."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return _UnwrappedWorkerErrors(super().__iter__())
