"""The calibration set: images from folders, frames from videos, or a training dataset config.

Every image goes through the one preprocessing (:func:`edgedepth.preprocess.preprocess`) with the
model's own :class:`~edgedepth.spec.ModelSpec`, so calibration sees exactly what the runtime feeds
the network. Images are picked at evenly spaced positions, spread evenly across several sources,
so a calibration set of 500 covers a 20 000-frame recording from start to end instead of its
first 20 seconds (the readers are the core's :mod:`edgedepth.media`). The images not picked for
calibration supply the held-out set that checks the INT8 graph, unless a separate ``--eval-data``
source is given.

A preprocessed set can be saved (``.npy`` plus a ``.npy.json`` sidecar holding the preprocessing
key, :meth:`~edgedepth.spec.ModelSpec.preprocessing_key`) and reused; a set made for another input
size, normalisation or colour order is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from edgedepth.calib.errors import CalibrationError
from edgedepth.errors import EdgeDepthError
from edgedepth.io import atomic_path, sha256_file, write_json_atomic
from edgedepth.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ImageSource, evenly_spaced, open_media
from edgedepth.preprocess import preprocess
from edgedepth.spec import ModelSpec

CONFIG_EXTENSIONS = (".yaml", ".yml")
#: Below this many calibration images the activation ranges are a guess: warn.
MIN_CALIBRATION_IMAGES = 32
DEFAULT_NUM_IMAGES = 500
DEFAULT_NUM_EVAL = 50
#: Without ``--eval-data`` at most this share of a small source is held out for the check.
HELD_OUT_SHARE = 0.2
SET_FORMAT = "edgedepth.calibration_set/1"
PathLike = Union[str, Path]


def describe_preprocessing(fields: Dict[str, object]) -> str:
    """``96x128 RGB mean [..] std [..]`` (from :meth:`ModelSpec.preprocessing_fields`) for messages."""
    return f"{fields['height']}x{fields['width']} {fields['color_order']} mean {fields['mean']} std {fields['std']}"


# ---------------------------------------------------------------------------------------------
# Even sampling over several sources
# ---------------------------------------------------------------------------------------------


def allocate(sizes: Sequence[int], total: int) -> List[int]:
    """Split ``total`` picks over sources of ``sizes`` as evenly as their sizes allow.

    Water-filling: every source gets an equal share; what a small source cannot give goes to the
    others. The result never exceeds a source's size nor ``total``.
    """
    quotas = [0] * len(sizes)
    remaining = min(total, sum(sizes))
    while remaining > 0:
        open_sources = [i for i, size in enumerate(sizes) if quotas[i] < size]
        share = max(1, remaining // len(open_sources))
        for index in open_sources:
            take = min(share, sizes[index] - quotas[index], remaining)
            quotas[index] += take
            remaining -= take
            if remaining == 0:
                break
    return quotas


def calibration_batches(data: np.ndarray, batch_size: int) -> List[np.ndarray]:
    """Contiguous float32 batches of ``batch_size`` images; a last partial batch is dropped
    (static-shape graphs and TensorRT calibrators take full batches only)."""
    if batch_size < 1:
        raise CalibrationError(f"batch size {batch_size} is invalid: use 1 or more")
    count = len(data) // batch_size
    return [np.ascontiguousarray(data[i * batch_size:(i + 1) * batch_size], dtype=np.float32) for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Sources: the core's image and video readers, and a training dataset config
# ---------------------------------------------------------------------------------------------


class DatasetSource(ImageSource):
    """The RGB images of one split of a training config's ``data:`` section."""

    input_order = "RGB"

    def __init__(self, config: str, split: str) -> None:
        try:
            from edgedepth.training.config import load_config
            from edgedepth.training.data import build_raw_dataset
        except ImportError as exc:
            raise CalibrationError(
                f"calibrating from the dataset config {config!r} needs the training extras ({exc}): "
                "`pip install edgedepth[train]`, or pass a folder of images or a video instead"
            ) from exc
        cfg = load_config(config)
        self.dataset = build_raw_dataset(cfg.data, split)
        self.description = f"config {config} data.dataset={cfg.data.dataset} split {split} ({len(self.dataset)} images)"

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, indices: Sequence[int]) -> Iterator[Tuple[str, np.ndarray]]:
        for index in sorted(indices):
            sample = self.dataset[index]
            yield str(sample["name"]), sample["rgb"]


def _is_config_name(text: str) -> bool:
    try:
        from edgedepth.training.config import resolve_config_path
    except ImportError:
        return False
    try:
        resolve_config_path(text)
    except EdgeDepthError:
        return False
    return True


def open_calibration_source(source: str, split: str = "val") -> ImageSource:
    """A folder or image file, a video file, or a dataset config (YAML path or shipped name)."""
    media = open_media(source)
    if media is not None:
        return media
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        raise CalibrationError(f"--data {source} is a saved calibration set: pass it with --load-set instead")
    if (path.is_file() and suffix in CONFIG_EXTENSIONS) or (not path.exists() and _is_config_name(source)):
        return DatasetSource(source, split)
    raise CalibrationError(
        f"calibration source {source!r} is neither a folder of images, an image, a video "
        f"({', '.join(VIDEO_EXTENSIONS)}) nor a dataset config (YAML or a shipped name such as 'demo'); "
        "check the path"
    )


# ---------------------------------------------------------------------------------------------
# The calibration set
# ---------------------------------------------------------------------------------------------


@dataclass
class CalibrationSet:
    """Preprocessed network inputs: the calibration images and the held-out images that check them."""

    calibration: np.ndarray  # N x 3 x H x W float32
    held_out: np.ndarray  # M x 3 x H x W float32 (M may be 0 when --eval-data supplies them)
    preprocess_hash: str
    calibration_names: List[str] = field(default_factory=list)
    held_out_names: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
    held_out_sources: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def summary(self) -> Dict[str, object]:
        """What the report says about the images."""
        return {
            "calibration_images": int(len(self.calibration)),
            "held_out_images": int(len(self.held_out)),
            "sources": list(self.sources),
            "held_out_sources": list(self.held_out_sources or self.sources),
            "preprocess_hash": self.preprocess_hash,
        }


def _preprocess_into(
    source: ImageSource, indices: Sequence[int], spec: ModelSpec, progress: Optional[tqdm]
) -> Tuple[List[np.ndarray], List[str]]:
    arrays, names = [], []
    for name, image in source.read(indices):
        arrays.append(preprocess(image, spec, source.input_order))
        names.append(name)
        if progress is not None:
            progress.update(1)
    return arrays, names


def _stack(arrays: List[np.ndarray], spec: ModelSpec) -> np.ndarray:
    if not arrays:
        return np.zeros((0, 3, spec.height, spec.width), dtype=np.float32)
    return np.concatenate(arrays, axis=0)


def _held_out_count(available: int, num_images: int, num_eval: int) -> int:
    """How many images of the calibration sources to hold out for the check."""
    if available >= num_images + num_eval:
        return num_eval
    return max(1, min(num_eval, int(available * HELD_OUT_SHARE)))


def _plan(sizes: Sequence[int], num_images: int, num_eval: int) -> List[Tuple[List[int], List[int]]]:
    """Per source ``(calibration indices, held-out indices)``, interleaved and evenly spread."""
    picks = allocate(sizes, num_images + num_eval)
    eval_quotas = allocate(picks, num_eval)
    plan = []
    for size, pick, eval_quota in zip(sizes, picks, eval_quotas):
        chosen = evenly_spaced(size, pick)
        eval_positions = set(evenly_spaced(len(chosen), eval_quota))
        held = [chosen[p] for p in sorted(eval_positions)]
        plan.append(([c for p, c in enumerate(chosen) if p not in eval_positions], held))
    return plan


def _open_all(sources: Sequence[str], split: str) -> List[ImageSource]:
    opened = [open_calibration_source(source, split) for source in sources]
    if not opened or sum(len(s) for s in opened) == 0:
        listed = "; ".join(s.description for s in opened) or "no source given"
        raise CalibrationError(
            f"found no calibration images ({listed}): pass --data with a folder of images "
            f"({', '.join(IMAGE_EXTENSIONS)}), a video or a dataset config"
        )
    return opened


def _read_all(
    opened: Sequence[ImageSource], plan: Sequence[Tuple[List[int], List[int]]], spec: ModelSpec, desc: str
) -> Tuple[List[np.ndarray], List[str], List[np.ndarray], List[str]]:
    total = sum(len(cal) + len(held) for cal, held in plan)
    cal_arrays, cal_names, held_arrays, held_names = [], [], [], []
    with tqdm(total=total, desc=desc, unit="img", leave=False) as progress:
        for source, (cal, held) in zip(opened, plan):
            arrays, names = _preprocess_into(source, cal, spec, progress)
            cal_arrays += arrays
            cal_names += names
            arrays, names = _preprocess_into(source, held, spec, progress)
            held_arrays += arrays
            held_names += names
    return cal_arrays, cal_names, held_arrays, held_names


def _skip_warnings(opened: Sequence[ImageSource]) -> List[str]:
    notes = []
    for source in opened:
        skipped = getattr(source, "skipped", [])
        if skipped:
            listed = ", ".join(skipped[:3])
            notes.append(f"skipped {len(skipped)} unreadable image(s) in {source.description}: {listed}")
    return notes


def build_calibration_set(
    spec: ModelSpec,
    sources: Sequence[str],
    num_images: int = DEFAULT_NUM_IMAGES,
    num_eval: int = DEFAULT_NUM_EVAL,
    eval_sources: Optional[Sequence[str]] = None,
    split: str = "val",
) -> CalibrationSet:
    """Read, sample and preprocess calibration images (and held-out images) for ``spec``.

    Without ``eval_sources`` the held-out images are interleaved picks of ``sources`` that the
    calibration does not see (``num_eval``, or a fifth of a small source); ``num_eval=0`` holds
    none out (a TensorRT calibrator needs no check set). Raises CalibrationError when no image is
    found.
    """
    if num_images < 1 or num_eval < 0:
        raise CalibrationError(f"--num-images {num_images} / --num-eval {num_eval}: expected >= 1 and >= 0")
    opened = _open_all(sources, split)
    sizes = [len(source) for source in opened]
    hold_out = 0 if eval_sources or num_eval == 0 else _held_out_count(sum(sizes), num_images, num_eval)
    if hold_out and sum(sizes) < 2:
        raise CalibrationError(
            "only 1 image found: it cannot both calibrate and check the INT8 graph; add images or pass --eval-data"
        )
    plan = _plan(sizes, min(num_images, sum(sizes) - hold_out), hold_out)
    cal, cal_names, held, held_names = _read_all(opened, plan, spec, "reading calibration images")
    result = CalibrationSet(_stack(cal, spec), _stack(held, spec), spec.preprocessing_key(), cal_names, held_names,
                            [s.description for s in opened])
    result.warnings += _skip_warnings(opened)
    if eval_sources:
        attach_held_out(result, spec, eval_sources, num_eval or DEFAULT_NUM_EVAL, split)
    check_counts(result, need_held_out=num_eval > 0 or bool(eval_sources))
    return result


def attach_held_out(cset: CalibrationSet, spec: ModelSpec, eval_sources: Sequence[str], num_eval: int,
                    split: str = "val") -> None:
    """Replace the held-out images of ``cset`` with ``num_eval`` images of ``eval_sources``."""
    opened = _open_all(eval_sources, split)
    quotas = allocate([len(source) for source in opened], num_eval)
    plan: List[Tuple[List[int], List[int]]] = [
        (evenly_spaced(len(source), quota), []) for source, quota in zip(opened, quotas)
    ]
    held, names, _, _ = _read_all(opened, plan, spec, "reading held-out images")
    cset.held_out, cset.held_out_names = _stack(held, spec), names
    cset.held_out_sources = [s.description for s in opened]
    cset.warnings += _skip_warnings(opened)


def check_counts(cset: CalibrationSet, need_held_out: bool = True) -> None:
    """Raise when nothing was read; note (in ``cset.warnings``) when the counts are too small."""
    if len(cset.calibration) == 0:
        raise CalibrationError(
            f"no calibration image could be read from {'; '.join(cset.sources)}: the files are unreadable or the "
            "video is empty"
        )
    if len(cset.calibration) < MIN_CALIBRATION_IMAGES:
        cset.warnings.append(
            f"only {len(cset.calibration)} calibration images (fewer than {MIN_CALIBRATION_IMAGES}): activation ranges "
            "may not cover what the camera will see; use a few hundred images from the deployment scene"
        )
    if not need_held_out:
        return
    if len(cset.held_out) == 0:
        raise CalibrationError(
            "no held-out image to check the INT8 graph against FP32: pass --eval-data or more images"
        )
    if len(cset.held_out) < 8:
        cset.warnings.append(f"only {len(cset.held_out)} held-out images: the accuracy check is weak; pass --eval-data")


# ---------------------------------------------------------------------------------------------
# Saving and loading a preprocessed set
# ---------------------------------------------------------------------------------------------


def set_sidecar_path(path: PathLike) -> Path:
    """``calib.npy`` -> ``calib.npy.json``: the key and names that travel with the array."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def save_calibration_set(path: PathLike, cset: CalibrationSet, spec: ModelSpec) -> None:
    """Write the set as one ``.npy`` (calibration images first) plus its JSON sidecar, atomically."""
    array = np.concatenate([cset.calibration, cset.held_out], axis=0).astype(np.float32, copy=False)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
    sidecar = {
        "format": SET_FORMAT,
        "preprocess_hash": cset.preprocess_hash,
        "preprocessing": spec.preprocessing_fields(),
        "shape": list(array.shape),
        "num_calibration": int(len(cset.calibration)),
        "array_sha256": sha256_file(path),
        "sources": cset.sources,
        "held_out_sources": cset.held_out_sources,
        "calibration_names": cset.calibration_names,
        "held_out_names": cset.held_out_names,
    }
    write_json_atomic(set_sidecar_path(path), sidecar)


def _read_set_sidecar(path: Path) -> Dict[str, Any]:
    sidecar_path = set_sidecar_path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration set {path} does not exist: create it with --data SOURCE --save-set {path}")
    if not sidecar_path.is_file():
        raise CalibrationError(
            f"calibration set {path} has no {sidecar_path.name} beside it, so its preprocessing is unknown: "
            "recreate it with --save-set"
        )
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{sidecar_path} is not valid JSON ({exc}); recreate the set with --save-set") from exc
    if sidecar.get("format") != SET_FORMAT:
        raise CalibrationError(f"{sidecar_path} has format {sidecar.get('format')!r}, expected {SET_FORMAT!r}")
    return sidecar


def load_calibration_set(path: PathLike, spec: ModelSpec) -> CalibrationSet:
    """Load a set written by :func:`save_calibration_set`, refusing one made for other preprocessing."""
    path = Path(path)
    sidecar = _read_set_sidecar(path)
    expected = spec.preprocessing_key()
    if sidecar["preprocess_hash"] != expected:
        raise CalibrationError(
            f"calibration set {path} was preprocessed for {describe_preprocessing(sidecar['preprocessing'])}, but "
            f"this model takes {describe_preprocessing(spec.preprocessing_fields())}: rebuild it with "
            "--data SOURCE --save-set"
        )
    if sha256_file(path) != sidecar["array_sha256"]:
        raise CalibrationError(
            f"{path} does not match its {set_sidecar_path(path).name} (changed after saving): recreate it"
        )
    array = np.load(path, allow_pickle=False)
    count = int(sidecar["num_calibration"])
    result = CalibrationSet(
        np.ascontiguousarray(array[:count]), np.ascontiguousarray(array[count:]), expected,
        list(sidecar.get("calibration_names", [])), list(sidecar.get("held_out_names", [])),
        list(sidecar.get("sources", [])), list(sidecar.get("held_out_sources", [])),
    )
    return result
