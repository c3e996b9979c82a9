"""Fixtures for the calibration tests: a briefly trained 64x96 depth model (realistic activation
ranges, unlike a random init), its FP32 ONNX, and held-out images it never trained on."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest

from calib_helpers import build_small_depth_onnx, moving_frames, write_small_config

TRAIN_STEPS = 30


@dataclass
class TrainedModel:
    checkpoint: Path
    onnx: Path
    images: Path  # folder of BGR PNGs the model never trained on (synthetic val split)
    config: Path  # a small dataset config (YAML) over the same synthetic data


def _train(config: Path, run_dir: Path) -> Path:
    from edgedepth.training.config import load_config
    from edgedepth.training.trainer import Trainer

    overrides = [
        f"train.steps={TRAIN_STEPS}", "train.batch_size=4", "train.warmup_steps=5", "train.lr=0.002",
        f"train.output_dir={run_dir}", "train.eval_every=100000", "train.image_every=100000",
        "train.checkpoint_every=100000", "train.log_every=100000", "eval.max_samples=4",
    ]
    trainer = Trainer(load_config(config, overrides))
    trainer.train()
    return run_dir / "checkpoints" / "last.pt"


def _write_val_images(config: Path, folder: Path) -> Path:
    from edgedepth.training.config import load_config
    from edgedepth.training.data import build_raw_dataset

    dataset = build_raw_dataset(load_config(config).data, "val")
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(len(dataset)):
        cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(dataset[index]["rgb"], cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> TrainedModel:
    """A depth model trained for a few steps on synthetic rooms, exported to FP32 ONNX (session-cached)."""
    from edgedepth.export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("calib_model")
    config = write_small_config(root / "small.yaml", root / "synthetic")
    checkpoint = _train(config, root / "run")
    onnx_path = root / "model.onnx"
    export_onnx(checkpoint, onnx_path, log=lambda message: None)
    return TrainedModel(checkpoint, onnx_path, _write_val_images(config, root / "images"), config)


@pytest.fixture()
def small(tmp_path):
    """A small conv depth ONNX (32x32, edgedepth head) and a folder of 12 frames: seconds per run."""
    onnx_path = build_small_depth_onnx(tmp_path / "small.onnx")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for index, frame in enumerate(moving_frames(12)):
        cv2.imwrite(str(folder / f"{index:02d}.png"), frame)
    return onnx_path, folder
