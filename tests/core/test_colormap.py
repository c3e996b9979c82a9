"""Depth colourisation: near and far look different, invalid depth is black."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgedepth.colormap import COLORMAPS, colorize_depth
from edgedepth.errors import EdgeDepthError


def test_near_and_far_get_different_colours():
    depth = np.array([[0.5, 9.5]], np.float32)
    for colormap in COLORMAPS:
        image = colorize_depth(depth, 0.1, 10.0, colormap=colormap)
        assert image.shape == (1, 2, 3) and image.dtype == np.uint8
        assert not np.array_equal(image[0, 0], image[0, 1]), colormap


def test_gray_is_brighter_when_near():
    image = colorize_depth(np.array([[1.0, 5.0, 9.0]]), 0.0, 10.0, colormap="gray")
    assert image[0, 0, 0] > image[0, 1, 0] > image[0, 2, 0]


def test_turbo_near_is_red_far_is_blue():
    image = colorize_depth(np.array([[0.1, 10.0]]), 0.1, 10.0)
    near_b, _, near_r = image[0, 0].astype(int)
    far_b, _, far_r = image[0, 1].astype(int)
    assert near_r > near_b and far_b > far_r  # BGR order


def test_nan_inf_and_masked_pixels_are_black():
    depth = np.array([[np.nan, np.inf, 2.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an FP16 overflow frame must not spam warnings in a live loop
        image = colorize_depth(depth, 0.1, 10.0, invalid_mask=np.array([[False, False, False, True]]))
    assert not image[0, :2].any() and not image[0, 3].any()
    assert image[0, 2].any()


def test_unknown_colormap_and_empty_range_are_refused():
    with pytest.raises(EdgeDepthError, match="jet.*turbo"):
        colorize_depth(np.ones((2, 2)), 0.1, 10.0, colormap="jet")
    with pytest.raises(EdgeDepthError, match="empty"):
        colorize_depth(np.ones((2, 2)), 5.0, 5.0)
