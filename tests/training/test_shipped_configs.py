"""Every shipped config builds a model and loss that train at 96x128 and 256x320 on the CPU."""
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.training.config import load_config, shipped_config_names, spec_from_config
from edgedepth.training.losses import DepthLoss
from edgedepth.training.model import create_model


@pytest.mark.parametrize("name", shipped_config_names())
@pytest.mark.parametrize("height,width", [(96, 128), (256, 320)])
def test_config_model_runs_forward_and_backward(name, height, width):
    torch.manual_seed(0)
    cfg = load_config(name, [f"data.height={height}", f"data.width={width}", "model.pretrained=none"])
    spec = spec_from_config(cfg)
    model = create_model(spec)
    loss_fn = DepthLoss.from_config(cfg.loss)
    image = torch.randn(2, 3, height, width)
    target = torch.rand(2, 1, height, width) * (spec.max_depth - 1.0) + 0.5
    mask = torch.rand(2, 1, height, width) > 0.1
    pred = model(image)
    assert pred.shape == (2, 1, height, width)
    assert 0.0 < float(pred.detach().min()) and float(pred.detach().max()) < spec.max_depth
    total, terms = loss_fn(pred, target, mask)
    total.backward()
    assert torch.isfinite(total) and set(terms) == set(loss_fn.term_names)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.encoder.conv1.weight.grad.abs().sum() > 0 and model.head.conv.weight.grad.abs().sum() > 0


def write_nyu_scenes(root, scenes=("bedroom_0001", "kitchen_0002")):
    """FastDepth-layout NYU: train/<scene>/*.h5 and the official test frames in val/, 480x640."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    for folder in [f"train/{scene}" for scene in scenes] + ["val"]:
        (root / folder).mkdir(parents=True)
        with h5py.File(root / folder / "00001.h5", "w") as handle:
            handle.create_dataset("rgb", data=rng.integers(0, 255, (3, 480, 640), dtype=np.uint8))
            handle.create_dataset("depth", data=rng.uniform(0.7, 9.0, (480, 640)).astype(np.float32))


def write_kitti_drives(raw, gt, drives=("2011_09_26_drive_0001", "2011_09_26_drive_0002")):
    """The BTS two-tree KITTI layout at KITTI's 375x1242; returns the list-file lines."""
    import cv2
    import numpy as np

    lines = []
    for drive in drives:
        rgb_rel = f"{drive[:10]}/{drive}_sync/image_02/data/0000000005.png"
        gt_rel = f"{drive}_sync/proj_depth/groundtruth/image_02/0000000005.png"
        (raw / rgb_rel).parent.mkdir(parents=True)
        (gt / gt_rel).parent.mkdir(parents=True)
        cv2.imwrite(str(raw / rgb_rel), np.zeros((375, 1242, 3), np.uint8))
        cv2.imwrite(str(gt / gt_rel), np.full((375, 1242), 2560, np.uint16))
        lines.append(f"{rgb_rel} {gt_rel} 721.5377\n")
    return lines


def test_nyu_config_data_section_builds_at_its_own_size(tmp_path):
    from edgedepth.training.data import build_dataset

    write_nyu_scenes(tmp_path)
    cfg = load_config("nyu", [f"data.root={tmp_path}", "model.pretrained=none"])
    train = build_dataset(cfg.data, "train", spec=spec_from_config(cfg))[0]
    assert train["image"].shape == (3, 256, 320) and train["depth"].shape == (1, 256, 320)
    test = build_dataset(cfg.data, "test", spec=spec_from_config(cfg))[0]
    assert test["gt_depth"].shape == (480, 640) and cfg.eval.crop == "eigen_nyu"


def test_kitti_config_data_section_builds_at_its_own_size(tmp_path):
    from edgedepth.training.data import build_dataset

    raw, gt = tmp_path / "raw", tmp_path / "gt"
    (tmp_path / "list.txt").write_text("".join(write_kitti_drives(raw, gt)))
    cfg = load_config("kitti", [f"data.root={raw}", f"data.gt_root={gt}", f"data.train_list={tmp_path / 'list.txt'}",
                                f"data.test_list={tmp_path / 'list.txt'}", "model.pretrained=none"])
    train = build_dataset(cfg.data, "train", spec=spec_from_config(cfg))[0]
    assert train["image"].shape == (3, 256, 832) and train["mask"].all()
    test = build_dataset(cfg.data, "test", spec=spec_from_config(cfg))[0]
    assert test["gt_depth"].shape == (375, 1242) and float(test["gt_depth"].max()) == 10.0
    # Sparse LiDAR gives the Sobel term no valid 3x3 neighbourhoods: KITTI trains without it.
    assert cfg.loss.gradient_weight == 0.0 and cfg.loss.ssi_weight > 0 and cfg.loss.silog_weight > 0
