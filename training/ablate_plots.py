"""The figures of ``depth-ablate``: loss and validation curves, a metric chart, one scene per config.

matplotlib's object API with the Agg canvas (``Figure`` + ``savefig``): no pyplot state, no
window, works without a display. Every PNG is written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from edgedepth.io import atomic_path
from edgedepth.training.ablate import COMPARED_METRICS, RunScalars, config_label, share_tag

#: Panels of the curve figure: (title, tag or share term). ``share:`` panels read the share tag.
CURVE_PANELS = (
    ("loss/ssi (unweighted)", "loss/ssi"), ("loss/silog (unweighted)", "loss/silog"),
    ("loss/grad (unweighted)", "loss/grad"), ("loss/total (weighted)", "loss/total"),
    ("share of ssi", "share:ssi"), ("share of silog", "share:silog"), ("share of grad", "share:grad"),
    ("validation abs_rel", "val/abs_rel"),
)
CURVES_PNG = "loss_curves.png"
METRICS_PNG = "metrics.png"


def write_figures(out_dir: Path, data: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                  scalars: Mapping[str, RunScalars]) -> List[str]:
    """Write every figure into ``out_dir``; returns their file names (relative to it).
    ``scalars``: each row's run_dir -> its TensorBoard scalars (ablate.read_scalars)."""
    from matplotlib.figure import Figure  # noqa: F401  (fails here, early, when matplotlib is missing)

    runs_by_config: Dict[str, List[str]] = {}
    for row in sorted(rows, key=lambda r: (r["config"], r["seed"])):
        runs_by_config.setdefault(row["config"], []).append(row["run_dir"])
    curves = {config: [scalars[run_dir] for run_dir in run_dirs] for config, run_dirs in runs_by_config.items()}
    names = [_save(loss_curves(curves), out_dir / CURVES_PNG)]
    names.append(_save(metric_chart(data["summary"]), out_dir / METRICS_PNG))
    for config, run_dirs in runs_by_config.items():
        figure = scene_figure(config, Path(run_dirs[0]))
        if figure is not None:
            names.append(_save(figure, out_dir / f"scene_{config}.png"))
    return names


def _save(figure: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    return path.name


def _curve(runs: Sequence[Mapping[str, Tuple[List[int], List[float]]]], key: str
           ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Steps and per-seed values (seeds x steps) at the steps every seed logged.

    ``runs``: each seed's scalars (:func:`read_scalars`)."""
    series = []
    for scalars in runs:
        tag = share_tag(scalars, key.split(":", 1)[1]) if key.startswith("share:") else key
        if tag is None or tag not in scalars:
            return None
        series.append(dict(zip(*scalars[tag])))
    steps = sorted(set.intersection(*(set(s) for s in series)))
    if not steps:
        return None
    return np.array(steps), np.array([[s[step] for step in steps] for s in series])


def loss_curves(scalars: Mapping[str, Sequence[RunScalars]]) -> Any:
    """One panel per term and share, plus the validation curve: mean over seeds, min-max shaded.
    ``scalars``: per config, each seed's TensorBoard scalars."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 7), layout="constrained")
    axes = figure.subplots(2, 4).ravel()
    colours = _colours(len(scalars))
    for axis, (title, key) in zip(axes, CURVE_PANELS):
        for colour, config in zip(colours, scalars):
            curve = _curve(scalars[config], key)
            if curve is None:
                continue
            steps, values = curve
            axis.plot(steps, values.mean(axis=0), color=colour, label=f"{config} (n={len(values)})", lw=1.2)
            if len(values) > 1:
                axis.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2, lw=0)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=8)
        if key.startswith("loss/"):  # the terms fall by orders of magnitude; shares and val do not
            axis.set_yscale("log")
    axes[0].legend(fontsize=7)
    figure.suptitle("Mean over seeds; shaded: min to max over seeds", fontsize=10)
    return figure


def metric_chart(summary: Sequence[Mapping[str, Any]]) -> Any:
    """A bar per config for each compared metric, with its 95% interval as the error bar."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * len(COMPARED_METRICS) // 2 + 2, 7), layout="constrained")
    axes = figure.subplots(2, (len(COMPARED_METRICS) + 1) // 2).ravel()
    configs = [entry["config"] for entry in summary]
    colours = _colours(len(configs))
    for axis, metric in zip(axes, COMPARED_METRICS):
        means, errors = [], []
        for entry in summary:
            stat = entry["metrics"].get(metric, {})
            mean = stat.get("mean")
            means.append(np.nan if mean is None else mean)
            ci = stat.get("ci95")
            errors.append(0.0 if ci is None else (ci[1] - ci[0]) / 2)
        axis.bar(range(len(configs)), means, yerr=errors, color=colours, capsize=3)
        axis.set_xticks(range(len(configs)), configs, rotation=45, ha="right", fontsize=8)
        axis.set_title(metric, fontsize=10)
        finite = [m for m in means if np.isfinite(m)]
        if finite:  # zoom on the differences; bars from 0 would hide them
            low, high = min(finite), max(finite)
            pad = max(high - low, 1e-3) + max(errors)
            axis.set_ylim(low - pad, high + pad)
    for axis in axes[len(COMPARED_METRICS):]:
        axis.set_visible(False)
    n = ", ".join(f"{entry['config']} n={entry['n']}" for entry in summary)
    figure.suptitle(f"Mean over seeds, error bar: 95% t-interval of the mean (none with n=1) — {n}", fontsize=9)
    return figure


def _colours(count: int) -> List[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return [palette(i % 10) for i in range(count)]


def predict_scene(run_dir: Path, index: int = 0) -> Dict[str, np.ndarray]:
    """RGB, ground truth, valid mask and prediction of validation scene ``index`` of a run.

    The run's own config (``config.yaml``) and ``last.pt``; the prediction is resized to the
    ground truth's size when they differ (bilinear, as depth-eval does).
    """
    import torch

    from edgedepth.training.checkpoint import load_checkpoint
    from edgedepth.training.config import load_config
    from edgedepth.training.data import build_dataset, normalize_torch
    from edgedepth.training.evaluate import evaluation_split, resize_prediction
    from edgedepth.training.trainer import CHECKPOINT_DIR, LAST_CHECKPOINT

    cfg = load_config(run_dir / "config.yaml")
    model, spec = load_checkpoint(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT)
    sample = build_dataset(cfg.data, evaluation_split(cfg), spec=spec, train=False)[index]
    model.eval()
    # Evaluation samples carry the ground truth at its own resolution, where depth-eval scores.
    gt = np.squeeze(sample["gt_depth"].numpy())
    valid = np.squeeze(sample["gt_mask"].numpy()).astype(bool)
    with torch.no_grad():  # the image is at the network's size, as evaluate_model feeds it
        pred = resize_prediction(model(normalize_torch(sample["image"][None], spec)).float()[0], gt.shape)
    rgb = sample["image"].permute(1, 2, 0).numpy().astype(np.uint8)
    return {"rgb": rgb, "gt": gt, "valid": valid, "pred": pred,
            "min_depth": np.float32(spec.min_depth), "max_depth": np.float32(spec.max_depth)}


def scene_figure(config: str, run_dir: Path) -> Any:
    """RGB | GT | prediction | |error| | depth edges (GT red, predicted green, both yellow)."""
    from matplotlib.figure import Figure

    from edgedepth.metrics import compute_edge_metrics, depth_edges

    scene = predict_scene(run_dir)
    gt, pred, valid = scene["gt"], scene["pred"], scene["valid"]
    low, high = float(scene["min_depth"]), float(scene["max_depth"])
    error = np.where(valid, np.abs(pred - gt), np.nan)
    edges_gt, edges_pred = depth_edges(gt, valid), depth_edges(pred, valid)
    overlay = np.zeros(gt.shape + (3,), np.float32)
    overlay[..., 0] = edges_gt
    overlay[..., 1] = edges_pred
    boundary = compute_edge_metrics(pred, gt, valid, min_depth=low, max_depth=high)
    figure = Figure(figsize=(17, 3.6), layout="constrained")
    axes = figure.subplots(1, 5)
    axes[0].imshow(scene["rgb"])
    axes[0].set_title("RGB")
    shown = axes[1].imshow(np.where(valid, gt, np.nan), cmap="turbo_r", vmin=low, vmax=high)
    axes[1].set_title("ground truth (m)")
    axes[2].imshow(pred, cmap="turbo_r", vmin=low, vmax=high)
    axes[2].set_title("prediction (m)")
    figure.colorbar(shown, ax=axes[1:3], shrink=0.8)
    err = axes[3].imshow(error, cmap="inferno", vmin=0.0, vmax=max(0.2 * high, 1e-3))
    axes[3].set_title("|error| (m)")
    figure.colorbar(err, ax=axes[3], shrink=0.8)
    axes[4].imshow(overlay)
    axes[4].set_title(f"edges: GT red, pred green (F1 {boundary['boundary_f1']:.2f})")
    for axis in axes:
        axis.set_axis_off()
    figure.suptitle(f"{config_label(config)}: validation scene 0, {run_dir.name}", fontsize=10)
    return figure
