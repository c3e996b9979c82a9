"""Evaluation of a network on a dataset split, and the image grid the trainer logs.

Metrics come from the one implementation in :mod:`edgedepth.metrics`; this module runs the
network over a loader and feeds the accumulator at the ground truth's own resolution: each
prediction is resized (bilinear, half-pixel centres as ``cv2.resize``) to its ground-truth frame
(``gt_depth`` / ``gt_mask`` of the evaluation samples), as monodepth2 and BTS do, and the crop,
the depth cap and the min-depth mask apply there. docs/METRICS.md states the protocol; every
``depth-eval`` JSON carries it (:func:`evaluation_protocol`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch
from omegaconf import DictConfig

from edgedepth.colormap import colorize_depth
from edgedepth.errors import EdgeDepthError
from edgedepth.metrics import DepthMetricAccumulator
from edgedepth.spec import ModelSpec

#: Datasets whose ground truth is sparse LiDAR: depth discontinuities cannot be found on it, so
#: the edge-region and boundary metrics would be noise (docs/METRICS.md).
SPARSE_DATASETS = ("kitti",)


def evaluation_split(cfg: DictConfig, split: Optional[str] = None) -> str:
    """The split to evaluate: ``split`` when given, else ``eval.split`` (a role: val or test, or a split name)."""
    return split or str(cfg.eval.split)


def edge_metrics_apply(cfg: DictConfig) -> bool:
    """Edge metrics need dense ground truth: off for sparse-LiDAR datasets (KITTI)."""
    return str(cfg.data.dataset) not in SPARSE_DATASETS


def limit_samples(dataset: Any, max_samples: int) -> Any:
    """At most ``max_samples`` evenly spaced samples of ``dataset`` (0 = all). Evenly spaced, not
    the first ones: a held-out split is ordered by scene, and its first frames are one scene."""
    from edgedepth.media import evenly_spaced

    if not max_samples or max_samples >= len(dataset):
        return dataset
    return torch.utils.data.Subset(dataset, evenly_spaced(len(dataset), int(max_samples)))


def evaluation_protocol(cfg: DictConfig, spec: ModelSpec, split: str) -> Dict[str, Any]:
    """What :func:`evaluate_model` computes, for the output JSON (docs/METRICS.md explains each field)."""
    from edgedepth.training.data.factory import split_role, uses_holdout

    role = split_role(cfg.data, split)
    source = {"train": "the training split", "test": "the official test split"}.get(str(role), f"split {split!r}")
    if role == "val":
        source = (f"held out of the training split: {cfg.data.holdout_fraction:g} of it, whole scenes, seed "
                  f"{cfg.data.holdout_seed}" if uses_holdout(cfg.data) else "the validation split (selects best.pt)")
    return {
        "split": split,
        "split_source": source,
        "resolution": "ground truth; prediction resized to each GT frame (bilinear, half-pixel centres)",
        "crop": str(cfg.eval.crop),
        "min_depth": float(spec.min_depth),
        "max_depth": float(spec.max_depth),
        "valid_pixels": f"GT valid and {spec.min_depth:g} < gt < {spec.max_depth:g} m, inside the crop",
        "prediction_clipped_to": [float(spec.min_depth), float(spec.max_depth)],
        "alignment": str(cfg.eval.alignment),
        "reduction": "mean over images",
        "edge_metrics": edge_metrics_apply(cfg),
    }


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    spec: ModelSpec,
    eval_cfg: DictConfig,
    device: Union[str, torch.device] = "cpu",
    edge_metrics: bool = True,
    gt_sizes: Optional[Set[Tuple[int, int]]] = None,
) -> Dict[str, Any]:
    """Depth (and edge-region) metrics of ``model`` over ``loader`` at ground-truth resolution
    (metres, per-image mean). Under ``torch.distributed`` each rank passes its shard of the data
    and every rank gets the metrics of all shards together. ``gt_sizes``, when given, collects
    the (height, width) of every ground-truth frame evaluated here."""
    from edgedepth.training.data import normalize_torch

    accumulator = DepthMetricAccumulator(
        min_depth=spec.min_depth,
        max_depth=spec.max_depth,
        crop=eval_cfg.crop,
        alignment=eval_cfg.alignment,
        edge_metrics=edge_metrics,
    )
    was_training = model.training
    model.eval()
    for batch in loader:
        if "gt_depth" not in batch:
            raise EdgeDepthError("evaluate_model needs evaluation samples (gt_depth/gt_mask): build the dataset "
                                 "with train=False")
        pred = model(normalize_torch(batch["image"].to(device), spec)).float()
        for index, (gt, mask) in enumerate(zip(batch["gt_depth"], batch["gt_mask"])):
            if gt_sizes is not None:
                gt_sizes.add((int(gt.shape[0]), int(gt.shape[1])))
            accumulator.add(resize_prediction(pred[index], tuple(gt.shape)), gt.numpy(), mask.numpy())
    model.train(was_training)
    return merge_across_ranks(accumulator).compute()


def resize_prediction(pred: torch.Tensor, size: tuple) -> np.ndarray:
    """A 1xhxw prediction resized to the ground truth's HxW (bilinear; ``align_corners=False`` is
    ``cv2.resize``'s INTER_LINEAR pixel-centre convention, which the benchmark scripts use)."""
    if tuple(pred.shape[-2:]) != size:
        pred = torch.nn.functional.interpolate(pred[None], size=size, mode="bilinear", align_corners=False)[0]
    return pred[0].cpu().numpy()


def merge_across_ranks(accumulator: DepthMetricAccumulator) -> DepthMetricAccumulator:
    """Every rank's accumulator merged (identity without an initialised multi-process group)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return accumulator
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, accumulator)
    merged: DepthMetricAccumulator = gathered[0]
    for other in gathered[1:]:
        merged.merge(other)
    return merged


def evaluate_checkpoint(
    checkpoint: Union[str, Path],
    config: Optional[str] = None,
    overrides: Sequence[str] = (),
    split: Optional[str] = None,
) -> Dict[str, Any]:
    """Load a checkpoint, build the evaluation split of its (or the given) config, evaluate.

    Returns ``{"checkpoint", "split", "dataset", "num_samples", "protocol", "metrics"}``.
    """
    from edgedepth.training.checkpoint import load_checkpoint_data
    from edgedepth.training.config import load_config
    from edgedepth.training.data import build_dataloader, build_dataset

    model, spec, stored = load_checkpoint_data(checkpoint)
    # The checkpoint's own config is the base; a --config file and overrides go on top.
    cfg = load_config(config, overrides, base=stored.get("config") or None)
    split = evaluation_split(cfg, split)
    dataset = build_dataset(cfg.data, split, spec=spec, train=False)
    dataset = limit_samples(dataset, int(cfg.eval.max_samples))
    loader = build_dataloader(dataset, batch_size=cfg.eval.batch_size, shuffle=False,
                              num_workers=cfg.data.num_workers, seed=0)
    sizes: Set[Tuple[int, int]] = set()
    metrics = evaluate_model(model, loader, spec, cfg.eval, edge_metrics=edge_metrics_apply(cfg), gt_sizes=sizes)
    protocol = dict(evaluation_protocol(cfg, spec, split), network_input=[spec.height, spec.width],
                    gt_sizes=[list(size) for size in sorted(sizes)])
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        "dataset": cfg.data.dataset,
        "num_samples": len(dataset),
        "protocol": protocol,
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
