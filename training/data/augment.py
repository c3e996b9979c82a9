"""Raw RGB-D samples -> torch-ready training samples, with metric-consistent augmentation.

:class:`PreparedDataset` wraps a raw dataset (see ``base.py``) and yields
``{"image": uint8 3xHxW RGB, "depth": float32 1xHxW metres, "mask": bool 1xHxW, "name": str}``.
Images stay uint8 (4x less to copy to the device); :func:`normalize_torch` normalises them there,
and a test proves it equals the one numpy :func:`edgedepth.preprocess.preprocess`.

Geometry: RGB is resized to the model size with the shared
:func:`edgedepth.preprocess.resize_to_spec` — a plain resize, no aspect-preserving crop, exactly
what the runtime does to a camera frame. Depth and mask use nearest neighbour: interpolating
across an object boundary invents depths that exist nowhere in the scene (a "flying pixel"
halfway between foreground and wall), and interpolating next to a missing (0) pixel drags valid
depths towards 0.

Scale augmentation convention: a random ``s`` in ``[scale_min, scale_max]`` magnifies the image
by ``s`` (a crop of 1/s of the frame, resized to the model size) and divides the depth by ``s``.
Magnifying by ``s`` is what the same camera sees from ``s`` times closer (under a pinhole camera,
image size is proportional to focal / depth), so ``depth / s`` keeps every pixel's depth consistent
with the apparent size of what it shows and the network can keep using apparent size as a metric
cue. The alternative (keeping depth unchanged, i.e. simulating a longer focal length) teaches
the network that the same object size means different distances, which a fixed-intrinsics metric
model must not learn. ``s >= 1`` only: zooming out would need padding with invented pixels.

Randomness: the trainer's loader (:class:`edgedepth.training.data.factory.EpochSampler`) asks for
``(index, epoch)``, and that sample draws from ``numpy.random.default_rng([seed, EPOCH_STREAM, epoch,
index])``: a pure function of the run's seed, the epoch and the index, whatever the worker, the
rank or how often the process was restarted, so a resumed run augments exactly as the
uninterrupted one would have. A plain integer index draws from ``numpy.random.default_rng([seed,
torch.initial_seed(), index, visit])``. ``torch.initial_seed()`` differs per DataLoader worker and per epoch (the
loader draws a new base seed per epoch unless workers are persistent), ``visit`` counts how often
this process has served ``index`` (the epoch, for persistent workers and ``num_workers=0``), so
runs are reproducible once the trainer calls ``torch.manual_seed`` and no two epochs repeat.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from edgedepth.errors import ConfigError, EdgeDepthError
from edgedepth.preprocess import import_cv2, normalization_constants, resize_to_spec
from edgedepth.spec import ModelSpec

#: Marks the ``[seed, EPOCH_STREAM, epoch, index]`` generator keys apart from the ``[seed, torch seed, index,
#: visit]`` ones, so the two kinds of draw never share a stream.
EPOCH_STREAM = 0x45504F43

#: ITU-R BT.601 luma weights, as used by torchvision's grayscale/saturation/contrast jitter.
LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def read_field(config: Any, name: str, default: Any) -> Any:
    """``config.name`` for dataclasses / OmegaConf nodes, ``config[name]`` for dicts, else default."""
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


class AugmentParams:
    """Validated augmentation settings (from ``training.config.AugmentConfig`` or a dict)."""

    def __init__(self, hflip: bool = True, color_jitter: float = 0.2, scale_min: float = 1.0,
                 scale_max: float = 1.0) -> None:
        # 1.0 is allowed, as the config's range says: factors in [0, 2] (torchvision's brightness=1).
        if not 0.0 <= color_jitter <= 1.0:
            raise ConfigError(f"data.augment.color_jitter={color_jitter} is out of range: expected 0 <= value <= 1")
        if not 1.0 <= scale_min <= scale_max:
            raise ConfigError(
                f"data.augment.scale_min={scale_min}, scale_max={scale_max} are invalid: expected "
                "1 <= scale_min <= scale_max (scale-up then crop; use 1.0 and 1.0 to disable)"
            )
        self.hflip, self.color_jitter = bool(hflip), float(color_jitter)
        self.scale_min, self.scale_max = float(scale_min), float(scale_max)

    @classmethod
    def from_config(cls, config: Any) -> "AugmentParams":
        defaults = cls()
        return cls(**{name: read_field(config, name, getattr(defaults, name))
                      for name in ("hflip", "color_jitter", "scale_min", "scale_max")})


def nearest_resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize without inventing values: every output pixel is a copy of one input pixel."""
    if array.shape[:2] == (height, width):
        return array
    cv2 = import_cv2()
    # INTER_NEAREST_EXACT samples pixel centres like the RGB resize; INTER_NEAREST is off by half a pixel.
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def random_crop_box(height: int, width: int, scale: float, rng: np.random.Generator) -> Tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of a crop 1/scale the size of the frame, at a random place."""
    crop_h = min(height, max(1, int(round(height / scale))))
    crop_w = min(width, max(1, int(round(width / scale))))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    return top, left, crop_h, crop_w


def color_jitter(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation, each a factor in [1 - strength, 1 + strength]."""
    factors = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    image = rgb.astype(np.float32) * factors[0]
    image = np.clip(image, 0, 255)
    mean_luma = float((image @ LUMA_RGB).mean())
    image = np.clip((image - mean_luma) * factors[1] + mean_luma, 0, 255)
    luma = (image @ LUMA_RGB)[..., None]
    image = np.clip((image - luma) * factors[2] + luma, 0, 255)
    return np.rint(image).astype(np.uint8)


class DepthSampleTransform:
    """One raw sample (numpy) -> one prepared sample (torch); see the module docstring.

    ``augment`` (an :class:`AugmentParams`) applies only when ``train`` is True. Depth beyond
    ``max_depth`` is marked invalid in the mask, not clipped: a clipped value would be a wrong
    label, a masked one is simply not learnt from.
    """

    def __init__(self, spec: ModelSpec, augment: Optional[AugmentParams] = None, train: bool = False,
                 max_depth: Optional[float] = None, min_depth: Optional[float] = None) -> None:
        self.spec = spec
        self.augment = augment if train else None
        self.train = bool(train)
        self.max_depth = max_depth
        self.min_depth = min_depth

    def __call__(self, sample: Dict[str, Any], rng: Optional[np.random.Generator] = None) -> Dict[str, Any]:
        rgb, depth, mask = sample["rgb"], sample["depth"], sample["mask"]
        full_depth, full_mask = depth, mask
        if self.augment is not None:
            rng = rng if rng is not None else np.random.default_rng()
            rgb, depth, mask = self._augment(self.augment, rgb, depth, mask, rng)
        else:
            rgb, depth, mask = self._resize(rgb, depth, mask)
        prepared = to_tensors(rgb, depth, self.depth_range_mask(depth, mask), str(sample.get("name", "")))
        if not self.train:
            # Evaluation follows the benchmarks (monodepth2, BTS): metrics at the ground truth's own
            # resolution, the prediction resized to it; a GT resized to the network would drop pixels
            # (KITTI's sparse LiDAR most) and stretch NYU's 4:3 to the network's aspect.
            prepared["gt_depth"] = torch.from_numpy(np.ascontiguousarray(full_depth, dtype=np.float32))
            prepared["gt_mask"] = torch.from_numpy(np.ascontiguousarray(self.depth_range_mask(full_depth, full_mask)))
        return prepared

    def depth_range_mask(self, depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``mask`` and ``min_depth < depth < max_depth``: the pixel set the metrics use
        (:class:`edgedepth.metrics.DepthMetricAccumulator`), so training learns from the same one."""
        mask = np.asarray(mask, dtype=bool)
        with np.errstate(invalid="ignore"):
            if self.min_depth is not None:
                mask = mask & (depth > self.min_depth)
            if self.max_depth is not None:
                mask = mask & (depth < self.max_depth)
        return mask

    def _resize(self, rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray):
        height, width = self.spec.height, self.spec.width
        resized_mask = nearest_resize(mask.astype(np.uint8), height, width).astype(bool)
        return resize_to_spec(rgb, self.spec), nearest_resize(depth, height, width), resized_mask

    def _augment(self, params: AugmentParams, rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator):
        drawn = params.scale_max > params.scale_min
        scale = rng.uniform(params.scale_min, params.scale_max) if drawn else params.scale_min
        raw_h, raw_w = depth.shape
        top, left, crop_h, crop_w = random_crop_box(raw_h, raw_w, scale, rng)
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        rgb, depth, mask = self._resize(rgb[window], depth[window], mask[window])
        # Divide by the magnification actually applied (crop sizes are whole pixels, so it can
        # differ slightly from the drawn scale); geometric mean of the vertical and horizontal one.
        depth = depth / np.float32(math.sqrt((raw_h / crop_h) * (raw_w / crop_w)))
        if params.hflip and rng.random() < 0.5:
            rgb, depth, mask = rgb[:, ::-1], depth[:, ::-1], mask[:, ::-1]
        if params.color_jitter > 0:
            rgb = color_jitter(rgb, params.color_jitter, rng)
        return rgb, depth, mask


def to_tensors(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray, name: str) -> Dict[str, Any]:
    """HxWx3 / HxW numpy -> 3xHxW uint8, 1xHxW float32, 1xHxW bool tensors (contiguous copies)."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.uint8)),
        "depth": torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)[None]),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)[None]),
        "name": name,
    }


SpecOrSize = Union[ModelSpec, Tuple[int, int]]


def as_spec(spec_or_size: SpecOrSize) -> ModelSpec:
    """A ModelSpec, or one of the given (height, width) with default normalisation."""
    if isinstance(spec_or_size, ModelSpec):
        return spec_or_size
    height, width = spec_or_size
    return ModelSpec(height=int(height), width=int(width))


class PreparedDataset(Dataset):
    """A raw RGB-D dataset resized (and, when ``train``, augmented) for the network.

    ``spec_or_size``: the model's :class:`ModelSpec` (its ``max_depth`` masks far depth) or a
    ``(height, width)`` pair (then only ``max_depth``, if given, masks). ``augment``: an
    ``AugmentConfig`` / dict / :class:`AugmentParams`, ignored unless ``train``.
    """

    def __init__(self, raw_dataset: Dataset, spec_or_size: SpecOrSize, augment: Any = None,
                 train: bool = False, seed: int = 0, max_depth: Optional[float] = None,
                 min_depth: Optional[float] = None) -> None:
        self.raw = raw_dataset
        self.spec = as_spec(spec_or_size)
        if isinstance(spec_or_size, ModelSpec):
            max_depth = spec_or_size.max_depth if max_depth is None else max_depth
            min_depth = spec_or_size.min_depth if min_depth is None else min_depth
        params = augment if isinstance(augment, AugmentParams) else AugmentParams.from_config(augment)
        self.transform = DepthSampleTransform(self.spec, params if augment is not None else None, train, max_depth,
                                              min_depth)
        self.train = bool(train)
        self.seed = int(seed)
        self._visits: Dict[int, int] = {}

    def __len__(self) -> int:
        # Map-style datasets have __len__; torch's Dataset base class leaves it undeclared.
        return len(self.raw)  # type: ignore[arg-type]

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        """Sample ``key``: an index, or ``(index, epoch)`` as :class:`EpochSampler` yields them."""
        if isinstance(key, tuple):
            index, epoch = (int(value) for value in key)
            rng = np.random.default_rng([self.seed, EPOCH_STREAM, epoch, index])
        else:
            index, rng = int(key), self.sample_rng(int(key))
        return self.transform(self.raw[index], rng)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator for this draw of ``index`` when no epoch comes with it (see the module docstring)."""
        visit = self._visits.get(index, 0)
        self._visits[index] = visit + 1
        return np.random.default_rng([self.seed, torch.initial_seed(), int(index), visit])

    @property
    def skipped_count(self) -> int:
        """Corrupt samples the raw dataset skipped in this process (0 if it cannot skip)."""
        return int(getattr(self.raw, "skipped_count", 0))


def normalize_torch(images: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """uint8 Nx3xHxW RGB (as PreparedDataset yields) -> float32 network input, on their device.

    ``(x / 255 - mean) / std`` in ``spec.color_order``, computed with the same constants and
    operations as :func:`edgedepth.preprocess.preprocess`, so training sees the deployed input.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise EdgeDepthError(f"normalize_torch expects Nx3xHxW RGB images, got shape {tuple(images.shape)}")
    scale, offset = normalization_constants(spec)
    pixels = images.to(torch.float32)
    if spec.color_order == "BGR":
        pixels = pixels.flip(1)
    scale_t = torch.as_tensor(scale, device=pixels.device).view(1, 3, 1, 1)
    offset_t = torch.as_tensor(offset, device=pixels.device).view(1, 3, 1, 1)
    return pixels * scale_t + offset_t
