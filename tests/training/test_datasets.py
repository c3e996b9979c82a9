"""RGB-D file readers and the dataset factory, on tiny files each test writes itself."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.errors import ConfigError, DataError
from edgedepth.spec import ModelSpec
from edgedepth.training.config import DataConfig
from edgedepth.training.data import (
    DIODE,
    DepthFolder,
    KITTIDepth,
    NYUDepthV2,
    PreparedDataset,
    build_dataloader,
    build_dataset,
    build_raw_dataset,
)

H, W = 4, 6  # not square, so a transposed read cannot pass


def rgb_pattern(height: int = H, width: int = W) -> np.ndarray:
    """Asymmetric RGB: R encodes the row, G the column, B is constant."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([ys * 40, xs * 30, np.full_like(ys, 200)], axis=-1).astype(np.uint8)


def depth_pattern(height: int = H, width: int = W) -> np.ndarray:
    """Depth in metres, 1 + row + col / 10: every pixel distinct, row/col readable back."""
    ys, xs = np.mgrid[0:height, 0:width]
    return (1.0 + ys + xs / 10.0).astype(np.float32)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])  # OpenCV writes BGR


def write_png16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), values.astype(np.uint16))


def write_folder_pair(split_dir: Path, stem: str, depth_values: np.ndarray, depth_ext: str = ".png") -> None:
    write_rgb(split_dir / "rgb" / f"{stem}.png", rgb_pattern())
    depth_path = split_dir / "depth" / f"{stem}{depth_ext}"
    if depth_ext == ".npy":
        depth_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(depth_path, depth_values)
    else:
        write_png16(depth_path, depth_values)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- KITTI -----------------------------------------------------------------------------------


def kitti_root(tmp_path: Path) -> Path:
    depth = np.full((H, W), 2560, np.uint16)
    depth[0, :] = 0  # no LiDAR return
    write_rgb(tmp_path / "raw/seq/a.png", rgb_pattern())
    write_png16(tmp_path / "gt/seq/a.png", depth)
    (tmp_path / "train.txt").write_text("raw/seq/a.png gt/seq/a.png 721.5377\nraw/seq/b.png None 721.5377\n\n")
    return tmp_path


def test_kitti_png_value_2560_is_10_metres_and_zero_is_invalid(tmp_path):
    dataset = KITTIDepth(str(kitti_root(tmp_path)), "train")
    assert len(dataset) == 1  # the "None" ground-truth line is left out
    sample = dataset[0]
    assert sample["depth"].dtype == np.float32 and sample["depth"][1, 0] == pytest.approx(10.0)
    assert not sample["mask"][0].any() and sample["mask"][1:].all()
    np.testing.assert_array_equal(sample["rgb"], rgb_pattern())  # RGB order, not OpenCV's BGR
    assert sample["name"] == os.path.join("raw", "seq", "a.png")


def test_kitti_missing_list_file_names_it(tmp_path):
    with pytest.raises(DataError, match="val.txt"):
        KITTIDepth(str(tmp_path), "val")


def test_kitti_one_field_line_names_the_line(tmp_path):
    (tmp_path / "train.txt").write_text("only_rgb.png\n")
    with pytest.raises(DataError, match="line 1"):
        KITTIDepth(str(tmp_path), "train")


# --- folder ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scale, stored, metres", [(1000.0, 1500, 1.5), (5000.0, 5000, 1.0), (256.0, 2560, 10.0)])
def test_folder_png_depth_scale(tmp_path, scale, stored, metres):
    write_folder_pair(tmp_path / "train", "f0", np.full((H, W), stored, np.uint16))
    sample = DepthFolder(str(tmp_path), "train", depth_scale=scale)[0]
    np.testing.assert_allclose(sample["depth"], metres, rtol=1e-6)
    np.testing.assert_array_equal(sample["rgb"], rgb_pattern())


def test_folder_npy_is_metres_and_nonfinite_is_invalid(tmp_path):
    depth = depth_pattern()
    depth[2, 3] = np.nan
    write_folder_pair(tmp_path, "f0", depth, ".npy")  # flat root/rgb + root/depth layout
    sample = DepthFolder(str(tmp_path), "train")[0]
    assert sample["depth"][3, 5] == pytest.approx(4.5)
    assert not sample["mask"][2, 3] and sample["depth"][2, 3] == 0.0  # no NaN left for a loss to hit
    assert sample["mask"].sum() == H * W - 1


def test_folder_unmatched_files_are_listed_or_skipped(tmp_path):
    write_folder_pair(tmp_path, "pair", np.ones((H, W), np.uint16))
    write_rgb(tmp_path / "rgb" / "lonely.png", rgb_pattern())
    with pytest.raises(DataError, match="lonely.png"):
        DepthFolder(str(tmp_path), "train")
    dataset = DepthFolder(str(tmp_path), "train", skip_corrupt=True)
    assert len(dataset) == 1 and dataset.skipped_count == 1


def test_folder_rejects_8bit_depth_png(tmp_path):
    write_folder_pair(tmp_path, "f0", np.ones((H, W), np.uint16))
    assert cv2.imwrite(str(tmp_path / "depth" / "f0.png"), np.ones((H, W), np.uint8))
    with pytest.raises(DataError, match="16-bit"):
        DepthFolder(str(tmp_path), "train")[0]


def test_empty_folder_names_root_and_pattern(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    with pytest.raises(DataError, match=r"no samples found under .*rgb/<name>"):
        DepthFolder(str(tmp_path), "train")


# --- corrupt files and skip_corrupt ----------------------------------------------------------


def three_pairs(tmp_path: Path) -> Path:
    for index in range(3):
        write_folder_pair(tmp_path, f"s{index}", np.full((H, W), 1000 * (index + 1), np.uint16))
    return tmp_path


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_bad_file_raises_data_error_naming_it(tmp_path, damage):
    root = three_pairs(tmp_path)
    bad = root / "depth" / "s1.png"
    dataset = DepthFolder(str(root), "train")
    if damage == "truncate":
        truncate(bad)
    elif damage == "garbage":
        bad.write_bytes(b"\x00not a png at all" * 8)
    else:
        bad.unlink()
    with pytest.raises(DataError, match="s1.png"):
        dataset[1]
    assert dataset[0]["depth"][0, 0] == pytest.approx(1.0)  # the rest stays readable


def test_skip_corrupt_serves_next_index_and_counts(tmp_path):
    root = three_pairs(tmp_path)
    truncate(root / "rgb" / "s1.png")
    dataset = DepthFolder(str(root), "train", skip_corrupt=True)
    sample = dataset[1]
    assert sample["name"] == os.path.join("rgb", "s2.png")
    assert dataset.skipped_count == 1
    assert dataset[1]["name"] == sample["name"]  # deterministic replacement


def test_skip_corrupt_with_nothing_readable_raises(tmp_path):
    root = three_pairs(tmp_path)
    for index in range(3):
        (root / "rgb" / f"s{index}.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="unreadable"):
        DepthFolder(str(root), "train", skip_corrupt=True)[0]


# --- NYU -------------------------------------------------------------------------------------


def write_nyu_h5(path: Path, rgb: np.ndarray, depth: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle["rgb"] = rgb.transpose(2, 0, 1)  # FastDepth stores 3xHxW
        handle["depth"] = depth


def test_nyu_h5_layout_reads_rgb_and_depth_upright(tmp_path):
    write_nyu_h5(tmp_path / "train" / "kitchen_0001" / "00001.h5", rgb_pattern(), depth_pattern())
    write_nyu_h5(tmp_path / "val" / "official" / "00001.h5", rgb_pattern(), depth_pattern())
    dataset = NYUDepthV2(str(tmp_path), "train")
    sample = dataset[0]
    assert len(dataset) == 1
    np.testing.assert_array_equal(sample["rgb"], rgb_pattern())
    np.testing.assert_array_equal(sample["depth"], depth_pattern())
    assert sample["name"] == os.path.join("train", "kitchen_0001", "00001.h5")


def test_nyu_corrupt_h5_names_file(tmp_path):
    bad = tmp_path / "train" / "scene" / "00002.h5"
    write_nyu_h5(bad, rgb_pattern(), depth_pattern())
    truncate(bad)
    with pytest.raises(DataError, match="00002.h5"):
        NYUDepthV2(str(tmp_path), "train")[0]


def nyu_frames(count: int):
    """Frames that differ per index (frame n adds 10 n to depth and n to every pixel)."""
    return [(rgb_pattern() + n, depth_pattern() + 10 * n) for n in range(count)]


def write_labeled_mat(path: Path, frames) -> None:
    """The v7.3 (HDF5) layout of nyu_depth_v2_labeled.mat: MATLAB's column-major order."""
    with h5py.File(path, "w", userblock_size=512) as handle:  # .mat v7.3 keeps a 512-byte header
        handle["images"] = np.stack([rgb.transpose(2, 1, 0) for rgb, _ in frames])  # N x 3 x W x H
        handle["depths"] = np.stack([depth.T for _, depth in frames])  # N x W x H


def test_nyu_labeled_mat_transposes_frames_and_reads_index_list(tmp_path):
    frames = nyu_frames(4)
    write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", frames)
    (tmp_path / "train_ids.txt").write_text("1\n3\n")  # 1-based, like splits.mat
    dataset = NYUDepthV2(str(tmp_path), "train", list_file=str(tmp_path / "train_ids.txt"))
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample["rgb"].shape == (H, W, 3) and sample["depth"].shape == (H, W)
    np.testing.assert_array_equal(sample["rgb"], frames[2][0])
    np.testing.assert_array_equal(sample["depth"], frames[2][1])
    assert sample["name"] == "0003"


def test_nyu_labeled_mat_official_splits_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    frames = nyu_frames(5)
    write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", frames)
    splits = {"trainNdxs": np.array([[1], [2], [4]]), "testNdxs": np.array([[3], [5]])}
    scipy_io.savemat(str(tmp_path / "splits.mat"), splits)
    test = NYUDepthV2(str(tmp_path / "nyu_depth_v2_labeled.mat"), "test")
    assert len(test) == 2
    np.testing.assert_array_equal(test[1]["depth"], frames[4][1])
    assert len(NYUDepthV2(str(tmp_path), "train")) == 3
    with pytest.raises(DataError, match="NYU has no validation split"):  # "val" once meant testNdxs
        NYUDepthV2(str(tmp_path), "val")


def test_nyu_mat_without_split_says_how_to_give_one(tmp_path):
    write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", nyu_frames(2))
    with pytest.raises(DataError, match="splits.mat is missing.*train_list"):
        NYUDepthV2(str(tmp_path), "train")
    (tmp_path / "ids.txt").write_text("0\n")
    with pytest.raises(DataError, match="1-based"):
        NYUDepthV2(str(tmp_path), "train", list_file=str(tmp_path / "ids.txt"))


def test_nyu_mat_reads_in_a_forked_worker_after_main_process_read(tmp_path):
    frames = nyu_frames(3)
    write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", frames)
    raw = NYUDepthV2(str(tmp_path), "all")
    raw[0]  # opens the handle in this process; the worker must open its own
    loader = build_dataloader(PreparedDataset(raw, (32, 32)), batch_size=3, num_workers=1)
    batch = next(iter(loader))
    assert batch["depth"].shape == (3, 1, 32, 32)
    assert batch["depth"][2].min().item() == pytest.approx(21.0)


def test_empty_nyu_root_names_root_and_pattern(tmp_path):
    with pytest.raises(DataError, match=r"no samples found under .*\*\.h5"):
        NYUDepthV2(str(tmp_path), "train")


# --- DIODE -----------------------------------------------------------------------------------


def test_diode_combines_its_mask_with_depth_validity(tmp_path):
    scan = tmp_path / "val" / "indoors" / "scene_00019" / "scan_00183"
    write_rgb(scan / "00019_00183_indoors_000_010.png", rgb_pattern())
    depth = depth_pattern()
    depth[0, 0] = 0.0
    np.save(scan / "00019_00183_indoors_000_010_depth.npy", depth[..., None])  # HxWx1 as shipped
    diode_mask = np.ones((H, W), np.float32)
    diode_mask[:, -1] = 0
    np.save(scan / "00019_00183_indoors_000_010_depth_mask.npy", diode_mask)
    sample = DIODE(str(tmp_path), "val")[0]
    np.testing.assert_array_equal(sample["depth"], depth)
    expected = (depth > 0) & (diode_mask > 0)
    np.testing.assert_array_equal(sample["mask"], expected)


def test_diode_missing_mask_names_it(tmp_path):
    write_rgb(tmp_path / "train" / "x.png", rgb_pattern())
    np.save(tmp_path / "train" / "x_depth.npy", depth_pattern()[..., None])
    with pytest.raises(DataError, match="x_depth_mask.npy"):
        DIODE(str(tmp_path), "train")[0]


# --- factory ---------------------------------------------------------------------------------


def folder_config(root: Path, **changes) -> DataConfig:
    config = DataConfig(dataset="folder", root=str(root), height=32, width=32, max_depth=10.0)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_factory_unknown_dataset_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'kitti'"):
        build_raw_dataset(DataConfig(dataset="kiti"), "train")


def test_factory_file_dataset_without_root_says_set_data_root():
    with pytest.raises(ConfigError, match="data.root=/path/to/nyu"):
        build_raw_dataset(DataConfig(dataset="nyu"), "train")


def test_factory_missing_root_names_it(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        build_raw_dataset(folder_config(tmp_path / "nowhere"), "train")


def test_factory_maps_split_roles_and_list_files(tmp_path):
    write_folder_pair(tmp_path / "training", "a", np.ones((H, W), np.uint16))
    write_folder_pair(tmp_path / "training", "b", np.ones((H, W), np.uint16))
    write_folder_pair(tmp_path / "testing", "t", np.ones((H, W), np.uint16))
    (tmp_path / "val.txt").write_text("training/rgb/b.png training/depth/b.png\n")
    config = folder_config(tmp_path, train_split="training", test_split="testing", val_list=str(tmp_path / "val.txt"))
    assert len(build_raw_dataset(config, "train")) == 2  # a val_list: nothing is held out of train
    assert len(build_raw_dataset(config, "training")) == 2  # the configured name, as the trainer passes it
    assert [s["name"] for s in build_raw_dataset(config, "val")] == [os.path.join("training", "rgb", "b.png")]
    assert [s["name"] for s in build_raw_dataset(config, "test")] == [os.path.join("testing", "rgb", "t.png")]
    (tmp_path / "train.txt").write_text("training/rgb/a.png training/depth/a.png\n")
    config.train_list = str(tmp_path / "train.txt")
    assert len(build_raw_dataset(config, "training")) == 1  # its list file applies too
    assert build_dataset(config, "training").train and not build_dataset(config, "val").train


def test_build_dataset_prepares_and_masks_beyond_max_depth(tmp_path):
    depth = np.full((H, W), 5000, np.uint16)
    depth[:, :3] = 15000  # 15 m, beyond max_depth 10 m
    write_folder_pair(tmp_path, "far", depth)
    dataset = build_dataset(folder_config(tmp_path), "test")
    assert isinstance(dataset, PreparedDataset) and not dataset.train
    sample = dataset[0]
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 32, 32)
    assert sample["depth"].shape == (1, 32, 32) and sample["mask"].dtype == torch.bool
    far = sample["depth"] > 10
    assert far.any() and sample["depth"].max().item() == pytest.approx(15.0)  # masked, not clipped
    assert torch.equal(sample["mask"], ~far)


def test_build_dataset_uses_given_spec_and_train_flag(tmp_path):
    write_folder_pair(tmp_path, "a", np.full((H, W), 1000, np.uint16))
    spec = ModelSpec(height=64, width=32, max_depth=20.0)
    dataset = build_dataset(folder_config(tmp_path), "test", spec=spec, train=True)
    assert dataset.train and dataset[0]["depth"].shape == (1, 64, 32)


def test_build_dataset_synthetic_dispatch(tmp_path):
    from edgedepth.training.data import SyntheticScenes

    config = DataConfig(dataset="synthetic", height=32, width=32)
    config.synthetic.num_val = 2
    config.synthetic.cache_dir = str(tmp_path)
    dataset = build_dataset(config, "val")
    assert isinstance(dataset.raw, SyntheticScenes) and dataset.raw.split == "val"
    assert len(dataset) == 2 and dataset[0]["depth"].shape == (1, 32, 32)
    assert build_raw_dataset(config, "test").split == "test", "the synthetic test rooms are their own stream"
