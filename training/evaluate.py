"""Evaluation of a network on a dataset split, and the image grid the trainer logs.

Metrics come from the one implementation in :mod:`edgedepth.metrics`; this module only runs the
network over a loader and feeds the accumulator.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig

from edgedepth.colormap import colorize_depth
from edgedepth.metrics import DepthMetricAccumulator
from edgedepth.spec import ModelSpec


def _crop_option(crop: str) -> Optional[str]:
    return None if crop == "none" else crop


def evaluation_split(cfg: DictConfig, split: Optional[str] = None) -> str:
    """The split to evaluate: ``split`` when given, else ``eval.split`` (``"val"`` means ``data.val_split``)."""
    return split or (cfg.data.val_split if cfg.eval.split == "val" else cfg.eval.split)


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    spec: ModelSpec,
    eval_cfg: DictConfig,
    device: Union[str, torch.device] = "cpu",
) -> Dict[str, Any]:
    """Depth and edge-region metrics of ``model`` over ``loader`` (metres, per-image mean)."""
    from edgedepth.training.data import normalize_torch

    accumulator = DepthMetricAccumulator(
        min_depth=spec.min_depth,
        max_depth=spec.max_depth,
        crop=_crop_option(eval_cfg.crop),
        alignment=eval_cfg.alignment,
        edge_metrics=True,
    )
    was_training = model.training
    model.eval()
    for batch in loader:
        image = batch["image"].to(device)
        pred = model(normalize_torch(image, spec)).float().cpu().numpy()
        accumulator.add(pred, batch["depth"].numpy(), batch["mask"].numpy())
    model.train(was_training)
    return accumulator.compute()


def evaluate_checkpoint(
    checkpoint: Union[str, Path],
    config: Optional[str] = None,
    overrides: Sequence[str] = (),
    split: Optional[str] = None,
) -> Dict[str, Any]:
    """Load a checkpoint, build the evaluation split of its (or the given) config, evaluate.

    Returns ``{"checkpoint", "split", "dataset", "num_samples", "metrics"}``.
    """
    from edgedepth.training.checkpoint import load_checkpoint, read_checkpoint
    from edgedepth.training.config import load_config
    from edgedepth.training.data import build_dataloader, build_dataset

    model, spec = load_checkpoint(checkpoint)
    # The checkpoint's own config is the base; a --config file and overrides go on top.
    stored = read_checkpoint(checkpoint)["config"]
    cfg = load_config(config, overrides, base=stored)
    split = evaluation_split(cfg, split)
    dataset = build_dataset(cfg.data, split, spec=spec, train=False)
    if cfg.eval.max_samples:
        dataset = torch.utils.data.Subset(dataset, range(min(len(dataset), int(cfg.eval.max_samples))))
    loader = build_dataloader(dataset, batch_size=cfg.eval.batch_size, shuffle=False,
                              num_workers=cfg.data.num_workers, seed=0)
    metrics = evaluate_model(model, loader, spec, cfg.eval)
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        "dataset": cfg.data.dataset,
        "num_samples": len(dataset),
        "metrics": metrics,
    }


def make_image_grid(
    image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, pred: torch.Tensor, spec: ModelSpec
) -> np.ndarray:
    """Rows of RGB | GT | prediction | abs error (HWC uint8 RGB) for TensorBoard."""
    rows = []
    for i in range(image.shape[0]):
        rgb = image[i].permute(1, 2, 0).cpu().numpy().astype(np.uint8)
        gt = depth[i, 0].cpu().numpy()
        valid = mask[i, 0].cpu().numpy().astype(bool)
        prediction = pred[i, 0].cpu().numpy()
        error = np.where(valid, np.abs(prediction - gt), np.nan)
        panels = [
            rgb,
            _to_rgb(colorize_depth(np.where(valid, gt, np.nan), spec.min_depth, spec.max_depth)),
            _to_rgb(colorize_depth(prediction, spec.min_depth, spec.max_depth)),
            _error_panel(error, cap=max(spec.max_depth * 0.2, 1e-3)),
        ]
        rows.append(np.concatenate(panels, axis=1))
    return np.concatenate(rows, axis=0)


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _error_panel(error: np.ndarray, cap: float) -> np.ndarray:
    """Absolute error, 0 (dark) to ``cap`` metres (bright), invalid pixels black."""
    # colorize_depth maps small values to the warm end; flip so that big errors are bright.
    return _to_rgb(colorize_depth(cap - np.minimum(error, cap), 0.0, cap, colormap="inferno"))
