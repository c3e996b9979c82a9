"""Benchmark protocol (metrics at ground-truth resolution), the held-out validation split that
selects best.pt, and the two-root KITTI / NYU border-crop layouts, on NYU- and KITTI-format files
each test writes itself."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.errors import ConfigError
from edgedepth.metrics import crop_mask
from edgedepth.spec import ModelSpec
from edgedepth.training.checkpoint import save_checkpoint
from edgedepth.training.cli import eval_main
from edgedepth.training.config import config_to_dict, load_config
from edgedepth.training.data import build_dataloader, build_dataset, build_raw_dataset
from edgedepth.training.data.holdout import holdout_indices
from edgedepth.training.evaluate import evaluate_model, resize_prediction
from edgedepth.training.model import create_model
from edgedepth.training.trainer import Trainer

GT_H, GT_W = 48, 64  # NYU's 480x640 scaled by 1/10: 4:3, so a 5:4 network input stretches it
NET = 32


class ConstantDepth(torch.nn.Module):
    """A 'network' that predicts ``value`` metres everywhere, at the network size."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, x.shape[2], x.shape[3]), self.value)


def stripes(height: int = GT_H, width: int = GT_W) -> np.ndarray:
    """1-pixel vertical stripes of 1 m and 3 m: any resize of the GT to the network changes its metrics."""
    depth = np.ones((height, width), np.float32)
    depth[:, 1::2] = 3.0
    return depth


def write_nyu_h5(path: Path, depth: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(len(str(path))).integers(0, 255, (3,) + depth.shape, dtype=np.uint8)
    with h5py.File(path, "w") as handle:  # FastDepth's layout: rgb 3xHxW uint8, depth HxW metres
        handle.create_dataset("rgb", data=rgb)
        handle.create_dataset("depth", data=depth)


def nyu_overrides(root: Path, tmp_path: Path, **extra) -> list:
    values = {
        "data.dataset": "nyu", "data.root": str(root), "data.height": NET, "data.width": NET,
        "data.num_workers": 0, "eval.crop": "eigen_nyu", "eval.batch_size": 2,
        "train.output_dir": str(tmp_path / "run"), "train.device": "cpu",
        "model.decoder_channels": "[32,16,16,8,8]",
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


def expected_stripes_metrics(crop: str = "eigen_nyu") -> tuple:
    """(num_valid, abs_rel) of a constant 2 m prediction on :func:`stripes` inside ``crop``, at GT size."""
    gt, inside = stripes(), crop_mask(GT_H, GT_W, crop)
    return int(inside.sum()), float(np.mean(np.abs(2.0 - gt[inside]) / gt[inside]))


def test_nyu_metrics_are_computed_at_ground_truth_resolution_inside_the_eigen_crop(tmp_path):
    for index in range(2):
        write_nyu_h5(tmp_path / "nyu" / "val" / "scene" / f"{index:05d}.h5", stripes())  # FastDepth's test folder
    cfg = load_config("base", nyu_overrides(tmp_path / "nyu", tmp_path))
    dataset = build_dataset(cfg.data, "test", spec=ModelSpec(height=NET, width=NET), train=False)
    loader = build_dataloader(dataset, batch_size=2)
    metrics = evaluate_model(ConstantDepth(2.0), loader, dataset.spec, cfg.eval)
    count, abs_rel = expected_stripes_metrics()
    # A GT resized to 32x32 has 1024 pixels and one stripe parity only: abs_rel 1 or 1/3, not ~2/3.
    assert metrics["num_valid"] == 2 * count
    assert metrics["abs_rel"] == pytest.approx(abs_rel, rel=1e-6)


def test_depth_eval_json_states_the_protocol_and_evaluates_the_test_split_at_gt_size(tmp_path):
    for index in range(3):
        write_nyu_h5(tmp_path / "nyu" / "val" / f"{index:05d}.h5", stripes())
    cfg = load_config("base", nyu_overrides(tmp_path / "nyu", tmp_path))
    from edgedepth.training.config import spec_from_config

    model = create_model(spec_from_config(cfg), pretrained="none")
    save_checkpoint(tmp_path / "model.pt", model, model.spec, config=config_to_dict(cfg))
    out = tmp_path / "metrics.json"
    assert eval_main(["--checkpoint", str(tmp_path / "model.pt"), "--split", "test", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    protocol = result["protocol"]
    assert protocol["split"] == "test" and protocol["split_source"] == "the official test split"
    assert protocol["crop"] == "eigen_nyu" and protocol["max_depth"] == 10.0 and protocol["min_depth"] == 0.1
    assert protocol["resolution"].startswith("ground truth")
    assert protocol["gt_sizes"] == [[GT_H, GT_W]] and protocol["network_input"] == [NET, NET]
    assert result["metrics"]["num_valid"] == 3 * expected_stripes_metrics()[0]


def test_prediction_is_resized_to_the_gt_like_cv2_bilinear():
    pred = torch.from_numpy(np.random.default_rng(0).uniform(1, 5, (1, 8, 12)).astype(np.float32))
    ours = resize_prediction(pred, (30, 40))
    theirs = cv2.resize(pred[0].numpy(), (40, 30), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


# --- KITTI: the BTS / AdaBins two-tree layout ------------------------------------------------


def write_kitti_frame(raw: Path, gt: Path, drive: str, frame: int, size: tuple, rng) -> tuple:
    """An RGB frame under raw/ and its sparse annotated depth under gt/, as the BTS lists name them."""
    day = drive[:10]
    rgb_rel = f"{day}/{drive}_sync/image_02/data/{frame:010d}.png"
    gt_rel = f"{drive}_sync/proj_depth/groundtruth/image_02/{frame:010d}.png"
    (raw / rgb_rel).parent.mkdir(parents=True, exist_ok=True)
    (gt / gt_rel).parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(raw / rgb_rel), rng.integers(0, 255, size + (3,), dtype=np.uint8))
    depth = np.where(rng.random(size) < 0.1, 2560, 0).astype(np.uint16)  # 10% LiDAR returns at 10 m
    assert cv2.imwrite(str(gt / gt_rel), depth)
    return rgb_rel, gt_rel, depth > 0


def test_kitti_two_root_layout_loads_and_evaluates_every_lidar_point_in_the_garg_crop(tmp_path):
    rng = np.random.default_rng(0)
    raw, gt = tmp_path / "kitti_raw", tmp_path / "data_depth_annotated"
    frames = [write_kitti_frame(raw, gt, "2011_09_26_drive_0002", 5, (30, 100), rng),
              write_kitti_frame(raw, gt, "2011_09_26_drive_0009", 7, (28, 96), rng)]  # KITTI sizes differ per drive
    test_list = tmp_path / "eigen_test_files.txt"
    test_list.write_text("".join(f"{rgb} {depth} 721.5377\n" for rgb, depth, _ in frames))
    overrides = ["data.dataset=kitti", f"data.root={raw}", f"data.gt_root={gt}", f"data.test_list={test_list}",
                 "data.height=32", "data.width=64", "data.max_depth=80.0", "eval.crop=garg_kitti"]
    cfg = load_config("base", overrides)
    dataset = build_dataset(cfg.data, "test", train=False)
    metrics = evaluate_model(ConstantDepth(10.0), build_dataloader(dataset, batch_size=2), dataset.spec, cfg.eval,
                             edge_metrics=False)
    expected = sum(int((valid & crop_mask(*valid.shape, "garg_kitti")).sum()) for _, _, valid in frames)
    assert expected > 0 and metrics["num_valid"] == expected
    assert metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert "edge_abs_rel" not in metrics


def test_kitti_holdout_keeps_drives_whole(tmp_path):
    rng = np.random.default_rng(1)
    raw, gt = tmp_path / "raw", tmp_path / "gt"
    lines = []
    for drive in range(6):
        for frame in range(3):
            rgb, depth, _ = write_kitti_frame(raw, gt, f"2011_09_26_drive_{drive:04d}", frame, (8, 16), rng)
            lines.append(f"{rgb} {depth} 721.5377\n")
    (tmp_path / "train.txt").write_text("".join(lines))
    cfg = load_config("base", ["data.dataset=kitti", f"data.root={raw}", f"data.gt_root={gt}",
                               f"data.train_list={tmp_path / 'train.txt'}", "data.holdout_fraction=0.3"])
    drives = {role: {name.split("/")[1] for name in (s["name"] for s in build_raw_dataset(cfg.data, role))}
              for role in ("train", "val")}
    assert drives["train"] and drives["val"] and not drives["train"] & drives["val"]
    assert len(drives["train"] | drives["val"]) == 6


# --- model selection -------------------------------------------------------------------------


def test_holdout_is_seeded_scene_disjoint_and_never_everything():
    groups = [f"scene{i // 4}" for i in range(40)]  # 10 scenes of 4 frames
    kept, held = holdout_indices(groups, 0.2, seed=3)
    assert holdout_indices(groups, 0.2, seed=3) == (kept, held)
    assert holdout_indices(groups, 0.2, seed=4) != (kept, held)
    assert len(held) == 8 and sorted(kept + held) == list(range(40))
    assert not {groups[i] for i in kept} & {groups[i] for i in held}
    assert holdout_indices(["a", "a", "b"], 0.9, seed=0)[0], "at least one scene stays in training"


def test_best_checkpoint_is_chosen_on_scenes_held_out_of_train_never_on_the_test_split(tmp_path):
    root = tmp_path / "nyu"
    rng = np.random.default_rng(2)
    for scene in range(4):
        for frame in range(3):
            write_nyu_h5(root / "train" / f"scene_{scene}" / f"{frame:05d}.h5",
                         rng.uniform(1, 5, (GT_H, GT_W)).astype(np.float32))
    (root / "val").mkdir(parents=True)
    (root / "val" / "00001.h5").write_bytes(b"not an HDF5 file")  # the official test split: reading it fails
    overrides = nyu_overrides(root, tmp_path, **{
        "data.holdout_fraction": 0.25, "train.steps": 2, "train.batch_size": 2, "train.eval_every": 1,
        "train.log_every": 1, "train.image_every": 100, "train.checkpoint_every": 100, "train.precise_bn_batches": 1,
        "train.amp": "none",
    })
    trainer = Trainer(load_config("base", overrides))
    try:
        train_names = {trainer.train_loader.dataset.raw[i]["name"] for i in range(len(trainer.train_loader.dataset))}
        val_names = {sample["name"] for sample in trainer.val_loader.dataset.raw}
        trainer.train()  # validates at every step: a read of the test split would raise DataError
    finally:
        trainer.close()
    scene = lambda name: name.split("/")[1]  # noqa: E731  train/<scene>/<frame>.h5
    assert val_names and train_names and not {scene(n) for n in val_names} & {scene(n) for n in train_names}
    assert all(name.startswith("train/") for name in val_names | train_names)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_validation_on_the_test_split_is_refused(tmp_path):
    cfg = load_config("base", ["data.dataset=nyu", f"data.root={tmp_path}", "data.val_split=test"])
    with pytest.raises(ConfigError, match="best.pt would be chosen on test data"):
        build_raw_dataset(cfg.data, "val")


def test_nyu_training_frames_lose_the_registration_border_evaluation_frames_keep_it(tmp_path):
    depth = np.full((480, 640), 2.0, np.float32)
    for scene in ("a", "b"):
        write_nyu_h5(tmp_path / "train" / scene / "00001.h5", depth)
    write_nyu_h5(tmp_path / "val" / "00001.h5", depth)
    cfg = load_config("base", ["data.dataset=nyu", f"data.root={tmp_path}"])
    train = build_raw_dataset(cfg.data, "train")
    assert len(train) == 1 and train[0]["depth"].shape == (472 - 45, 608 - 43)  # BTS's box
    assert train[0]["rgb"].shape == (427, 565, 3)
    assert build_raw_dataset(cfg.data, "val")[0]["depth"].shape == (480, 640)  # the held-out scene: whole
    assert build_raw_dataset(cfg.data, "test")[0]["depth"].shape == (480, 640)
    cfg = load_config("base", ["data.dataset=nyu", f"data.root={tmp_path}", "data.border_crop=false"])
    assert build_raw_dataset(cfg.data, "train")[0]["depth"].shape == (480, 640)


def test_nyu_labeled_mat_holdout_keeps_its_scenes_whole(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    scenes = ["bedroom_0001", "bedroom_0001", "kitchen_0003", "kitchen_0003", "office_0002", "office_0002",
              "study_0004", "study_0004"]
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w", userblock_size=512) as handle:  # v7.3: MATLAB's column-major arrays
        handle["images"] = np.zeros((len(scenes), 3, 8, 6), np.uint8)
        handle["depths"] = np.ones((len(scenes), 8, 6), np.float32)
        # A MATLAB cell array of strings: a 1xN array of references to uint16 character columns.
        refs = handle.create_dataset("scenes", (1, len(scenes)), dtype=h5py.ref_dtype)
        for index, name in enumerate(scenes):
            text = handle.create_dataset(f"#refs#/s{index}", data=np.array([[ord(c)] for c in name], np.uint16))
            refs[0, index] = text.ref
    scipy_io.savemat(str(tmp_path / "splits.mat"), {"trainNdxs": np.arange(1, 9)[:, None],
                                                    "testNdxs": np.array([[1]])})
    cfg = load_config("base", ["data.dataset=nyu", f"data.root={tmp_path}", "data.holdout_fraction=0.25"])
    names = {role: [s["name"] for s in build_raw_dataset(cfg.data, role)] for role in ("train", "val")}
    held = {scenes[int(name) - 1] for name in names["val"]}  # names are the 1-based frame numbers
    kept = {scenes[int(name) - 1] for name in names["train"]}
    assert len(names["val"]) == 2 and len(held) == 1 and not held & kept and len(names["train"]) == 6


def test_eval_max_samples_spreads_over_the_held_out_scenes_instead_of_taking_the_first():
    from edgedepth.training.evaluate import limit_samples

    frames = [f"scene{i // 5}/{i % 5}" for i in range(20)]  # a holdout is ordered scene by scene
    limited = limit_samples(frames, 4)
    assert {limited[i].split("/")[0] for i in range(len(limited))} == {"scene0", "scene1", "scene2", "scene3"}
    assert limit_samples(frames, 0) is frames and limit_samples(frames, 50) is frames
