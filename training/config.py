"""Typed training configuration: dataclass defaults, YAML files with ``_base_``, CLI overrides.

OmegaConf structured configs do the merging and type checking; this module adds what users
need on top: unknown keys refused with a "did you mean", values checked against their allowed
values or range, shipped configs found by name, and the resolved config saved next to every run.

Each key's default, allowed values or range, and reason sit on its own line (:func:`option`);
``CHOICES``, ``RANGES``, ``KNOWN_KEYS``, the model builders' defaults and docs/CONFIG.md are
derived from there (detectron2's "one defaults file").
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from edgedepth.budget import yaml_error_text
from edgedepth.errors import ConfigError, SpecError
from edgedepth.metrics import ALIGNMENTS, CROPS
from edgedepth.spec import ModelSpec, check_input_size
from edgedepth.training.data.intrinsics import training_intrinsics

#: ``(low, high)``, both inclusive; None = unbounded on that side.
Bounds = Tuple[Optional[float], Optional[float]]
POSITIVE: Bounds = (1e-6, None)


def option(default: Any, *, help: str, choices: Sequence[Any] = (), range: Optional[Bounds] = None) -> Any:
    """A dataclass field holding its default, allowed ``choices`` or ``range``, and one-line ``help``.

    The merged config is checked against them (:func:`check_value`); docs/CONFIG.md shows all three.
    """
    metadata = {"help": help, "choices": tuple(choices), "range": range}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type, *, help: str) -> Any:
    """A nested section: its own dataclass of options."""
    return field(default_factory=cls, metadata={"help": help, "choices": (), "range": None, "section": cls})


@dataclass
class ModelConfig:
    architecture: str = option("resnet18", help="registered network (edgedepth.training.model.available_models())")
    pretrained: str = option("none", help="encoder init: none (random), imagenet (downloaded) or a torchvision .pth")
    activation: str = option("elu", choices=("elu", "gelu"), help="decoder activation")
    attention: str = option("none", choices=("none", "spatial"), help="CBAM spatial attention after each decoder block")
    rezero: bool = option(False, help="decoder residual branches start switched off (ReZero alpha = 0)")
    decoder_channels: List[int] = option([256, 128, 64, 32, 16], help="widths of the 5 decoder stages, stride 16 to 1")


@dataclass
class AugmentConfig:
    hflip: bool = option(True, help="random horizontal flip")
    color_jitter: float = option(0.2, range=(0.0, 1.0), help="max relative brightness/contrast/saturation change")
    # Off by default (1.0, 1.0): with fixed intrinsics and camera height, dividing depth by the
    # zoom contradicts the floor-geometry cue (on synthetic rooms it cost 5 points of d1 at 1400
    # steps); BTS / AdaBins-style metric training does not scale either. E.g. 1.0, 1.2 to enable.
    scale_min: float = option(1.0, range=(1.0, 4.0), help="random scale-up, then crop back; depth is divided by it")
    scale_max: float = option(1.0, range=(1.0, 4.0), help="upper end of the random scale (>= scale_min)")


@dataclass
class SyntheticConfig:
    num_train: int = option(2000, range=(1, None), help="rendered training rooms")
    num_val: int = option(200, range=(1, None), help="rendered validation (and test) rooms")
    seed: int = option(0, help="generator seed: other rooms, same size and rig")
    cache_dir: str = option(".cache/edgedepth/synthetic", help="render cache (keyed by generator, size, seed, rig)")
    camera_height: List[float] = option([1.1, 1.5], help="camera height, metres: [low, high] (equal = fixed mount)")
    camera_pitch_deg: List[float] = option([-14.0, 3.0], help="camera pitch, degrees, + looks up: [low, high]")


@dataclass
class DataConfig:
    dataset: str = option("synthetic", choices=("synthetic", "nyu", "kitti", "folder", "diode"), help="the reader")
    root: Optional[str] = option(None, help="dataset folder (every dataset but synthetic needs one)")
    height: int = option(96, help="network input height, a multiple of 32")
    width: int = option(128, help="network input width, a multiple of 32")
    min_depth: float = option(0.1, range=POSITIVE, help="metres; lower end of the trained range (ModelSpec)")
    max_depth: float = option(10.0, range=POSITIVE, help="metres; the head outputs (0, max_depth), farther GT masked")
    mean: List[float] = option([0.485, 0.456, 0.406], help="per-channel normalisation mean (ImageNet)")
    std: List[float] = option([0.229, 0.224, 0.225], help="per-channel normalisation std (ImageNet)")
    train_split: str = option("train", help="the dataset's split used for training")
    val_split: str = option("val", help="selects best.pt: val = held out of train by scene (synthetic: its val rooms)")
    test_split: str = option("test", help="the official test split; only depth-eval --split test reads it")
    train_list: Optional[str] = option(None, help="file list (one sample per line) overriding the train split")
    val_list: Optional[str] = option(None, help="file list of validation samples (replaces the held-out part)")
    test_list: Optional[str] = option(None, help="file list overriding the test split (KITTI: the Eigen test list)")
    holdout_fraction: float = option(0.05, range=(0.001, 0.5), help="share of train held out (whole scenes) as val")
    holdout_seed: int = option(0, help="seed of the scene-disjoint validation holdout")
    gt_root: Optional[str] = option(None, help="KITTI: folder the list's depth paths are under (default: data.root)")
    border_crop: bool = option(True, help="NYU: train without the blank registration border (BTS's 45:472, 43:608)")
    intrinsics: Optional[List[float]] = option(
        None, help="[fx, fy, cx, cy, width, height] of the dataset's camera (folder, diode; overrides nyu/kitti)")
    depth_scale: float = option(1000.0, range=POSITIVE, help="folder PNG units/metre (1000 mm, 5000 TUM, 256 KITTI)")
    skip_corrupt: bool = option(False, help="replace a missing or unreadable sample by the next readable one")
    num_workers: int = option(2, range=(0, 64), help="DataLoader worker processes (0 = main process)")
    augment: AugmentConfig = section(AugmentConfig, help="training-time augmentation")
    synthetic: SyntheticConfig = section(SyntheticConfig, help="the procedural rooms of data.dataset=synthetic")


@dataclass
class LossConfig:
    ssi_weight: float = option(0.5, range=(0.0, None), help="weight of the scale-and-shift-invariant L1 (MiDaS)")
    silog_weight: float = option(0.5, range=(0.0, None), help="weight of the scale-invariant log loss")
    gradient_weight: float = option(0.0, range=(0.0, None), help="weight of the multi-scale gradient loss")
    gradient_scales: List[int] = option([1, 2, 4, 8], help="gradient loss downsampling factors, each listed once")
    gradient_space: str = option(
        "depth", choices=("depth", "log", "aligned", "standardized"),
        help="gradients of depth, log depth, the SSI-aligned prediction (MiDaS) or mean/MAD-standardised maps (G2)",
    )
    ssi_standardize: str = option("lstsq", choices=("lstsq", "mad"), help="least-squares scale+shift or median/MAD")
    ssi_space: str = option("depth", choices=("depth", "disparity"), help="SSI compares depth or 1 / depth")
    silog_lambda: float = option(0.85, range=(0.0, 1.0), help="SiLog variance weight (1 ignores a global scale)")
    silog_scale: float = option(10.0, range=POSITIVE, help="SiLog output multiplier (AdaBins uses 10)")
    normalize: str = option(
        "none", choices=("none", "running_mean"),
        help="running_mean: each term divided by a running mean of its value, so the weights are the shares",
    )


@dataclass
class TrainConfig:
    steps: int = option(2000, range=(1, None), help="optimiser steps; the cosine LR schedule ends there")
    batch_size: int = option(8, range=(1, None), help="images per step (per process under DDP)")
    lr: float = option(1e-3, range=(1e-12, 10.0), help="AdamW peak learning rate")
    weight_decay: float = option(1e-4, range=(0.0, 1.0), help="AdamW decoupled weight decay")
    warmup_steps: int = option(100, range=(0, None), help="linear LR warm-up steps before the cosine decay")
    grad_clip: float = option(1.0, range=(0.0, None), help="max gradient norm (0 = no clipping)")
    amp: str = option("auto", choices=("auto", "none", "bf16", "fp16"), help="auto = bf16 where fast; fp16 CUDA only")
    seed: int = option(0, help="seeds torch, numpy, random and the data order")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    output_dir: str = option("runs/default", help="run folder: config.yaml, checkpoints/, TensorBoard events")
    log_every: int = option(10, range=(1, None), help="steps between loss logs")
    image_every: int = option(200, range=(1, None), help="steps between TensorBoard image panels")
    eval_every: int = option(500, range=(1, None), help="steps between validations (and best.pt updates)")
    checkpoint_every: int = option(200, range=(1, None), help="steps between writes of checkpoints/last.pt")
    max_nonfinite: int = option(20, range=(1, None), help="abort after this many non-finite losses in a row")
    sync_bn: bool = option(False, help="DDP on CUDA: BatchNorm statistics over all GPUs (SyncBatchNorm)")
    precise_bn_batches: int = option(50, range=(0, None), help="re-estimate BatchNorm at the end (0 = keep running)")


@dataclass
class EvalConfig:
    split: str = option("val", help="split depth-eval reads: val (the one selecting best.pt) or test")
    batch_size: int = option(8, range=(1, None), help="images per evaluation batch")
    crop: str = option("none", choices=CROPS, help="standard crop: eigen_nyu (NYU), garg_kitti / eigen_kitti")
    alignment: str = option("none", choices=ALIGNMENTS, help="align prediction to GT before metrics")
    max_samples: int = option(0, range=(0, None), help="validation samples evaluated, evenly spaced (0 = all)")


@dataclass
class Config:
    name: str = option("default", help="run name")
    description: str = option("", help="what this config is for")
    model: ModelConfig = section(ModelConfig, help="the network")
    data: DataConfig = section(DataConfig, help="dataset, input size, depth range, augmentation")
    loss: LossConfig = section(LossConfig, help="loss terms and their weights")
    train: TrainConfig = section(TrainConfig, help="optimisation, logging and checkpoints")
    eval: EvalConfig = section(EvalConfig, help="evaluation during training and by depth-eval")


# ---------------------------------------------------------------------------------------------
# Derived from the field metadata
# ---------------------------------------------------------------------------------------------
def _walk(cls: type = Config, prefix: str = "") -> Iterator[Tuple[str, "dataclasses.Field[Any]"]]:
    for fld in dataclasses.fields(cls):
        yield prefix + fld.name, fld
        if "section" in fld.metadata:
            yield from _walk(fld.metadata["section"], f"{prefix}{fld.name}.")


#: Every dotted key of the schema (sections included) and its field.
FIELDS: Dict[str, "dataclasses.Field[Any]"] = dict(_walk())
KNOWN_KEYS: Tuple[str, ...] = tuple(FIELDS)
#: Allowed values, checked after every merge.
CHOICES: Dict[str, Tuple[Any, ...]] = {key: f.metadata["choices"] for key, f in FIELDS.items() if f.metadata["choices"]}
#: Numeric ranges (inclusive; None = unbounded), checked after every merge.
RANGES: Dict[str, Bounds] = {key: f.metadata["range"] for key, f in FIELDS.items() if f.metadata["range"]}
#: The loss section's keys (``DepthLoss`` keywords) and its weights.
LOSS_KEYS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LossConfig))
LOSS_WEIGHT_KEYS: Tuple[str, ...] = tuple(key for key in LOSS_KEYS if key.endswith("_weight"))
#: Model keys that are not ``ModelSpec.arch_options``: the spec holds the architecture itself, and
#: the encoder's initial weights do not change the network.
_NOT_ARCH_OPTIONS = ("architecture", "pretrained")


def defaults(cls: type) -> Dict[str, Any]:
    """A section's defaults as a plain dict (fresh lists)."""
    return dataclasses.asdict(cls())


def arch_options(model: Any) -> Dict[str, Any]:
    """The ``ModelSpec.arch_options`` of a model section (``ModelConfig`` or its node), plain values."""
    names = [f.name for f in dataclasses.fields(ModelConfig) if f.name not in _NOT_ARCH_OPTIONS]
    return {name: _plain(getattr(model, name)) for name in names}


def _plain(value: Any) -> Any:
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return list(value) if isinstance(value, (list, tuple)) else value


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def with_defaults(base: Mapping[str, Any], options: Mapping[str, Any], what: str) -> Dict[str, Any]:
    """``options`` over ``base`` (the defaults); a key ``base`` lacks raises ConfigError."""
    unknown = sorted(map(str, set(options) - set(base)))
    if unknown:
        raise ConfigError(
            f"unknown {what} keys {unknown}{did_you_mean(unknown[0], base)}; expected some of {list(base)}"
        )
    return {**base, **options}


def config_reference() -> str:
    """docs/CONFIG.md: every key with its default, allowed values or range, and reason."""
    lines = ["# Config reference", "", _REFERENCE_INTRO, "", "| key | default | allowed | why |", "|---|---|---|---|"]
    for key, fld in FIELDS.items():
        if "section" in fld.metadata:
            lines.append(f"| **`{key}`** | | | {fld.metadata['help']} |")
            continue
        default = fld.default_factory() if fld.default_factory is not dataclasses.MISSING else fld.default
        choices, bounds = fld.metadata["choices"], fld.metadata["range"]
        allowed = ", ".join(map(str, choices)) if choices else (_bounds_text(bounds) if bounds else "")
        shown = default if isinstance(default, str) and default else json.dumps(default)
        lines.append(f"| `{key}` | `{shown}` | {allowed} | {fld.metadata['help']} |")
    return "\n".join(lines) + "\n"


_REFERENCE_INTRO = (
    "Generated from the field metadata in `training/config.py`, the one place where defaults, allowed\n"
    "values and ranges live; `tests/training/test_config_metadata.py` fails when this page is stale.\n"
    "Regenerate: `python -c \"from edgedepth.training.config import config_reference as r; "
    "print(r(), end='')\" > docs/CONFIG.md`.\n\n"
    "The merged config (defaults <- `_base_` files <- the YAML <- `key=value` overrides) is checked:\n"
    "ranges are inclusive and NaN or Inf is never in one. Rules across keys: `data.min_depth` < `data.max_depth`;\n"
    "`data.height` and `data.width` are multiples of 32; `data.mean` and `data.std` hold 3 values;\n"
    "`scale_min` <= `scale_max`; at least one loss weight is > 0; `loss.gradient_scales` are positive\n"
    "integers, each listed once; `model.decoder_channels` lists 5 widths."
)


def _bounds_text(bounds: Bounds) -> str:
    low, high = bounds
    return f"[{low}, {'inf' if high is None else high}]"


# ---------------------------------------------------------------------------------------------
# Checks (shared by config validation and the library guards of DepthLoss and the loss terms)
# ---------------------------------------------------------------------------------------------
def check_value(key: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` is one of the dotted ``key``'s choices and inside its range."""
    choices, bounds = FIELDS[key].metadata["choices"], FIELDS[key].metadata["range"]
    if choices and value not in choices:
        raise ConfigError(f"{key} is {value!r}, which is not allowed; choose one of {', '.join(map(str, choices))}")
    if bounds and not _in_range(value, bounds):
        raise ConfigError(f"{key} is {value!r}; expected a value in {_bounds_text(bounds)}")


def _in_range(value: Any, bounds: Bounds) -> bool:
    """True for a finite number (not a bool) inside ``bounds``; NaN and Inf are never in range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    low, high = bounds
    inside = (low is None or number >= low) and (high is None or number <= high)
    return not isinstance(value, bool) and math.isfinite(number) and inside


def check_loss_weights(weights: Mapping[str, Any]) -> None:
    """Raise ConfigError when every loss weight is 0 (each one's range is checked by check_value)."""
    if not any(float(weights[key]) > 0 for key in LOSS_WEIGHT_KEYS):
        keys = ", ".join(f"loss.{key}" for key in LOSS_WEIGHT_KEYS)
        raise ConfigError(f"all loss weights are 0 ({keys}); set at least one > 0")


def check_gradient_scales(scales: Sequence[Any]) -> Tuple[int, ...]:
    """``loss.gradient_scales`` as a tuple of ints; ConfigError unless positive integers, each once."""
    checked = tuple(int(s) for s in scales)
    if not checked or any(s < 1 for s in checked) or any(s != float(o) for s, o in zip(checked, scales)):
        raise ConfigError(
            f"loss.gradient_scales is {list(scales)}; expected positive integers such as [1, 2, 4, 8]"
        )
    if len(set(checked)) != len(checked):
        raise ConfigError(f"loss.gradient_scales {list(scales)} repeats a scale; list each scale once")
    return checked


# ---------------------------------------------------------------------------------------------
# Loading, overriding, validating
# ---------------------------------------------------------------------------------------------
#: Where the shipped configs live (repository ``configs/``, installed as ``edgedepth.configs``).
SHIPPED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
BASE_KEY = "_base_"


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """A YAML path as given, or the shipped config of that name (``grad_a`` -> configs/grad_a.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIG_DIR / f"{path.stem if path.suffix in ('.yaml', '.yml') else path.name}.yaml"
    if shipped.is_file() and (path.parent == Path(".") or not path.exists()):
        return shipped
    raise ConfigError(
        f"config {str(name_or_path)!r} not found: pass a YAML file path or one of the shipped configs "
        f"({', '.join(shipped_config_names())})"
    )


def shipped_config_names() -> list:
    """Names of the configs shipped in ``configs/``."""
    return sorted(p.stem for p in SHIPPED_CONFIG_DIR.glob("*.yaml"))


def _read_yaml(path: Path, chain: tuple = ()) -> Dict[str, Any]:
    """Read one YAML file and, recursively, its ``_base_`` files (base first, this file on top)."""
    if path.resolve() in chain:
        raise ConfigError(f"config {path} includes itself through {BASE_KEY}: remove the cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {yaml_error_text(exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping of sections, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None) or []
    merged: Dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        if not base_path.is_file():
            base_path = resolve_config_path(base)
        merged = _deep_merge(merged, _read_yaml(base_path, chain + (path.resolve(),)))
    return _deep_merge(merged, data)


def _deep_merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _unknown_key_error(key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1]
    if not close:
        close = [k for k in KNOWN_KEYS if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"; did you mean {close[0]!r}?" if close else "; see docs/CONFIG.md for the valid keys"
    return ConfigError(f"unknown config key {key!r} in {source}{hint}")


def _check_keys(data: Dict[str, Any], source: str, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if dotted not in FIELDS:
            raise _unknown_key_error(dotted, source)
        if "section" in FIELDS[dotted].metadata:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} in {source} is a section; got the value {value!r}")
            _check_keys(value, source, dotted + ".")


def parse_overrides(overrides: Iterable[str]) -> Dict[str, Any]:
    """``["train.steps=100", "model.rezero=true"]`` -> nested dict (values parsed as YAML)."""
    nested: Dict[str, Any] = {}
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not key=value; write e.g. train.steps=100")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} sets a key below a value; check the key path")
        node[parts[-1]] = value
    return nested


def load_config(
    path_or_name: Union[str, Path, None] = None,
    overrides: Iterable[str] = (),
    base: Optional[Dict[str, Any]] = None,
) -> DictConfig:
    """Defaults <- ``base`` dict <- YAML (with ``_base_`` chain) <- ``key=value`` overrides.

    ``base`` is e.g. the resolved config stored in a checkpoint. The result is validated and
    read-only.
    """
    layers = []
    if base is not None:
        _check_keys(base, "the base config")
        layers.append(base)
    if path_or_name is not None:
        path = resolve_config_path(path_or_name)
        data = _read_yaml(path)
        _check_keys(data, str(path))
        layers.append(data)
    override_data = parse_overrides(overrides)
    _check_keys(override_data, "command-line overrides")
    layers.append(override_data)
    return _merge_and_validate(layers)


def _merge_and_validate(layers: list) -> DictConfig:
    cfg = OmegaConf.structured(Config)
    try:
        for layer in layers:
            cfg = OmegaConf.merge(cfg, layer)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "?"
        raise ConfigError(f"config value for {key!r} has the wrong type: {str(exc.msg).splitlines()[0]}") from None
    validate_config(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def validate_config(cfg: DictConfig) -> None:
    """Check choices, ranges and cross-field rules; raise ConfigError naming the key."""
    for key in (*CHOICES, *RANGES):
        check_value(key, OmegaConf.select(cfg, key))
    _validate_cross_fields(cfg)


def _validate_cross_fields(cfg: DictConfig) -> None:
    try:
        check_input_size(cfg.data.height, cfg.data.width)
    except SpecError as exc:
        raise ConfigError(f"data.height/data.width: {exc}") from None
    if cfg.data.min_depth >= cfg.data.max_depth:
        raise ConfigError(
            f"data.min_depth={cfg.data.min_depth} must be below data.max_depth={cfg.data.max_depth}"
        )
    if cfg.data.augment.scale_min > cfg.data.augment.scale_max:
        raise ConfigError("data.augment.scale_min must not exceed data.augment.scale_max")
    check_loss_weights(cfg.loss)
    check_gradient_scales(cfg.loss.gradient_scales)
    if len(cfg.data.mean) != 3 or len(cfg.data.std) != 3:
        raise ConfigError("data.mean and data.std must have 3 values (one per colour channel)")
    channels = list(cfg.model.decoder_channels)
    if len(channels) != 5:
        raise ConfigError(f"model.decoder_channels must list 5 widths (one per decoder stage), got {channels}")


def config_to_dict(cfg: DictConfig) -> Dict[str, Any]:
    """Plain nested dict (safe for ``torch.load(weights_only=True)`` and JSON)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def config_hash(cfg: DictConfig) -> str:
    """Short hash of what determines the model and its training (not where outputs go)."""
    data = config_to_dict(cfg)
    data.get("train", {}).pop("output_dir", None)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def save_config(cfg: DictConfig, path: Union[str, Path]) -> None:
    """Write the resolved config as YAML (atomically)."""
    from edgedepth.io import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def spec_from_config(cfg: DictConfig) -> ModelSpec:
    """The ModelSpec a run with this config produces."""
    return ModelSpec(
        height=int(cfg.data.height),
        width=int(cfg.data.width),
        min_depth=float(cfg.data.min_depth),
        max_depth=float(cfg.data.max_depth),
        mean=tuple(cfg.data.mean),
        std=tuple(cfg.data.std),
        architecture=str(cfg.model.architecture),
        arch_options=arch_options(cfg.model),
        config_hash=config_hash(cfg),
        intrinsics=training_intrinsics(cfg.data),
    )
