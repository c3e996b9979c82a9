"""Typed training configuration: dataclass defaults, YAML files with ``_base_``, CLI overrides.

OmegaConf structured configs do the merging and type checking; this module adds what users
need on top: unknown keys refused with a "did you mean", values checked against their allowed
range, shipped configs found by name, and the resolved config saved next to every run.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from edgedepth.errors import ConfigError, SpecError
from edgedepth.spec import ModelSpec, check_input_size


@dataclass
class ModelConfig:
    #: Registered architecture name (see ``edgedepth.training.model.available_models()``).
    architecture: str = "resnet18"
    #: Encoder initialisation: ``none`` (random), ``imagenet`` (download when online) or a path
    #: to a torchvision-format ``resnet18.pth``.
    pretrained: str = "none"
    activation: str = "elu"  # elu | gelu
    attention: str = "none"  # none | spatial
    rezero: bool = False
    decoder_channels: List[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])


@dataclass
class AugmentConfig:
    hflip: bool = True
    #: Max relative change of brightness / contrast / saturation (0 disables colour jitter).
    color_jitter: float = 0.2
    #: Random scale-up then crop back to size; depth is divided by the scale so it stays metric.
    #: Off by default (1.0, 1.0): with fixed intrinsics and camera height, dividing depth by the
    #: zoom contradicts the floor-geometry cue (on synthetic rooms it cost 5 points of d1 at 1400
    #: steps); BTS / AdaBins-style metric training does not scale either. E.g. 1.0, 1.2 to enable.
    scale_min: float = 1.0
    scale_max: float = 1.0


@dataclass
class SyntheticConfig:
    num_train: int = 2000
    num_val: int = 200
    seed: int = 0
    #: Rendered samples are cached here (keyed by generator version, size, seed and camera rig).
    cache_dir: str = ".cache/edgedepth/synthetic"
    #: Camera height above the floor, metres: [low, high], drawn uniformly (equal = fixed mount).
    camera_height: List[float] = field(default_factory=lambda: [1.1, 1.5])
    #: Camera pitch, degrees (positive looks up): [low, high]. Match your robot's mount.
    camera_pitch_deg: List[float] = field(default_factory=lambda: [-14.0, 3.0])


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # synthetic | nyu | kitti | folder | diode
    root: Optional[str] = None
    height: int = 96
    width: int = 128
    min_depth: float = 0.1
    max_depth: float = 10.0
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    train_split: str = "train"
    val_split: str = "val"
    #: Optional file lists (one sample per line) overriding the dataset's own split.
    train_list: Optional[str] = None
    val_list: Optional[str] = None
    #: ``folder`` dataset: 16-bit PNG depth value per metre (1000 mm, 5000 TUM, 256 KITTI).
    depth_scale: float = 1000.0
    skip_corrupt: bool = False
    num_workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class LossConfig:
    ssi_weight: float = 0.5
    silog_weight: float = 0.5
    gradient_weight: float = 0.0
    gradient_scales: List[int] = field(default_factory=lambda: [1, 2, 4, 8])
    gradient_space: str = "depth"  # depth | log
    ssi_standardize: str = "lstsq"  # lstsq | mad
    ssi_space: str = "depth"  # depth | disparity
    silog_lambda: float = 0.85
    silog_scale: float = 10.0


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    amp: str = "auto"  # auto | none | bf16 | fp16 (CUDA only; auto = bf16 where supported)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    output_dir: str = "runs/default"
    log_every: int = 10
    image_every: int = 200
    eval_every: int = 500
    checkpoint_every: int = 200
    #: Abort after this many non-finite losses in a row (each one skips its step).
    max_nonfinite: int = 20
    #: Precise BN: at the end, re-estimate BatchNorm statistics over this many training batches
    #: with the final weights (0 = keep the running averages).
    precise_bn_batches: int = 50


@dataclass
class EvalConfig:
    split: str = "val"
    batch_size: int = 8
    crop: str = "none"  # none | eigen_nyu | garg_kitti | eigen_kitti
    alignment: str = "none"  # none | median | scale_shift
    #: Max number of validation samples evaluated during training (0 = all).
    max_samples: int = 0


@dataclass
class Config:
    name: str = "default"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ---------------------------------------------------------------------------------------------
# Loading, overriding, validating
# ---------------------------------------------------------------------------------------------
#: Where the shipped configs live (repository ``configs/``, installed as ``edgedepth.configs``).
SHIPPED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
BASE_KEY = "_base_"

#: Allowed values of the string choices, checked after every merge.
CHOICES: Dict[str, Sequence[str]] = {
    "model.activation": ("elu", "gelu"),
    "model.attention": ("none", "spatial"),
    "data.dataset": ("synthetic", "nyu", "kitti", "folder", "diode"),
    "loss.gradient_space": ("depth", "log"),
    "loss.ssi_standardize": ("lstsq", "mad"),
    "loss.ssi_space": ("depth", "disparity"),
    "train.amp": ("auto", "none", "bf16", "fp16"),
    "eval.crop": ("none", "eigen_nyu", "garg_kitti", "eigen_kitti"),
    "eval.alignment": ("none", "median", "scale_shift"),
}

#: Numeric ranges (inclusive lower, inclusive upper; None = unbounded).
RANGES: Dict[str, tuple] = {
    "data.min_depth": (1e-6, None),
    "data.max_depth": (1e-6, None),
    "data.num_workers": (0, 64),
    "data.depth_scale": (1e-6, None),
    "data.augment.color_jitter": (0.0, 1.0),
    "data.augment.scale_min": (1.0, 4.0),
    "data.augment.scale_max": (1.0, 4.0),
    "data.synthetic.num_train": (1, None),
    "data.synthetic.num_val": (1, None),
    "loss.ssi_weight": (0.0, None),
    "loss.silog_weight": (0.0, None),
    "loss.gradient_weight": (0.0, None),
    "loss.silog_lambda": (0.0, 1.0),
    "loss.silog_scale": (1e-6, None),
    "train.steps": (1, None),
    "train.batch_size": (1, None),
    "train.lr": (1e-12, 10.0),
    "train.weight_decay": (0.0, 1.0),
    "train.warmup_steps": (0, None),
    "train.grad_clip": (0.0, None),
    "train.log_every": (1, None),
    "train.image_every": (1, None),
    "train.eval_every": (1, None),
    "train.checkpoint_every": (1, None),
    "train.max_nonfinite": (1, None),
    "train.precise_bn_batches": (0, None),
    "eval.batch_size": (1, None),
    "eval.max_samples": (0, None),
}


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
        raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
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


def _known_keys(node: Any = None, prefix: str = "") -> list:
    """Every dotted key of the schema (for "did you mean" suggestions)."""
    cls = Config if node is None else node
    keys = []
    for fld in dataclasses.fields(cls):
        dotted = f"{prefix}{fld.name}"
        keys.append(dotted)
        default = fld.default_factory() if fld.default_factory is not dataclasses.MISSING else fld.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            keys.extend(_known_keys(type(default), dotted + "."))
    return keys


def _unknown_key_error(key: str, source: str) -> ConfigError:
    known = _known_keys()
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1]
    if not close:
        close = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"; did you mean {close[0]!r}?" if close else "; see configs/base.yaml for the valid keys"
    return ConfigError(f"unknown config key {key!r} in {source}{hint}")


def _check_keys(data: Dict[str, Any], source: str, prefix: str = "", schema: Any = Config) -> None:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise _unknown_key_error(dotted, source)
        fld = fields[key]
        default = fld.default_factory() if fld.default_factory is not dataclasses.MISSING else fld.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} in {source} is a section; got the value {value!r}")
            _check_keys(value, source, dotted + ".", type(default))


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


def _lookup(cfg: DictConfig, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted)


def validate_config(cfg: DictConfig) -> None:
    """Check choices, ranges and cross-field rules; raise ConfigError naming the key."""
    for key, allowed in CHOICES.items():
        value = _lookup(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(allowed)}")
    for key, (low, high) in RANGES.items():
        value = _lookup(cfg, key)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"[{low}, {'inf' if high is None else high}]"
            raise ConfigError(f"{key}={value} is out of range; expected a value in {bounds}")
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
    weights = (cfg.loss.ssi_weight, cfg.loss.silog_weight, cfg.loss.gradient_weight)
    if sum(weights) <= 0:
        raise ConfigError("loss weights are all 0; set at least one of loss.ssi_weight, loss.silog_weight, loss.gradient_weight > 0")
    if cfg.loss.gradient_weight > 0 and (not cfg.loss.gradient_scales or min(cfg.loss.gradient_scales) < 1):
        raise ConfigError(f"loss.gradient_scales={list(cfg.loss.gradient_scales)} must be a non-empty list of integers >= 1")
    if len(cfg.data.mean) != 3 or len(cfg.data.std) != 3:
        raise ConfigError("data.mean and data.std must have 3 values (one per colour channel)")
    if not cfg.model.decoder_channels or len(cfg.model.decoder_channels) != 5:
        raise ConfigError(f"model.decoder_channels must list 5 widths (one per decoder stage), got {list(cfg.model.decoder_channels)}")


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
        arch_options={
            "activation": str(cfg.model.activation),
            "attention": str(cfg.model.attention),
            "rezero": bool(cfg.model.rezero),
            "decoder_channels": [int(c) for c in cfg.model.decoder_channels],
        },
        config_hash=config_hash(cfg),
    )
