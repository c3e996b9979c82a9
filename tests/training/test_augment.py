"""PreparedDataset (resize + augmentation), normalize_torch, and loader reproducibility."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.errors import ConfigError
from edgedepth.preprocess import preprocess
from edgedepth.spec import ModelSpec
from edgedepth.training.config import AugmentConfig
from edgedepth.training.data import PreparedDataset, build_dataloader, normalize_torch

NO_AUGMENT = dict(hflip=False, color_jitter=0.0, scale_min=1.0, scale_max=1.0)


class MemoryDataset(torch.utils.data.Dataset):
    """Raw samples held in memory (the raw dataset contract without files)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples[index]


def raw_sample(rgb, depth, mask=None, name="s"):
    mask = depth > 0 if mask is None else mask
    return {"rgb": rgb, "depth": depth.astype(np.float32), "mask": mask, "name": name}


def ramp_sample(height=32, width=32):
    """Depth ramp 1 + x metres with red = 8 x, and the first column missing (depth 0)."""
    xs = np.tile(np.arange(width), (height, 1))
    rgb = np.stack([xs * 8, np.full_like(xs, 100), np.full_like(xs, 50)], axis=-1).astype(np.uint8)
    depth = (1.0 + xs).astype(np.float32)
    depth[:, 0] = 0.0
    return raw_sample(rgb, depth)


def prepared(samples, size=(32, 32), augment=None, train=True, seed=0, **kwargs):
    return PreparedDataset(MemoryDataset(samples), size, augment, train=train, seed=seed, **kwargs)


def test_flip_moves_rgb_depth_and_mask_together():
    dataset = prepared([ramp_sample()] * 16, augment=dict(NO_AUGMENT, hflip=True))
    flipped = []
    for index in range(len(dataset)):
        sample = dataset[index]
        red, depth, mask = sample["image"][0].float(), sample["depth"][0], sample["mask"][0]
        valid = depth > 0
        assert torch.equal(depth[valid], 1.0 + red[valid] / 8)  # each pixel keeps its own depth
        assert torch.equal(mask, valid)
        flipped.append(bool(depth[0, 1] > depth[0, -1]))
    assert any(flipped) and not all(flipped)  # both outcomes happen


def test_scale_crop_divides_depth_by_the_magnification():
    # 2x magnification: a 32x32 crop of a 64x64 frame fills the 32x32 input instead of the whole frame.
    xs = np.tile(np.arange(64), (64, 1))
    rgb = np.stack([xs * 2] * 3, axis=-1).astype(np.uint8)
    sample = raw_sample(rgb, np.full((64, 64), 4.0))
    dataset = prepared([sample], augment=dict(NO_AUGMENT, scale_min=2.0, scale_max=2.0))
    out = dataset[0]
    np.testing.assert_allclose(out["depth"].numpy(), 2.0)
    red = out["image"][0].float().numpy()
    assert np.diff(red, axis=1).mean() == pytest.approx(2.0)  # vs 4 per pixel without magnification
    eval_red = prepared([sample], train=False)[0]["image"][0].float().numpy()
    assert np.diff(eval_red[:, 1:-1], axis=1).mean() == pytest.approx(4.0, rel=0.02)


def test_random_scale_keeps_apparent_size_over_depth_constant():
    xs = np.tile(np.arange(128), (64, 1))
    rgb = np.stack([xs * 2] * 3, axis=-1).astype(np.uint8)
    sample = raw_sample(rgb, np.full((64, 128), 6.0))
    dataset = prepared([sample] * 12, size=(32, 64), augment=dict(NO_AUGMENT, scale_min=1.0, scale_max=1.5))
    depths, ratios = [], []
    for index in range(len(dataset)):
        out = dataset[index]
        red = out["image"][0].float().numpy()
        depth = float(out["depth"].mean())
        gradient = (red[:, 60] - red[:, 4]).mean() / 56  # red per pixel = scene extent per pixel
        depths.append(depth)
        ratios.append(gradient / depth)
    assert max(depths) - min(depths) > 0.5  # the scale really varied
    np.testing.assert_allclose(ratios, ratios[0], rtol=0.03)


@pytest.mark.parametrize("raw_shape, size", [((45, 61), (32, 32)), ((20, 24), (64, 32))])
@pytest.mark.parametrize("train", [False, True])
def test_depth_resize_never_invents_values(raw_shape, size, train):
    rng = np.random.default_rng(0)
    depth = rng.choice(np.array([0.0, 2.0, 7.0], np.float32), size=raw_shape)
    rgb = rng.integers(0, 255, size=raw_shape + (3,), dtype=np.uint8)
    augment = dict(NO_AUGMENT, hflip=True, color_jitter=0.3)
    for index in range(4):
        out = prepared([raw_sample(rgb, depth)] * 4, size=size, augment=augment, train=train)[index]
        assert set(np.unique(out["depth"].numpy())) <= {0.0, 2.0, 7.0}
        assert torch.equal(out["mask"], out["depth"] > 0)  # mask follows the same nearest pixels


def test_dataset_mask_is_carried_through_resize():
    depth = np.full((64, 64), 3.0, np.float32)
    mask = np.ones((64, 64), bool)
    mask[:, :32] = False  # e.g. DIODE's mask: valid depth values, but not to be trusted
    out = prepared([raw_sample(np.zeros((64, 64, 3), np.uint8), depth, mask)], train=False)[0]
    assert not out["mask"][0, :, :16].any() and out["mask"][0, :, 16:].all()


@pytest.mark.parametrize("train", [True, False])
def test_training_mask_is_the_pixel_set_the_metrics_use(train):
    # Metrics keep min_depth < gt < max_depth; the loss must learn from exactly those pixels.
    depth = np.full((32, 32), 5.0, np.float32)
    depth[:4] = 0.05  # below min_depth 0.1
    depth[4:8] = 10.0  # at max_depth: the metrics drop it (gt < max_depth)
    spec = ModelSpec(height=32, width=32, min_depth=0.1, max_depth=10.0)
    augment = AugmentConfig(hflip=False, color_jitter=0.0)
    out = prepared([raw_sample(np.zeros((32, 32, 3), np.uint8), depth)], size=spec, augment=augment, train=train)[0]
    expected = torch.from_numpy((depth > 0.1) & (depth < 10.0))
    assert torch.equal(out["mask"][0], expected)
    if not train:
        assert torch.equal(out["gt_mask"], expected) and out["gt_depth"].shape == (32, 32)


def test_depth_beyond_max_depth_is_masked_not_clipped():
    depth = np.full((32, 32), 12.0, np.float32)
    depth[:, 16:] = 5.0
    out = prepared([raw_sample(np.zeros((32, 32, 3), np.uint8), depth)], train=False, max_depth=10.0)[0]
    assert out["depth"].max().item() == 12.0
    assert torch.equal(out["mask"][0], torch.from_numpy(depth <= 10.0))


def test_color_jitter_changes_rgb_only():
    sample = ramp_sample()
    reference = prepared([sample], train=False)[0]
    jittered = prepared([sample], augment=dict(NO_AUGMENT, color_jitter=0.5))[0]
    assert not torch.equal(jittered["image"], reference["image"])
    assert torch.equal(jittered["depth"], reference["depth"])
    assert torch.equal(jittered["mask"], reference["mask"])


def test_augmentation_is_deterministic_per_seed_and_varies_per_epoch():
    rng = np.random.default_rng(1)
    sample = raw_sample(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), rng.uniform(1, 5, (48, 64)))
    augment = AugmentConfig(hflip=True, color_jitter=0.3, scale_min=1.0, scale_max=1.3)

    def draws(seed):
        dataset = prepared([sample] * 3, augment=augment, seed=seed)
        return [dataset[i] for i in range(3)] + [dataset[0]]  # the last one: index 0, second epoch

    first, again, other = draws(0), draws(0), draws(1)
    for a, b in zip(first, again):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
    assert not torch.equal(first[0]["image"], other[0]["image"])
    assert not torch.equal(first[0]["image"], first[3]["image"])


def test_eval_mode_ignores_augmentation():
    sample = ramp_sample()
    augment = dict(hflip=True, color_jitter=0.5, scale_min=1.5, scale_max=2.0)
    a = prepared([sample], augment=augment, train=False)[0]
    b = prepared([sample], train=False)[0]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])


@pytest.mark.parametrize("bad", [dict(scale_min=0.8), dict(scale_min=1.3, scale_max=1.2), dict(color_jitter=1.5)])
def test_invalid_augment_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="data.augment"):
        prepared([ramp_sample()], augment=dict(NO_AUGMENT, **bad))


def test_every_color_jitter_the_config_accepts_builds_a_dataset():
    from edgedepth.training.config import RANGES

    low, high = RANGES["data.augment.color_jitter"]
    for value in (low, high):  # the config's range is inclusive; the dataset used to refuse 1.0
        prepared([ramp_sample()], augment=dict(NO_AUGMENT, color_jitter=value))[0]


@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
def test_normalize_torch_equals_preprocess(color_order):
    spec = ModelSpec(height=32, width=64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), color_order=color_order)
    rgb = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    image = prepared([raw_sample(rgb, np.ones((40, 50)))], size=spec, train=False)[0]["image"]
    ours = normalize_torch(image[None], spec).numpy()
    theirs = preprocess(rgb, spec, input_order="RGB")  # same resize, same normalisation
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (1, 3, 32, 64)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_loader_order_and_augmentation_are_reproducible_per_seed():
    rng = np.random.default_rng(3)
    samples = [raw_sample(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), np.full((32, 32), i + 1.0), name=str(i))
               for i in range(8)]

    def first_batch(seed):
        torch.manual_seed(seed)  # what the trainer does; augmentation draws depend on it
        loader = build_dataloader(prepared(samples, augment=AugmentConfig(), seed=seed), 4, shuffle=True, seed=seed)
        return next(iter(loader))

    a, b, c = first_batch(0), first_batch(0), first_batch(5)
    assert a["name"] == b["name"] and torch.equal(a["image"], b["image"])
    assert a["name"] != c["name"]
    assert a["image"].shape == (4, 3, 32, 32) and a["mask"].dtype == torch.bool
