"""The one preprocessing: colour order, exact normalisation, resizing and input checks."""
from __future__ import annotations

import numpy as np
import pytest

from edgedepth.errors import EdgeDepthError
from edgedepth.preprocess import denormalize, normalization_constants, preprocess, preprocess_batch, resize_to_spec
from edgedepth.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

SPEC = ModelSpec(height=64, width=96)  # RGB, ImageNet mean/std


def random_image(height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_bgr_and_rgb_inputs_give_the_same_tensor():
    bgr = random_image()
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    from_bgr = preprocess(bgr, SPEC, input_order="BGR")
    assert np.array_equal(from_bgr, preprocess(rgb, SPEC, input_order="RGB"))
    assert not np.array_equal(from_bgr, preprocess(bgr, SPEC, input_order="RGB"))


def test_channel_order_follows_the_spec():
    image = np.zeros((64, 96, 3), np.uint8)
    image[..., 2] = 255  # pure red in BGR
    for spec, red_channel in ((SPEC, 0), (SPEC.replace(color_order="BGR"), 2)):
        tensor = preprocess(image, spec, input_order="BGR")
        mean, std = spec.mean[red_channel], spec.std[red_channel]
        assert tensor[0, red_channel, 0, 0] == pytest.approx((1.0 - mean) / std, rel=1e-6)


def test_normalisation_is_exactly_x_over_255_minus_mean_over_std():
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[0, 0] = (0, 128, 255)
    rgb[5, 7] = (51, 102, 204)
    tensor = preprocess(rgb, SPEC, input_order="RGB")
    assert tensor.shape == (1, 3, 64, 96) and tensor.dtype == np.float32
    for (row, col), pixel in (((0, 0), (0, 128, 255)), ((5, 7), (51, 102, 204))):
        expected = [(value / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] for c, value in enumerate(pixel)]
        assert tensor[0, :, row, col] == pytest.approx(expected, rel=1e-6, abs=1e-6)
    scale, offset = normalization_constants(SPEC)
    assert scale[0] * 255 + offset[0] == pytest.approx((1 - 0.485) / 0.229, rel=1e-6)


def test_images_are_resized_to_the_spec_size():
    for height, width in ((480, 640), (32, 48), (64, 96)):
        assert preprocess(random_image(height, width), SPEC).shape == (1, 3, 64, 96)
        assert resize_to_spec(random_image(height, width), SPEC).shape == (64, 96, 3)
    flat = np.full((480, 640, 3), 77, np.uint8)  # a resize must not change a constant image
    assert np.array_equal(resize_to_spec(flat, SPEC), np.full((64, 96, 3), 77, np.uint8))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 96), np.uint8),  # grey
        np.zeros((64, 96, 4), np.uint8),  # BGRA
        np.zeros((64, 96, 3), np.float32),  # not uint8
        np.zeros((1, 64, 96, 3), np.uint8),  # batched
    ],
)
def test_bad_images_are_rejected_with_their_shape(image):
    with pytest.raises(EdgeDepthError, match=r"HxWx3 uint8.*got shape"):
        preprocess(image, SPEC)


def test_bad_input_order_and_empty_batch_are_rejected():
    with pytest.raises(EdgeDepthError, match="input_order"):
        preprocess(random_image(), SPEC, input_order="RGBA")
    with pytest.raises(EdgeDepthError, match="no images"):
        preprocess_batch([], SPEC)


def test_batch_stacks_single_images():
    images = [random_image(seed=1), random_image(seed=2)]
    batch = preprocess_batch(images, SPEC)
    assert batch.shape == (2, 3, 64, 96)
    assert np.array_equal(batch[1:], preprocess(images[1], SPEC))


def test_denormalize_inverts_preprocess_at_spec_size():
    rgb = random_image()
    restored = denormalize(preprocess(rgb, SPEC, input_order="RGB"), SPEC)
    assert restored.shape == (1, 64, 96, 3) and restored.dtype == np.uint8
    assert np.array_equal(restored[0], rgb)
