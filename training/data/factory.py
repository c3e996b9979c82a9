"""Datasets and loaders built from ``data:`` config (``training.config.DataConfig``).

Three roles, each also reachable by its configured name (``data.train_split`` / ``data.val_split``
/ ``data.test_split``):

* ``train``: the dataset's training split (``data.train_list`` overrides it), less the held-out part;
* ``val``: what selects ``best.pt``. With ``data.val_split=val`` and no ``data.val_list``, it is
  carved from the training split (:func:`edgedepth.training.data.holdout.holdout_indices`: a
  seeded ``data.holdout_fraction`` of whole scenes/drives, disjoint from what is trained on); the
  synthetic set has its own val rooms. Another ``data.val_split`` names a dataset split, never the
  test split;
* ``test``: the dataset's official test split (``data.test_list`` overrides it), read only by
  ``depth-eval --split test``.

Any other value (e.g. ``"all"``) is used as the dataset's split name directly, with no list file.
"""
from __future__ import annotations

import difflib
import itertools
import os
import random
import re
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from torch.utils.data.distributed import DistributedSampler

from edgedepth.errors import ConfigError, DataError, EdgeDepthError
from edgedepth.spec import ModelSpec
from edgedepth.training.data.augment import PreparedDataset, read_field
from edgedepth.training.data.base import DepthDataset
from edgedepth.training.data.diode import DIODE
from edgedepth.training.data.folder import DepthFolder
from edgedepth.training.data.holdout import holdout_indices
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


ROLES = ("train", "val", "test")
#: ``data.val_split`` value meaning "held out of the training split".
HOLDOUT = "val"


def split_role(data_cfg: Any, split: str) -> Optional[str]:
    """``"train"`` / ``"val"`` / ``"test"`` when ``split`` is that role or its configured split, else None."""
    for role in ROLES:
        if split == role or split == str(read_field(data_cfg, f"{role}_split", role)):
            return role
    return None


def split_settings(data_cfg: Any, split: str) -> Tuple[str, Optional[str]]:
    """(dataset split name, list file or None) for ``split`` (see the module docstring)."""
    role = split_role(data_cfg, split)
    if role is None:
        return split, None
    return str(read_field(data_cfg, f"{role}_split", role)), read_field(data_cfg, f"{role}_list", None)


def uses_holdout(data_cfg: Any) -> bool:
    """True when validation is carved from the training split (the default for file datasets)."""
    return (dataset_name(data_cfg) != "synthetic" and str(read_field(data_cfg, "val_split", HOLDOUT)) == HOLDOUT
            and not read_field(data_cfg, "val_list", None))


def check_validation_is_not_test(data_cfg: Any) -> None:
    """Refuse a configuration whose validation (which picks ``best.pt``) would read the test split."""
    val_split, test_split = (str(read_field(data_cfg, f"{role}_split", role)) for role in ("val", "test"))
    val_list, test_list = (read_field(data_cfg, f"{role}_list", None) for role in ("val", "test"))
    same_list = bool(val_list) and bool(test_list) and os.path.abspath(str(val_list)) == os.path.abspath(str(test_list))
    if (val_split == test_split and not val_list) or same_list:
        raise ConfigError(
            f"data.val_split={val_split!r} / data.val_list={val_list!r} is the test split: best.pt would be chosen "
            f"on test data; keep data.val_split=val (a held-out part of the training split) or name another split"
        )


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


def _nyu(root: str, split: str, list_file: Optional[str], data_cfg: Any, training: bool) -> DepthDataset:
    # The border crop is for training only: evaluation keeps the whole frame and applies eval.crop.
    border_crop = training and bool(read_field(data_cfg, "border_crop", True))
    return NYUDepthV2(root, split, list_file, skip_corrupt=_skip(data_cfg), border_crop=border_crop)


def _kitti(root: str, split: str, list_file: Optional[str], data_cfg: Any, training: bool) -> DepthDataset:
    gt_root = read_field(data_cfg, "gt_root", None)
    gt_root = os.path.expanduser(str(gt_root)) if gt_root else None
    if gt_root and not os.path.isdir(gt_root):
        raise DataError(f"data.gt_root {gt_root} does not exist or is not a directory: point it at the folder the "
                        "ground-truth paths of the file list are relative to (BTS: data_depth_annotated, merged)")
    return KITTIDepth(root, split, list_file, skip_corrupt=_skip(data_cfg), gt_root=gt_root)


def _folder(root: str, split: str, list_file: Optional[str], data_cfg: Any, training: bool) -> DepthDataset:
    depth_scale = float(read_field(data_cfg, "depth_scale", 1000.0))
    return DepthFolder(root, split, depth_scale, list_file, skip_corrupt=_skip(data_cfg))


def _diode(root: str, split: str, list_file: Optional[str], data_cfg: Any, training: bool) -> DepthDataset:
    return DIODE(root, split, list_file, skip_corrupt=_skip(data_cfg))


def _skip(data_cfg: Any) -> bool:
    return bool(read_field(data_cfg, "skip_corrupt", False))


#: name -> reader(root, dataset split name, list file, data config, training role).
FILE_DATASETS: Dict[str, Callable[[str, str, Optional[str], Any, bool], DepthDataset]] = {
    "nyu": _nyu, "kitti": _kitti, "folder": _folder, "diode": _diode,
}


def build_raw_dataset(data_cfg: Any, split: str) -> Dataset:
    """The raw dataset (numpy samples, original resolution) that ``data_cfg`` describes for
    ``split`` (a role or a split name, see the module docstring)."""
    name = dataset_name(data_cfg)
    role = split_role(data_cfg, split)
    if role == "val":
        check_validation_is_not_test(data_cfg)
    if name == "synthetic":
        # Imported here so the file datasets work without the synthetic generator's dependencies.
        from edgedepth.training.data.synthetic import SyntheticScenes

        return SyntheticScenes.from_config(data_cfg, role or split)
    if role in ("train", "val") and uses_holdout(data_cfg):
        train_name, train_list = split_settings(data_cfg, "train")
        full = FILE_DATASETS[name](dataset_root(data_cfg, name), train_name, train_list, data_cfg, role == "train")
        kept, held_out = holdout_indices(
            [full.group_of(index) for index in range(len(full))],
            float(read_field(data_cfg, "holdout_fraction", 0.05)), int(read_field(data_cfg, "holdout_seed", 0)),
        )
        return Subset(full, held_out if role == "val" else kept)
    split_name, list_file = split_settings(data_cfg, split)
    return FILE_DATASETS[name](dataset_root(data_cfg, name), split_name, list_file, data_cfg, role == "train")


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


class EpochSampler(DistributedSampler):
    """This rank's share of an epoch, as ``(index, epoch)`` pairs, resumable in the middle of one.

    The order is a pure function of ``(seed, epoch)`` (torch's DistributedSampler recipe, also
    with one process), and the epoch travels with each index so the dataset draws its
    augmentation from ``(seed, epoch, index)`` (:class:`PreparedDataset`), in whichever worker.
    ``set_epoch(epoch, skip)`` leaves out the first ``skip`` samples: what a killed run had
    already trained on in that epoch.
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = True,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = int(skip)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        for index in itertools.islice(super().__iter__(), self.skip, None):
            yield int(index), self.epoch

    def __len__(self) -> int:
        return max(0, super().__len__() - self.skip)


def collate_samples(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """torch's default collate, except the ground truth at its own resolution (``gt_*``), which
    stays a list: KITTI frames differ in size (375x1242, 370x1224, ...)."""
    own_size = [key for key in samples[0] if key.startswith("gt_")]
    batch = default_collate([{k: v for k, v in sample.items() if k not in own_size} for sample in samples])
    for key in own_size:
        batch[key] = [sample[key] for sample in samples]
    return batch


def build_dataloader(dataset: Dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0,
                     seed: int = 0, distributed: bool = False, drop_last: bool = False,
                     shard: Optional[Tuple[int, int]] = None) -> DataLoader:
    """A DataLoader that is reproducible for a given ``seed`` (shuffle order, augmentation, worker seeds).

    ``shuffle`` or ``distributed``: an :class:`EpochSampler` (the process group's rank and world
    size when ``distributed``; the trainer calls ``loader.sampler.set_epoch(epoch, skip)``).
    ``shard=(rank, world_size)``: in order, every ``world_size``-th sample from ``rank`` (sharded
    evaluation: no sample twice, none left out).
    """
    if batch_size < 1 or num_workers < 0:
        raise ConfigError(
            f"batch_size={batch_size}, num_workers={num_workers}: expected batch_size >= 1, num_workers >= 0"
        )
    sampler: Optional[Iterable[Any]] = None
    if shuffle or distributed:
        replicas: Dict[str, int] = {} if distributed else {"num_replicas": 1, "rank": 0}
        sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, **replicas)
    elif shard is not None:
        rank, world_size = shard
        sampler = range(rank, len(dataset), world_size)  # type: ignore[arg-type]
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return WorkerErrorLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, worker_init_fn=seed_worker,
        generator=generator, persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(),
        drop_last=drop_last, collate_fn=collate_samples,
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
