"""Typed training configuration: dataclass defaults, YAML files with ``_base_``, CLI overrides.

OmegaConf structured configs do the merging and type checking; this module adds what users
need on top: unknown keys refused with a "did you mean", values checked against their allowed
range, shipped configs found by name, and the resolved config saved next to every run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


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
    scale_min: float = 1.0
    scale_max: float = 1.2


@dataclass
class SyntheticConfig:
    num_train: int = 2000
    num_val: int = 200
    seed: int = 0
    #: Rendered samples are cached here (keyed by generator version, size and seed).
    cache_dir: str = ".cache/edgedepth/synthetic"


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
