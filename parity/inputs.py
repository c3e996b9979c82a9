"""The images parity runs on: a built-in structured set, a folder/glob/video, or a dataset with depth.

Every image is a uint8 HxWx3 frame plus the channel order it comes in (OpenCV files and the
built-in set: BGR, as a camera gives; datasets: RGB). Each model preprocesses it with the one
preprocessing and its own spec. Sources are sampled at evenly spaced positions, so ``--max-images
32`` covers a whole recording, not its first second.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from edgedepth import probes
from edgedepth.errors import EdgeDepthError
from edgedepth.media import VIDEO_EXTENSIONS, GlobSource, ImageSource, evenly_spaced, open_media
from edgedepth.parity.artifacts import ParityUsageError
from edgedepth.preprocess import import_cv2
from edgedepth.spec import ModelSpec

DEFAULT_MAX_IMAGES = 32
INPUT_GROUPS = ("scene", "stress")
#: Seeds of the procedural rooms in the built-in set (fixed: the set must be the same everywhere).
BUILTIN_SCENE_SEEDS = (101, 202, 303, 404)


@dataclass
class ParityInput:
    """One image to run every model on; ``depth``/``mask`` (HxW at the model size) with ground truth.

    ``group`` is "scene" for camera-like frames and "stress" for the built-in set's synthetic
    patterns (a budget may leave those out: see ``judged_inputs`` in :mod:`.budgets`).
    """

    name: str
    image: np.ndarray
    input_order: str = "BGR"
    depth: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    group: str = "scene"


@dataclass
class InputSet:
    """A described, re-iterable collection of :class:`ParityInput`."""

    description: str
    kind: str  # "built-in", "images" or "dataset"
    count: int
    factory: Callable[[], Iterator[ParityInput]]
    has_ground_truth: bool = False
    #: With ground truth: how task metrics are computed (crop, alignment, split, config).
    details: Dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[ParityInput]:
        return self.factory()

    def to_dict(self) -> Dict[str, Any]:
        return {"description": self.description, "kind": self.kind, "count": self.count,
                "ground_truth": self.has_ground_truth, **self.details}


# --------------------------------------------------------------------------- built-in set


def edges_image(height: int, width: int) -> np.ndarray:
    """White shapes on black: straight, diagonal, curved and one-pixel edges at full contrast."""
    cv2 = import_cv2()
    image = np.zeros((height, width, 3), np.uint8)
    white = (255, 255, 255)
    cv2.rectangle(image, (width // 16, height // 8), (width // 3, height * 7 // 8), white, -1)
    cv2.line(image, (width // 3, height - 1), (width * 2 // 3, 0), white, max(1, width // 48))
    cv2.circle(image, (width * 3 // 4, height // 2), max(2, min(height, width) // 5), white, max(1, width // 64))
    for column in range(width * 7 // 8, width, 3):
        image[:, column] = 255
    return image


def noise_image(height: int, width: int, seed: int = 7) -> np.ndarray:
    """Uniform per-pixel, per-channel noise."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _scene_images(height: int, width: int) -> Dict[str, np.ndarray]:
    from edgedepth.training.data.render import render_scene

    scenes = {}
    for index, seed in enumerate(BUILTIN_SCENE_SEEDS):
        rgb, _, _ = render_scene(seed, height, width)
        scenes[f"room_{index}"] = np.ascontiguousarray(rgb[:, :, ::-1])  # the set is uniformly BGR
    return scenes


def builtin_images(height: int, width: int) -> Dict[str, Tuple[str, np.ndarray]]:
    """The deterministic built-in set at ``height`` x ``width``: name -> (group, uint8 BGR image).

    Scenes: rendered rooms (what the model was trained on) and a box-and-disc scene. Stress:
    smooth gradients, checkerboards, hard edges, saturated white and black frames,
    salt-and-pepper and noise, the extremes where reduced precision breaks first.
    """
    scenes = _scene_images(height, width)
    scenes["shapes"] = probes.scene_image(height, width, np.random.default_rng(11))
    images: Dict[str, np.ndarray] = {}
    images["gradient"] = probes.gradient_image(height, width)
    images["checkerboard_8"] = probes.checkerboard_image(height, width, square=8)
    images["checkerboard_32"] = probes.checkerboard_image(height, width, square=32)
    images["edges"] = edges_image(height, width)
    images["saturated_white"] = np.full((height, width, 3), 255, np.uint8)
    images["saturated_black"] = np.zeros((height, width, 3), np.uint8)
    images["salt_pepper"] = probes.high_contrast_image(height, width, np.random.default_rng(13))
    images["noise"] = noise_image(height, width)
    return {**{name: ("scene", image) for name, image in scenes.items()},
            **{name: ("stress", image) for name, image in images.items()}}


def builtin_inputs(spec: ModelSpec) -> InputSet:
    """The built-in set at the reference spec's size."""
    images = builtin_images(spec.height, spec.width)
    scenes = sum(group == "scene" for group, _ in images.values())
    return InputSet(
        f"built-in set of {len(images)} images: {scenes} scenes (rendered rooms, shapes) and {len(images) - scenes} "
        "stress patterns (gradient, checkerboards, edges, saturated, salt-and-pepper, noise)",
        "built-in",
        len(images),
        lambda: (ParityInput(name, image, "BGR", group=group) for name, (group, image) in images.items()),
    )


# --------------------------------------------------------------------------- files


def _file_source(source: str) -> ImageSource:
    try:
        media = open_media(source)
    except EdgeDepthError as exc:  # e.g. a video OpenCV cannot decode: a file the command line names
        raise ParityUsageError(f"--images {source!r}: {exc}") from exc
    if media is not None:
        return media
    if glob.has_magic(source):
        return GlobSource(source)
    raise ParityUsageError(
        f"--images {source!r} is neither a folder, an image, a video ({', '.join(VIDEO_EXTENSIONS)}) nor a glob "
        "matching images; check the path (datasets with depth go to --gt-data)"
    )


def _display_name(name: str, source: str) -> str:
    """Folder images by their path inside the folder (unique), others by file name; video frames as given."""
    if "#" in name:  # "clip.mp4#frame12"
        return name
    return os.path.relpath(name, source) if Path(source).is_dir() else Path(name).name


def image_inputs(source: str, max_images: int = DEFAULT_MAX_IMAGES) -> InputSet:
    """Up to ``max_images`` evenly spaced images of a folder, glob, image file or video (BGR)."""
    opened = _file_source(source)
    if len(opened) == 0:
        raise ParityUsageError(f"--images {source!r}: {opened.description} holds no readable image")
    indices = evenly_spaced(len(opened), max_images)

    def items() -> Iterator[ParityInput]:
        try:
            for name, image in opened.read(indices):
                yield ParityInput(_display_name(name, source), image, opened.input_order)
        except EdgeDepthError as exc:
            raise ParityUsageError(f"--images {source!r}: {exc}") from exc

    return InputSet(f"{opened.description}, {len(indices)} used", "images", len(indices), items)


# --------------------------------------------------------------------------- dataset with ground truth


def _dataset_config(config: str, checkpoint: str) -> Any:
    from edgedepth.training.checkpoint import read_checkpoint
    from edgedepth.training.config import load_config

    # As depth-eval does: the checkpoint's own config is the base, the given config goes on top.
    stored = read_checkpoint(checkpoint).get("config") or None
    return load_config(config, base=stored)


def dataset_inputs(config: str, checkpoint: str, spec: ModelSpec, split: Optional[str] = None,
                   max_images: int = DEFAULT_MAX_IMAGES) -> InputSet:
    """Evenly spaced samples (RGB + depth) of a dataset config's split, resized to the reference size
    exactly as ``depth-eval`` prepares them; task metrics use the config's ``eval.crop``/``alignment``."""
    try:
        from edgedepth.training.data import build_dataset
        from edgedepth.training.evaluate import evaluation_split

        cfg = _dataset_config(config, checkpoint)
        split = evaluation_split(cfg, split)
        dataset = build_dataset(cfg.data, split, spec=spec, train=False)
    except ImportError as exc:
        raise ParityUsageError(f"--gt-data needs the training extras ({exc}): `pip install edgedepth[train]`") from exc
    except EdgeDepthError as exc:
        raise ParityUsageError(f"--gt-data {config}: {exc}") from exc
    if len(dataset) == 0:
        raise ParityUsageError(f"--gt-data {config}: split {split!r} holds no samples")
    indices = evenly_spaced(len(dataset), max_images)
    details = {"config": str(config), "dataset": str(cfg.data.dataset), "split": split,
               "crop": str(cfg.eval.crop), "alignment": str(cfg.eval.alignment)}
    return InputSet(
        f"dataset {cfg.data.dataset} ({config}) split {split}: {len(indices)} of {len(dataset)} samples",
        "dataset", len(indices), lambda: _dataset_items(dataset, indices), True, details,
    )


def _dataset_items(dataset: Any, indices: List[int]) -> Iterator[ParityInput]:
    for index in indices:
        sample = dataset[index]
        rgb = sample["image"].numpy().transpose(1, 2, 0)
        name = str(sample.get("name") or f"sample_{index:06d}")
        yield ParityInput(name, np.ascontiguousarray(rgb), "RGB", sample["depth"].numpy()[0], sample["mask"].numpy()[0])
