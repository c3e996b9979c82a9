"""Depth training losses: scale-and-shift-invariant, scale-invariant log, multi-scale gradient.

Every term is a small module taking ``(pred, target, valid_mask)``: depth in metres, shapes
``N x 1 x H x W``, the mask bool or 0/1 float of the same shape. Shared rules:

* Values at invalid pixels never reach the loss, NaN and Inf included: they are replaced with
  ``torch.where`` before any operation whose gradient depends on them (a multiplication by 0
  keeps a NaN, and a NaN fed to ``log`` or ``abs`` in an unselected ``where`` branch still
  poisons the gradient).
* No NaN or Inf in value or gradient for an all-invalid mask, one valid pixel or a constant
  image; an all-invalid batch gives 0 that is still connected to ``pred`` so ``backward`` works.
* Everything is computed in float32, whatever autocast produced.

``DepthLoss`` combines the terms with the weights of ``LossConfig`` (training/config.py) and
returns ``(total, {"ssi": .., "silog": .., "grad": .., "grad/s1": .., ..., "total": ..})``.
``LossConfig`` is the one place of the keys, defaults, allowed values and ranges: the classes
here take their defaults from it and check their arguments with its checks (so the messages
match the config's), as a guard for direct API callers.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgedepth.training.config import (
    LOSS_KEYS,
    LOSS_WEIGHT_KEYS,
    LossConfig,
    check_gradient_scales,
    check_loss_weights,
    check_value,
    defaults,
    with_defaults,
)

#: Depth below this (metres) is clamped before ``log`` and ``1 / depth``, so both stay finite.
MIN_DEPTH = 1e-6

_DEFAULTS = defaults(LossConfig)


# ----------------------------------------------------------------------------- shared helpers


def _valid_mask(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Check the three shapes agree and return the mask as bool."""
    if pred.dim() != 4 or pred.shape[1] != 1:
        raise ValueError(f"pred has shape {tuple(pred.shape)}; expected N x 1 x H x W depth")
    if target.shape != pred.shape or mask.shape != pred.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(mask.shape)} "
            "must have the same N x 1 x H x W shape"
        )
    return mask if mask.dtype == torch.bool else mask > 0.5


def _safe(x: Tensor, valid: Tensor, fill: float) -> Tensor:
    """``x`` as float32 where valid, ``fill`` elsewhere (drops NaN/Inf at invalid pixels)."""
    return torch.where(valid, x.float(), fill)


def _safe_log(x: Tensor, valid: Tensor) -> Tensor:
    return torch.log(_safe(x, valid, 1.0).clamp_min(MIN_DEPTH))


# ----------------------------------------------------------------------------- SSI


class SSILoss(nn.Module):
    """Scale-and-shift-invariant L1 (MiDaS), per image, averaged over images with valid pixels.

    ``standardize="lstsq"``: per image the least-squares scale ``s`` and shift ``t`` aligning
    ``pred`` to ``target`` over valid pixels, then ``mean |s * pred + t - target|``. The 2x2
    normal equations are solved in centred form, ``s = cov(pred, target) / var(pred)``,
    ``t = mean(target) - s * mean(pred)`` (the same solution; the determinant of the normal
    equations is ``n^2 var(pred)``), which stays accurate in float32 where the raw sums cancel.
    The determinant guard added to ``var(pred)`` is relative, ``eps * mean(pred^2)``, so scaling
    ``pred`` leaves the loss unchanged. With fewer than 2 valid pixels or a constant ``pred``
    the variance is 0, so ``s = 0`` and ``t`` is the target mean. ``s`` and ``t`` are not
    detached: the gradient flows through the closed-form solution, as in MiDaS.

    ``standardize="mad"``: pred and target are each shifted by their masked median (the lower
    median for an even count) and divided by their mean absolute deviation from it (MiDaS /
    G2-MonoDepth), then compared with L1.

    ``space="disparity"`` works on ``1 / depth``; target pixels <= 0 then count as invalid.
    """

    def __init__(
        self,
        standardize: str = _DEFAULTS["ssi_standardize"],
        space: str = _DEFAULTS["ssi_space"],
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_value("loss.ssi_standardize", standardize)
        check_value("loss.ssi_space", space)
        self.standardize = standardize
        self.space = space
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, valid_mask: Tensor) -> Tensor:
        valid = _valid_mask(pred, target, valid_mask)
        if self.space == "disparity":
            valid = valid & (target > 0)
            # 0 where invalid, like the depth branch: the masked sums below rely on it.
            p = torch.where(valid, 1.0 / _safe(pred, valid, 1.0).clamp_min(MIN_DEPTH), 0.0)
            t = torch.where(valid, 1.0 / _safe(target, valid, 1.0), 0.0)
        else:
            p, t = _safe(pred, valid, 0.0), _safe(target, valid, 0.0)
        valid = valid.flatten(1)
        p, t = p.flatten(1), t.flatten(1)
        count = valid.sum(dim=1)
        n = count.clamp_min(1).float()
        if self.standardize == "lstsq":
            residual = lstsq_residual(p, t, valid, n, self.eps)
        else:
            residual = self._mad_normalize(p, valid, n) - self._mad_normalize(t, valid, n)
        per_image = torch.where(valid, residual.abs(), 0.0).sum(dim=1) / n
        has_pixels = (count > 0).float()
        return (per_image * has_pixels).sum() / has_pixels.sum().clamp_min(1.0)

    def _mad_normalize(self, x: Tensor, valid: Tensor, n: Tensor) -> Tensor:
        """``(x - median) / mean|x - median|`` over each image's valid pixels (0 elsewhere)."""
        median = torch.nanmedian(torch.where(valid, x, math.nan), dim=1).values
        median = torch.where(valid.any(dim=1), median, 0.0)
        deviation = _centre(x, valid, median)
        spread = deviation.abs().sum(dim=1) / n
        return deviation / spread.clamp_min(self.eps)[:, None]


def lstsq_residual(p: Tensor, t: Tensor, valid: Tensor, n: Tensor, eps: float = 1e-6) -> Tensor:
    """``s * p + t0 - t`` per row (``N x HW``, 0 at invalid pixels) for the least-squares ``s``, ``t0``.

    ``p`` and ``t`` hold 0 at invalid pixels, ``n`` is each row's valid count (>= 1). This is
    ``SSILoss``'s alignment (its docstring gives the centred form and the relative guard) and the
    ``aligned`` space of the gradient loss: the aligned prediction minus the target.
    """
    p_centred = _centre(p, valid, p.sum(dim=1) / n)
    t_centred = _centre(t, valid, t.sum(dim=1) / n)
    variance = (p_centred * p_centred).sum(dim=1) / n
    covariance = (p_centred * t_centred).sum(dim=1) / n
    # The guard is relative to pred's magnitude, so it does not bias far-range disparities
    # (var ~1e-5) yet dominates float32 rounding when pred is constant (var ~1e-14 p^2).
    # The absolute floor keeps the gradient finite for an all-zero pred.
    mean_square = (p * p).sum(dim=1) / n
    scale = covariance / (variance + eps * mean_square + 1e-12)
    # s*p + (mean_t - s*mean_p) - t == s*(p - mean_p) - (t - mean_t)
    return scale[:, None] * p_centred - t_centred


def mean_mad_standardize(x: Tensor, valid: Tensor, n: Tensor, eps: float = 1e-6) -> Tensor:
    """``(x - mean) / mean|x - mean|`` per row over valid pixels, 0 elsewhere (G2-MonoDepth).

    G2-MonoDepth's ``StandardizeData`` (``src/utils.py``): the masked mean and the mean absolute
    deviation from it, not the median (that is MiDaS's, ``SSILoss(standardize="mad")``).
    """
    deviation = _centre(x, valid, x.sum(dim=1) / n)
    spread = deviation.abs().sum(dim=1) / n
    return deviation / spread.clamp_min(eps)[:, None]


def _centre(x: Tensor, valid: Tensor, centre: Tensor) -> Tensor:
    """``x - centre`` (one centre per row) at valid pixels, 0 elsewhere."""
    return torch.where(valid, x - centre[:, None], 0.0)


# ----------------------------------------------------------------------------- SiLog


class SiLogLoss(nn.Module):
    """Scale-invariant log loss (Eigen et al.; AdaBins form) over the valid pixels of the batch.

    ``d = log(pred) - log(target)``, loss ``= scale * sqrt(mean(d^2) - lambd * mean(d)^2)``.
    The radicand is computed as ``var(d) + (1 - lambd) * mean(d)^2`` (identical, but without
    float32 cancellation) and clamped at ``eps`` before the square root, so the gradient is
    finite at a perfect prediction; the minimum value is therefore ``scale * sqrt(eps)``.
    With ``lambd = 1`` the loss ignores a global scale of ``pred``.
    """

    def __init__(
        self, lambd: float = _DEFAULTS["silog_lambda"], scale: float = _DEFAULTS["silog_scale"], eps: float = 1e-12
    ) -> None:
        super().__init__()
        check_value("loss.silog_lambda", lambd)
        check_value("loss.silog_scale", scale)
        self.lambd = lambd
        self.scale = scale
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, valid_mask: Tensor) -> Tensor:
        valid = _valid_mask(pred, target, valid_mask)
        d = _safe_log(pred, valid) - _safe_log(target, valid)  # log(1) - log(1) = 0 where invalid
        count = valid.sum()
        n = count.clamp_min(1).float()
        mean_d = d.sum() / n
        centred = torch.where(valid, d - mean_d, 0.0)
        radicand = (centred * centred).sum() / n + (1.0 - self.lambd) * mean_d * mean_d
        loss = self.scale * torch.sqrt(radicand.clamp_min(self.eps))
        return loss * (count > 0).float()


# ----------------------------------------------------------------------------- gradient


class MultiScaleGradientLoss(nn.Module):
    """L1 between Sobel gradients of pred and target at several scales (MegaDepth / MiDaS idea).

    At scale ``s`` pred and target are average-pooled over valid pixels only
    (``pool(x * mask) / pool(mask)``; a pooled pixel is valid when any of its pixels was),
    differentiated with the 3x3 Sobel kernels divided by 8 (so a gradient reads as depth change
    per pixel), and compared with L1 (``|dx| + |dy|``) over pixels whose whole 3x3 neighbourhood
    is valid and inside the image, averaged over the batch. The loss is the mean over scales;
    ``forward`` returns ``(loss, {"s1": .., "s2": .., ...})``.

    ``space`` is the map whose gradients are compared:

    * ``depth``: metric depth. The term then also penalises a global scale error (a x1.2 pred
      has x1.2 gradients), which SiLog already does, and it grows with the scene's depth range.
    * ``log``: log depth; a global scale error is invisible to it, a shift is not.
    * ``aligned``: the prediction aligned to the target per image by SSI's least-squares scale
      and shift (:func:`lstsq_residual`), minus the target: MiDaS's gradient-matching term, which
      MiDaS applies to its scale/shift-aligned prediction. Invariant to a global scale and shift
      of ``pred``, so it only sees the shape of the map, its edges included.
    * ``standardized``: both maps standardised per image by their mean and mean absolute
      deviation (:func:`mean_mad_standardize`), as G2-MonoDepth's ``grad_function(sta_depth,
      sta_gt)``; also invariant to a global scale and shift of ``pred``, and unit-free.

    In ``aligned`` the scale and shift are not detached, as in MiDaS (the gradient flows through
    the closed-form solution).

    Pooling and Sobel are linear, so both are applied once to ``pred - target`` rather than to
    each, for the whole batch at once.
    """

    def __init__(
        self, scales: Sequence[int] = tuple(_DEFAULTS["gradient_scales"]), space: str = _DEFAULTS["gradient_space"]
    ) -> None:
        super().__init__()
        check_value("loss.gradient_space", space)
        self.scales = check_gradient_scales(scales)
        self.space = space

    def forward(self, pred: Tensor, target: Tensor, valid_mask: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        valid = _valid_mask(pred, target, valid_mask)
        diff = self._difference(pred, target, valid)
        per_scale = {f"s{s}": self._scale_loss(diff, valid, s) for s in self.scales}
        return torch.stack(list(per_scale.values())).mean(), per_scale

    def _difference(self, pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """The compared map of ``pred`` minus that of ``target`` in ``self.space`` (0 where invalid)."""
        if self.space == "log":
            return _safe_log(pred, valid) - _safe_log(target, valid)  # log(1) - log(1) = 0 where invalid
        if self.space == "depth":
            # One ``where`` after the subtraction suffices: its backward passes 0 to invalid
            # pixels and the subtraction's backward never multiplies by the (maybe NaN) values.
            return torch.where(valid, pred.float() - target.float(), 0.0)
        flat_valid = valid.flatten(1)
        p, t = _safe(pred, valid, 0.0).flatten(1), _safe(target, valid, 0.0).flatten(1)
        n = flat_valid.sum(dim=1).clamp_min(1).float()
        if self.space == "aligned":
            diff = lstsq_residual(p, t, flat_valid, n)
        else:  # standardized
            diff = mean_mad_standardize(p, flat_valid, n) - mean_mad_standardize(t, flat_valid, n)
        return diff.view_as(pred)

    def _scale_loss(self, diff: Tensor, valid: Tensor, scale: int) -> Tensor:
        if min(diff.shape[-2:]) // scale < 3:  # no 3x3 neighbourhood left at this scale
            return diff.sum() * 0.0
        if scale > 1:
            pooled_weight = F.avg_pool2d(valid.float(), scale)
            # Where no pixel was valid the pooled difference is 0 / tiny = 0, and masked anyway.
            diff = F.avg_pool2d(diff, scale) / pooled_weight.clamp_min(1e-12)
            valid = pooled_weight > 0
        grad_x, grad_y = _sobel(diff)
        interior = _erode3x3(valid)
        error = torch.where(interior, grad_x.abs() + grad_y.abs(), 0.0).sum() / 8.0  # Sobel / 8
        return error / interior.sum().clamp_min(1)


def _sobel(x: Tensor) -> Tuple[Tensor, Tensor]:
    """3x3 Sobel responses in x and y of ``N x 1 x H x W``, for the ``(H-2) x (W-2)`` interior.

    Computed as the separable product of a [-1, 0, 1] difference and a [1, 2, 1] smoothing on
    tensor slices: on the CPU this is about 9x faster (forward + backward) than ``conv2d`` with
    a 1-input-channel kernel, which oneDNN handles poorly; the result is identical.
    """
    diff_x = x[..., :, 2:] - x[..., :, :-2]
    diff_y = x[..., 2:, :] - x[..., :-2, :]
    grad_x = diff_x[..., :-2, :] + 2.0 * diff_x[..., 1:-1, :] + diff_x[..., 2:, :]
    grad_y = diff_y[..., :, :-2] + 2.0 * diff_y[..., :, 1:-1] + diff_y[..., :, 2:]
    return grad_x, grad_y


def _erode3x3(valid: Tensor) -> Tensor:
    """True where the whole 3x3 neighbourhood is valid, for the ``(H-2) x (W-2)`` interior.

    A separable 3x3 min-pool on bools (AND of shifted slices): same result as
    ``-max_pool2d(-mask, 3, stride=1)``, about 50x cheaper on the CPU.
    """
    rows = valid[..., :, :-2] & valid[..., :, 1:-1] & valid[..., :, 2:]
    return rows[..., :-2, :] & rows[..., 1:-1, :] & rows[..., 2:, :]


# ----------------------------------------------------------------------------- composite


#: Momentum of ``loss.normalize=running_mean``: each step the running mean keeps 0.99 of itself
#: and takes 0.01 of the new value, a memory of about 100 steps (1 / (1 - 0.99)): long enough
#: that one odd batch barely moves it, short enough to follow the terms as they fall in training.
NORMALIZE_MOMENTUM = 0.99

#: The weighted terms, in the order of the running-mean buffer.
TERMS = ("ssi", "silog", "grad")


class DepthLoss(nn.Module):
    """Weighted sum of SSI, SiLog and multi-scale gradient losses.

    ``forward(pred, target, mask)`` returns ``(total, terms)``: ``total`` is the weighted sum (a
    tensor with grad); ``terms`` maps ``ssi``, ``silog``, ``grad``, ``grad/s1``, ... to the
    *unweighted* value of each term, ``share/ssi``, ``share/silog``, ``share/grad`` to each term's
    part of ``total`` (its weighted, normalised value over ``total``; the shares of the active
    terms sum to 1), and ``total`` to the weighted sum, as python floats. A term with weight 0 is
    neither computed nor reported. The keywords are ``LossConfig``'s keys; a missing one takes
    its default from there.

    The weights alone do not say how much each term steers training: with the defaults SiLog
    (x10) is about ten times SSI and the depth-space gradient term, so a gradient weight of 0.2
    is about 3% of the total. ``normalize``:

    * ``"none"``: ``total = sum(w_i * L_i)``.
    * ``"running_mean"``: ``total = sum(w_i * L_i / m_i)``, ``m_i`` a running mean of ``L_i``
      (detached: it rescales the term's gradient, it is not trained through). With every term
      near its running mean, each share is about its weight over the sum of the weights, so the
      configured weights are the shares. ``m_i`` is an exponential moving average with momentum
      :data:`NORMALIZE_MOMENTUM` (about the last 100 steps), set to the first value seen (no
      warm-up bias), updated in training mode only and only from finite values (a skipped NaN
      step does not poison it). It is a buffer (``running_mean``, ``normalize_steps``) of this
      module, so ``state_dict`` carries it and a resumed run continues it. Under DDP every
      process keeps its own, from its own batches.
    """

    running_mean: Tensor
    normalize_steps: Tensor
    active_index: Tensor

    def __init__(self, **options: Any) -> None:
        super().__init__()
        values = with_defaults(_DEFAULTS, options, "loss")
        for key in LOSS_WEIGHT_KEYS:
            check_value(f"loss.{key}", values[key])
        check_loss_weights(values)
        check_value("loss.normalize", values["normalize"])
        self.weights = {term: float(values[key]) for term, key in _WEIGHT_KEYS.items()}
        self.normalize = str(values["normalize"])
        # Every term is built (so a typo in a disabled term's options is still reported), and
        # only the ones with a weight are kept.
        ssi = SSILoss(values["ssi_standardize"], values["ssi_space"])
        silog = SiLogLoss(values["silog_lambda"], values["silog_scale"])
        grad = MultiScaleGradientLoss(values["gradient_scales"], values["gradient_space"])
        self.ssi = ssi if self.weights["ssi"] > 0 else None
        self.silog = silog if self.weights["silog"] > 0 else None
        self.grad = grad if self.weights["grad"] > 0 else None
        # Registered whatever ``normalize`` is, so every DepthLoss has the same state_dict keys.
        self.register_buffer("running_mean", torch.zeros(len(TERMS)))
        self.register_buffer("normalize_steps", torch.zeros((), dtype=torch.long))
        # Positions of the active terms in running_mean: built once and moved with the module, not a
        # host-to-device copy per step.
        self.register_buffer("active_index", torch.tensor([TERMS.index(name) for name in self.active_terms]),
                             persistent=False)

    @classmethod
    def from_config(cls, cfg: Any) -> "DepthLoss":
        """Build from ``LossConfig``, an OmegaConf node or a plain mapping (missing keys: defaults)."""
        if isinstance(cfg, Mapping):
            return cls(**{str(key): value for key, value in cfg.items()})
        return cls(**{key: getattr(cfg, key) for key in LOSS_KEYS if hasattr(cfg, key)})

    @property
    def active_terms(self) -> List[str]:
        """The weighted terms this loss computes (weight > 0), in ``TERMS`` order."""
        return [name for name in TERMS if getattr(self, name) is not None]

    @property
    def term_names(self) -> List[str]:
        """The keys ``forward`` reports, in order, ``total`` last."""
        names = [name for name in ("ssi", "silog") if getattr(self, name) is not None]
        if self.grad is not None:
            names += ["grad"] + [f"grad/s{s}" for s in self.grad.scales]
        return names + [f"share/{name}" for name in self.active_terms] + ["total"]

    def forward(self, pred: Tensor, target: Tensor, valid_mask: Tensor) -> Tuple[Tensor, Dict[str, float]]:
        values: Dict[str, Tensor] = {}
        if self.ssi is not None:
            values["ssi"] = self.ssi(pred, target, valid_mask)
        if self.silog is not None:
            values["silog"] = self.silog(pred, target, valid_mask)
        if self.grad is not None:
            values["grad"], per_scale = self.grad(pred, target, valid_mask)
            values.update({f"grad/{key}": value for key, value in per_scale.items()})
        active = self.active_terms
        # At least one term: check_loss_weights refuses all-zero weights.
        if self.normalize == "none":
            parts = [self.weights[name] * values[name] for name in active]
        else:
            scales = self._normalizers(torch.stack([values[name] for name in active]))
            parts = [self.weights[name] * values[name] / scale for name, scale in zip(active, scales)]
        total = sum(parts[1:], parts[0])
        # The shares are read-outs: detached, and 0 rather than NaN for an all-zero total.
        denominator = total.detach().abs().clamp_min(1e-12)
        values.update({f"share/{name}": part.detach() / denominator for name, part in zip(active, parts)})
        values["total"] = total
        # One stack + tolist: a single device sync for all logged numbers.
        floats = torch.stack([v.detach().float() for v in values.values()]).tolist()
        return total, dict(zip(values.keys(), floats))

    def _normalizers(self, current: Tensor) -> List[Tensor]:
        """What each active term is divided by under running_mean: its running mean (updated first in training)."""
        index = self.active_index
        current = current.detach().float()
        if self.training:
            # Tensor operations only (no ``if`` on a value): no device sync per step.
            previous = self.running_mean[index]
            blended = NORMALIZE_MOMENTUM * previous + (1.0 - NORMALIZE_MOMENTUM) * current
            updated = torch.where(self.normalize_steps > 0, blended, current)  # the first step sets it
            finite = torch.isfinite(current).all()
            self.running_mean[index] = torch.where(finite, updated, previous)
            self.normalize_steps += finite.long()
        # Before any training step (an eval-mode call) the current values stand in.
        divisor = torch.where(self.normalize_steps > 0, self.running_mean[index], current)
        # An all-invalid batch can make a term exactly 0; the floor keeps the division finite.
        return list(divisor.clamp_min(1e-12).unbind())


#: Term name (as reported by ``forward``) -> its weight's key in ``LossConfig``.
_WEIGHT_KEYS = {"ssi": "ssi_weight", "silog": "silog_weight", "grad": "gradient_weight"}
