"""Depth losses: invariances, hand-computed values, masking, edge cases, composite and config."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")
import torch.nn.functional as F
from omegaconf import OmegaConf

from edgedepth.errors import ConfigError
from edgedepth.training.config import LossConfig
from edgedepth.training.losses import DepthLoss, MultiScaleGradientLoss, SiLogLoss, SSILoss, _erode3x3, _sobel

SSI_VARIANTS = [("lstsq", "depth"), ("lstsq", "disparity"), ("mad", "depth"), ("mad", "disparity")]


def _scene(seed: int = 0, n: int = 2, h: int = 32, w: int = 40, invalid: float = 0.3):
    """Random positive depth pred/target (metres) and a bool mask with ``invalid`` fraction off."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 1, h, w, generator=gen) * 4.0 + 1.0
    pred = target * (1.0 + 0.3 * torch.rand(n, 1, h, w, generator=gen)) + 0.2
    mask = torch.rand(n, 1, h, w, generator=gen) >= invalid
    return pred, target, mask


def _step_edge(blur_sigma: float = 0.0, size: int = 64) -> torch.Tensor:
    """A vertical depth step 2 m -> 5 m, optionally Gaussian-blurred, as 1x1xHxW."""
    image = np.full((size, size), 2.0, np.float32)
    image[:, size // 2 :] = 5.0
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma, borderType=cv2.BORDER_REPLICATE)
    return torch.from_numpy(image)[None, None]


def _loss_value(loss_fn, pred, target, mask) -> torch.Tensor:
    out = loss_fn(pred, target, mask)
    return out[0] if isinstance(out, tuple) else out


ALL_TERMS = [SSILoss(*variant) for variant in SSI_VARIANTS] + [
    SiLogLoss(),
    SiLogLoss(lambd=1.0),
    MultiScaleGradientLoss(),
    MultiScaleGradientLoss(space="log"),
]
TERM_IDS = [f"ssi-{a}-{b}" for a, b in SSI_VARIANTS] + ["silog", "silog-l1", "grad", "grad-log"]


# ----------------------------------------------------------------------------- SSI


@pytest.mark.parametrize("standardize,space", SSI_VARIANTS)
def test_ssi_is_zero_when_pred_equals_target(standardize, space):
    _, target, mask = _scene()
    assert SSILoss(standardize, space)(target, target, mask).item() < 1e-4


@pytest.mark.parametrize("standardize,space", SSI_VARIANTS)
def test_ssi_ignores_a_positive_scale_and_a_shift_of_pred(standardize, space):
    pred, target, mask = _scene()
    loss = SSILoss(standardize, space)
    if space == "disparity":  # the invariance holds in the space the loss works in
        moved = 1.0 / (3.0 / pred + 0.05)
    else:
        moved = 3.0 * pred + 0.7
    base = loss(pred, target, mask).item()
    assert base > 0.01  # the prediction is imperfect, so the check below is not 0 == 0
    assert loss(moved, target, mask).item() == pytest.approx(base, rel=1e-3)


def test_ssi_lstsq_matches_hand_computed_fit():
    # pred [1, 2, 3], target [2, 4, 7]: s = cov/var = (5/3)/(2/3) = 2.5, t = 13/3 - 2.5*2 = -2/3,
    # fit [11/6, 13/3, 41/6], residuals [-1/6, 1/3, -1/6] -> mean |r| = 2/9.
    # A 4th pixel is invalid and holds garbage.
    pred = torch.tensor([1.0, 2.0, 3.0, 100.0]).view(1, 1, 1, 4)
    target = torch.tensor([2.0, 4.0, 7.0, math.nan]).view(1, 1, 1, 4)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 4)
    assert SSILoss("lstsq")(pred, target, mask).item() == pytest.approx(2.0 / 9.0, rel=1e-4)


def test_ssi_mad_matches_hand_computed_normalisation():
    # pred [1, 2, 3]: median 2, mean |dev| 2/3 -> [-1.5, 0, 1.5];
    # target [1, 2, 6]: median 2, mean |dev| 5/3 -> [-0.6, 0, 2.4]; mean L1 = 1.8 / 3 = 0.6.
    pred = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    target = torch.tensor([1.0, 2.0, 6.0]).view(1, 1, 1, 3)
    mask = torch.ones_like(pred, dtype=torch.bool)
    assert SSILoss("mad")(pred, target, mask).item() == pytest.approx(0.6, rel=1e-5)


def test_ssi_averages_over_images_that_have_valid_pixels():
    pred, target, mask = _scene(n=2)
    mask[1] = False
    single = SSILoss()(pred[:1], target[:1], mask[:1])
    assert SSILoss()(pred, target, mask).item() == pytest.approx(single.item(), rel=1e-6)


def test_ssi_gradient_flows_through_the_closed_form_fit():
    pred, target, mask = _scene()
    pred.requires_grad_(True)
    SSILoss()(pred, target, mask).backward()
    # With a detached s and t, the gradient of a per-image sum would not vanish; through the
    # least-squares fit, moving pred along itself (a pure scale) changes nothing.
    along_scale = (pred.grad * pred.detach() * mask).sum().item()
    assert abs(along_scale) < 1e-4 * pred.grad.abs().sum().item()
    assert pred.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- SiLog


def test_silog_matches_hand_computed_two_pixel_value():
    # d = [ln 2, 0]: mean d^2 = ln2^2 / 2, mean d = ln2 / 2
    # loss = 10 * sqrt(ln2^2/2 - 0.85 * ln2^2/4) = 10 * ln2 * sqrt(0.2875)
    pred = torch.tensor([2.0, 1.0]).view(1, 1, 1, 2)
    target = torch.ones_like(pred)
    mask = torch.ones_like(pred, dtype=torch.bool)
    expected = 10.0 * math.log(2.0) * math.sqrt(0.2875)
    assert SiLogLoss()(pred, target, mask).item() == pytest.approx(expected, rel=1e-5)


def test_silog_is_at_its_minimum_when_pred_equals_target():
    _, target, mask = _scene()
    pred = target.clone().requires_grad_(True)
    loss = SiLogLoss()(pred, target, mask)
    loss.backward()
    assert loss.item() < 1e-4
    assert torch.isfinite(pred.grad).all()


def test_silog_ignores_a_global_scale_when_lambda_is_one():
    pred, target, mask = _scene()
    loss = SiLogLoss(lambd=1.0)
    base = loss(pred, target, mask).item()
    assert base > 0.1
    assert loss(pred * 7.0, target, mask).item() == pytest.approx(base, rel=1e-4)
    # With lambda < 1 a global scale error is (partly) penalised.
    assert SiLogLoss(lambd=0.85)(pred * 7.0, target, mask) > SiLogLoss(lambd=0.85)(pred, target, mask)


def test_silog_pools_pixels_over_the_whole_batch():
    pred, target, mask = _scene(n=2)
    flat = lambda x: x.permute(1, 0, 2, 3).reshape(1, 1, 2 * 32, 40)  # noqa: E731
    batch = SiLogLoss()(pred, target, mask)
    assert batch.item() == pytest.approx(SiLogLoss()(flat(pred), flat(target), flat(mask)).item(), rel=1e-5)


# ----------------------------------------------------------------------------- gradient


def test_gradient_loss_is_zero_for_a_sharp_edge_and_grows_with_blur():
    target = _step_edge()
    mask = torch.ones_like(target, dtype=torch.bool)
    loss = MultiScaleGradientLoss()
    sharp = loss(_step_edge(), target, mask)[0].item()
    blurred = loss(_step_edge(1.5), target, mask)[0].item()
    more_blurred = loss(_step_edge(4.0), target, mask)[0].item()
    assert sharp < 1e-6
    assert blurred > 0.01
    assert more_blurred > blurred


def test_gradient_loss_on_a_ramp_matches_hand_computed_slopes():
    # pred = 1 + 0.01 * x against a flat target: the Sobel/8 x-gradient is the slope, 0.01 per
    # pixel at scale 1, and a pooled pixel spans s pixels, so scale s sees 0.01 * s.
    x = torch.arange(64, dtype=torch.float32)
    pred = (1.0 + 0.01 * x).expand(1, 1, 64, 64)
    target = torch.ones_like(pred)
    mask = torch.ones_like(pred, dtype=torch.bool)
    loss, per_scale = MultiScaleGradientLoss(scales=(1, 2, 4))(pred, target, mask)
    assert list(per_scale) == ["s1", "s2", "s4"]
    assert all(isinstance(v, torch.Tensor) for v in per_scale.values())
    for scale in (1, 2, 4):
        assert per_scale[f"s{scale}"].item() == pytest.approx(0.01 * scale, rel=1e-4)
    assert loss.item() == pytest.approx(0.07 / 3, rel=1e-4)


def test_gradient_loss_ignores_a_depth_offset_and_log_space_ignores_a_scale():
    pred, target, mask = _scene(invalid=0.0)
    base = MultiScaleGradientLoss()(pred, target, mask)[0].item()
    assert MultiScaleGradientLoss()(pred + 3.0, target, mask)[0].item() == pytest.approx(base, rel=1e-4)
    log_loss = MultiScaleGradientLoss(space="log")
    base_log = log_loss(pred, target, mask)[0].item()
    assert log_loss(pred * 4.0, target, mask)[0].item() == pytest.approx(base_log, rel=1e-3)


def test_gradient_loss_sees_no_edge_at_mask_holes_or_borders():
    # A constant offset has no gradient. Holes in the mask must not create one: pooling averages
    # valid pixels only, and a pixel counts only when its whole 3x3 neighbourhood is valid
    # (the 0 imputed at invalid pixels would otherwise read as a step of -0.5).
    pred, target, mask = _scene(h=64, w=64, invalid=0.3)
    mask[..., 20:40, 10:30] = False
    loss, per_scale = MultiScaleGradientLoss()(target + 0.5, target, mask)
    assert loss.item() < 1e-5
    assert all(value.item() < 1e-5 for value in per_scale.values())


def test_sliced_sobel_and_erosion_equal_conv2d_and_min_pool():
    # The loss computes both on tensor slices for speed; they must be the textbook operators.
    image = torch.randn(2, 1, 12, 17, generator=torch.Generator().manual_seed(3))
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    reference = F.conv2d(image, torch.stack([sobel_x, sobel_x.t()])[:, None])
    grad_x, grad_y = _sobel(image)
    assert torch.allclose(torch.cat([grad_x, grad_y], dim=1), reference, atol=1e-5)
    mask = torch.rand(2, 1, 12, 17, generator=torch.Generator().manual_seed(4)) > 0.2
    assert torch.equal(_erode3x3(mask), -F.max_pool2d(-mask.float(), 3, stride=1) > 0.5)


# ----------------------------------------------------------------------------- every term


@pytest.mark.parametrize("loss_fn", ALL_TERMS, ids=TERM_IDS)
def test_values_at_invalid_pixels_never_change_the_loss(loss_fn):
    pred, target, mask = _scene()
    garbage = torch.tensor([math.nan, math.inf, -math.inf, -5.0, 0.0, 1e30])
    fill = garbage[torch.arange(pred.numel()) % len(garbage)].view_as(pred)
    clean_pred = pred.clone().requires_grad_(True)
    dirty_pred = torch.where(mask, pred, fill.abs().nan_to_num(7.0, 1e30)).requires_grad_(True)
    clean = _loss_value(loss_fn, clean_pred, target, mask)
    dirty = _loss_value(loss_fn, dirty_pred, torch.where(mask, target, fill), mask)
    clean.backward()
    dirty.backward()
    assert dirty.item() == pytest.approx(clean.item(), rel=1e-6, abs=1e-7)
    assert torch.allclose(dirty_pred.grad, clean_pred.grad, rtol=1e-5, atol=1e-9)
    assert (dirty_pred.grad[~mask] == 0).all()


def _all_invalid(pred):
    return torch.zeros_like(pred, dtype=torch.bool)


def _single_valid(pred):
    mask = torch.zeros_like(pred, dtype=torch.bool)
    mask[0, 0, 5, 7] = True
    return mask


EDGE_CASES = {
    "all-invalid": lambda: (_scene()[0], _scene()[1], _all_invalid(_scene()[0])),
    "single-valid-pixel": lambda: (_scene()[0], _scene()[1], _single_valid(_scene()[0])),
    "constant-pred": lambda: (torch.full((2, 1, 32, 40), 3.0), _scene()[1], _scene()[2]),
    "constant-both": lambda: (torch.full((2, 1, 32, 40), 3.0), torch.full((2, 1, 32, 40), 2.0), _scene()[2]),
    "tiny-image": lambda: (torch.rand(1, 1, 4, 4) + 1, torch.rand(1, 1, 4, 4) + 1, torch.ones(1, 1, 4, 4)),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("loss_fn", ALL_TERMS, ids=TERM_IDS)
def test_edge_cases_give_finite_values_and_gradients(loss_fn, case):
    pred, target, mask = EDGE_CASES[case]()
    pred = pred.clone().requires_grad_(True)
    value = _loss_value(loss_fn, pred, target, mask)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(pred.grad).all()
    if case == "all-invalid":
        assert value.item() == 0.0


@pytest.mark.parametrize("loss_fn", ALL_TERMS, ids=TERM_IDS)
def test_gradients_reach_pred_and_float_masks_match_bool_masks(loss_fn):
    pred, target, mask = _scene()
    pred.requires_grad_(True)
    value = _loss_value(loss_fn, pred, target, mask)
    value.backward()
    assert pred.grad.abs().sum() > 0
    assert _loss_value(loss_fn, pred, target, mask.float()).item() == pytest.approx(value.item(), rel=1e-6)


def test_mismatched_shapes_are_refused():
    pred, target, mask = _scene()
    with pytest.raises(ValueError, match="same N x 1 x H x W"):
        SSILoss()(pred, target[:, :, :-1], mask)
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        SiLogLoss()(pred[:, 0], target[:, 0], mask[:, 0])


# ----------------------------------------------------------------------------- DepthLoss


def test_depth_loss_reports_every_term_and_the_weighted_total():
    pred, target, mask = _scene()
    pred.requires_grad_(True)
    loss = DepthLoss(ssi_weight=0.4, silog_weight=0.4, gradient_weight=0.2, gradient_scales=(1, 2))
    total, terms = loss(pred, target, mask)
    total.backward()
    assert list(terms) == loss.term_names == [
        "ssi", "silog", "grad", "grad/s1", "grad/s2", "share/ssi", "share/silog", "share/grad", "total"]
    assert all(isinstance(v, float) for v in terms.values())
    expected = 0.4 * terms["ssi"] + 0.4 * terms["silog"] + 0.2 * terms["grad"]
    assert terms["total"] == pytest.approx(expected, rel=1e-6)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert terms["grad"] == pytest.approx((terms["grad/s1"] + terms["grad/s2"]) / 2, rel=1e-6)
    assert terms["ssi"] == pytest.approx(SSILoss()(pred, target, mask).item(), rel=1e-6)
    assert pred.grad.abs().sum() > 0
    for name, weight in (("ssi", 0.4), ("silog", 0.4), ("grad", 0.2)):
        assert terms[f"share/{name}"] == pytest.approx(weight * terms[name] / expected, rel=1e-5)


def test_depth_loss_leaves_out_zero_weight_terms():
    pred, target, mask = _scene()
    _, default_terms = DepthLoss()(pred, target, mask)
    assert list(default_terms) == ["ssi", "silog", "share/ssi", "share/silog", "total"]
    loss = DepthLoss(ssi_weight=0.0, silog_weight=0.0, gradient_weight=1.0, gradient_scales=[4])
    _, terms = loss(pred, target, mask)
    assert list(terms) == loss.term_names == ["grad", "grad/s4", "share/grad", "total"]
    assert terms["share/grad"] == pytest.approx(1.0)
    assert loss.ssi is None and loss.silog is None


def test_depth_loss_from_config_accepts_dataclass_omegaconf_and_dict():
    cfg = LossConfig(ssi_weight=0.3, silog_weight=0.0, gradient_weight=0.7, gradient_scales=[1, 8],
                     gradient_space="log", ssi_standardize="mad", ssi_space="disparity")
    for source in (cfg, OmegaConf.structured(cfg), OmegaConf.to_container(OmegaConf.structured(cfg))):
        loss = DepthLoss.from_config(source)
        assert loss.term_names == ["ssi", "grad", "grad/s1", "grad/s8", "share/ssi", "share/grad", "total"]
        assert loss.weights == {"ssi": 0.3, "silog": 0.0, "grad": 0.7}
        assert (loss.ssi.standardize, loss.ssi.space, loss.grad.space) == ("mad", "disparity", "log")
    assert DepthLoss.from_config({"silog_weight": 1.0, "ssi_weight": 0.0}).term_names == [
        "silog", "share/silog", "total"]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"ssi_weight": -0.1}, "ssi_weight is -0.1"),
        ({"gradient_weight": math.nan}, "gradient_weight is nan"),
        ({"ssi_weight": 0.0, "silog_weight": 0.0, "gradient_weight": 0.0}, "all loss weights are 0"),
        ({"ssi_standardize": "median"}, "ssi_standardize is 'median'"),
        ({"ssi_space": "log"}, "ssi_space is 'log'"),
        ({"gradient_space": "disparity"}, "gradient_space is 'disparity'"),
        ({"normalize": "batch"}, "normalize is 'batch'"),
        ({"gradient_scales": [0, 2]}, "gradient_scales"),
        ({"silog_lambda": 1.5}, "silog_lambda"),
    ],
)
def test_bad_loss_settings_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DepthLoss(**kwargs)


def test_from_config_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="unknown loss keys \\['ssi_wieght'\\]"):
        DepthLoss.from_config({"ssi_wieght": 1.0})


# ----------------------------------------------------------------------------- shares and normalisation


def _room_like(seed: int = 0):
    """A smooth depth ramp with a box in front and a blurred, 10% too far prediction of it."""
    target = torch.linspace(2.0, 6.0, 48).repeat(40, 1)[None, None].repeat(2, 1, 1, 1)
    target[..., 10:30, 12:28] = 1.5
    noise = 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(seed))
    pred = 1.1 * F.avg_pool2d(target, 5, stride=1, padding=2, count_include_pad=False) + noise
    return pred, target, torch.ones_like(target, dtype=torch.bool)


@pytest.mark.parametrize("normalize", ["none", "running_mean"])
def test_shares_of_the_active_terms_sum_to_one(normalize):
    loss = DepthLoss(ssi_weight=0.4, silog_weight=0.4, gradient_weight=0.2, normalize=normalize)
    for seed in range(3):
        _, terms = loss(*_room_like(seed))
        shares = [terms[f"share/{name}"] for name in ("ssi", "silog", "grad")]
        assert sum(shares) == pytest.approx(1.0, abs=1e-6) and all(0.0 < s < 1.0 for s in shares)


def test_without_normalisation_the_gradient_weight_is_not_its_share():
    """The review's point (A1): under weights A the depth-space gradient term is a few % of the total."""
    _, terms = DepthLoss(ssi_weight=0.4, silog_weight=0.4, gradient_weight=0.2)(*_room_like())
    assert terms["share/grad"] < 0.1 and terms["share/silog"] > 0.7


def test_running_mean_normalisation_makes_the_weights_the_shares():
    loss = DepthLoss(ssi_weight=0.4, silog_weight=0.4, gradient_weight=0.2, normalize="running_mean")
    _, first = loss(*_room_like(0))
    assert [first[f"share/{n}"] for n in ("ssi", "silog", "grad")] == pytest.approx([0.4, 0.4, 0.2], abs=1e-6)
    for seed in range(1, 20):
        _, terms = loss(*_room_like(seed))
    assert [terms[f"share/{n}"] for n in ("ssi", "silog", "grad")] == pytest.approx([0.4, 0.4, 0.2], abs=0.02)
    assert terms["ssi"] != pytest.approx(terms["silog"], rel=0.5), "the reported terms stay unnormalised"


def test_running_mean_is_an_ema_set_by_the_first_step_and_skips_non_finite_steps():
    loss = DepthLoss(ssi_weight=0.0, silog_weight=1.0, normalize="running_mean")
    pred, target, mask = _room_like()
    _, first = loss(pred, target, mask)
    assert loss.running_mean[1].item() == pytest.approx(first["silog"], rel=1e-6)
    _, second = loss(pred * 1.3, target, mask)
    expected = 0.99 * first["silog"] + 0.01 * second["silog"]
    assert loss.running_mean[1].item() == pytest.approx(expected, rel=1e-6)
    assert second["total"] == pytest.approx(second["silog"] / expected, rel=1e-5)
    loss(torch.full_like(pred, math.nan), target, mask)
    assert loss.running_mean[1].item() == pytest.approx(expected, rel=1e-6) and loss.normalize_steps.item() == 2
    loss.eval()
    loss(pred * 2.0, target, mask)
    assert loss.running_mean[1].item() == pytest.approx(expected, rel=1e-6), "eval mode does not update it"


def test_running_mean_travels_in_the_state_dict_so_a_resume_continues_it():
    options = dict(ssi_weight=0.5, silog_weight=0.5, gradient_weight=0.3, normalize="running_mean")
    straight, resumed = DepthLoss(**options), DepthLoss(**options)
    for seed in range(3):
        straight(*_room_like(seed))
    resumed.load_state_dict(straight.state_dict())
    _, a = straight(*_room_like(7))
    _, b = resumed(*_room_like(7))
    assert a == b
    _, fresh = DepthLoss(**options)(*_room_like(7))
    assert fresh["total"] != pytest.approx(a["total"], rel=1e-4)


def test_normalize_none_matches_the_plain_weighted_sum():
    pred, target, mask = _room_like()
    _, plain = DepthLoss(gradient_weight=0.2)(pred, target, mask)
    assert plain["total"] == pytest.approx(0.5 * plain["ssi"] + 0.5 * plain["silog"] + 0.2 * plain["grad"], rel=1e-6)


# ----------------------------------------------------------------------------- gradient spaces


@pytest.mark.parametrize("space,scale_free,shift_free", [
    ("depth", False, True), ("log", True, False), ("aligned", True, True), ("standardized", True, True)])
def test_gradient_space_decides_what_a_global_scale_and_shift_cost(space, scale_free, shift_free):
    pred, target, mask = _scene(invalid=0.05)
    loss = MultiScaleGradientLoss(space=space)
    base = _loss_value(loss, pred, target, mask).item()
    scaled = _loss_value(loss, pred * 1.7, target, mask).item()
    shifted = _loss_value(loss, pred + 0.8, target, mask).item()
    assert (scaled == pytest.approx(base, rel=1e-4)) is scale_free
    assert (shifted == pytest.approx(base, rel=1e-4)) is shift_free


def _masked_lstsq_aligned(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each image's pred aligned to its target by numpy's least squares over the valid pixels."""
    out = pred.clone()
    for i in range(pred.shape[0]):
        valid = mask[i, 0].numpy()
        p, t = pred[i, 0].numpy()[valid], target[i, 0].numpy()[valid]
        (s, shift), *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1).astype(np.float64), t, rcond=None)
        out[i, 0] = torch.from_numpy((s * pred[i, 0].numpy() + shift).astype(np.float32))
    return out


def test_aligned_space_is_the_depth_gradient_loss_of_the_least_squares_aligned_prediction():
    pred, target, mask = _scene(invalid=0.1)
    aligned = _loss_value(MultiScaleGradientLoss(space="aligned"), pred, target, mask).item()
    by_hand = _loss_value(MultiScaleGradientLoss(space="depth"), _masked_lstsq_aligned(pred, target, mask),
                          target, mask).item()
    assert aligned == pytest.approx(by_hand, rel=1e-4)
    assert aligned != pytest.approx(_loss_value(MultiScaleGradientLoss(), pred, target, mask).item(), rel=0.05)


def test_standardized_space_compares_g2_mean_mad_standardised_maps():
    pred, target, mask = _scene(invalid=0.1)

    def standardise(x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        for i in range(x.shape[0]):
            values = x[i, 0][mask[i, 0]]
            mean = values.mean()
            out[i, 0] = (x[i, 0] - mean) / (values - mean).abs().mean()
        return out

    standardized = _loss_value(MultiScaleGradientLoss(space="standardized"), pred, target, mask).item()
    by_hand = _loss_value(MultiScaleGradientLoss(space="depth"), standardise(pred), standardise(target), mask)
    assert standardized == pytest.approx(by_hand.item(), rel=1e-4)


@pytest.mark.parametrize("space", ["aligned", "standardized"])
def test_scale_free_gradient_spaces_stay_finite_on_degenerate_input(space):
    loss = MultiScaleGradientLoss(space=space)
    pred = torch.full((1, 1, 16, 16), 2.0, requires_grad=True)
    target = torch.rand(1, 1, 16, 16) + 1.0
    for mask in (torch.zeros_like(target, dtype=torch.bool), torch.ones_like(target, dtype=torch.bool)):
        pred.grad = None
        value = _loss_value(loss, pred, target, mask)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(pred.grad).all()


# ----------------------------------------------------------------------------- boundary F1 on a picture


def test_boundary_f1_scores_a_sharp_step_edge_above_a_blurred_one():
    """docs/METRICS.md: a higher boundary F1 means predicted depth edges sit where the true ones are."""
    from edgedepth.metrics import compute_edge_metrics

    gt = _step_edge()[0, 0].numpy()
    sharp = compute_edge_metrics(_step_edge()[0, 0].numpy() * 1.05, gt)
    assert sharp["boundary_f1"] == pytest.approx(1.0), "right up to scale: the edges stay"
    # Blurred over ~3 px the ramp fires beyond the 2 px tolerance: precision falls, recall holds.
    ramp = compute_edge_metrics(_step_edge(blur_sigma=3.0)[0, 0].numpy(), gt)
    assert ramp["boundary_recall"] == pytest.approx(1.0) and ramp["boundary_precision"] < 0.9
    assert ramp["boundary_f1"] < sharp["boundary_f1"]
    # Blurred more, no neighbour pair differs by 10% any more: no predicted edge, F1 0.
    smooth = compute_edge_metrics(_step_edge(blur_sigma=5.0)[0, 0].numpy(), gt)
    assert smooth["boundary_recall"] == 0.0 and smooth["boundary_f1"] == 0.0


def test_a_resumed_training_continues_the_running_means(tmp_path):
    """The running means are saved in the checkpoint (``loss``) and loaded by --resume."""
    from edgedepth.training.checkpoint import read_checkpoint
    from edgedepth.training.config import load_config
    from edgedepth.training.trainer import Trainer

    overrides = [
        "data.height=64", "data.width=64", "data.num_workers=0", "data.synthetic.num_train=4",
        "data.synthetic.num_val=2", f"data.synthetic.cache_dir={tmp_path / 'cache'}", "train.batch_size=2",
        "train.steps=3", "train.warmup_steps=1", "train.eval_every=1000", "train.image_every=1000",
        "train.checkpoint_every=1000", "train.precise_bn_batches=0", "model.decoder_channels=[64,32,32,16,16]",
        "loss.gradient_weight=0.2", "loss.normalize=running_mean", f"train.output_dir={tmp_path / 'run'}",
    ]
    trainer = Trainer(load_config("baseline", overrides))
    try:
        trainer.train()
    finally:
        trainer.close()
    saved = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["loss"]
    assert saved["normalize_steps"].item() == 3 and (saved["running_mean"] > 0).all()
    resumed = Trainer(load_config("baseline", overrides[:-1] + ["train.steps=4", overrides[-1]]), resume=True)
    try:
        assert torch.equal(resumed.loss_fn.running_mean, saved["running_mean"])
        assert resumed.loss_fn.normalize_steps.item() == 3
    finally:
        resumed.close()
