"""Depth colourisation for windows, videos and reports (OpenCV colour maps)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from edgedepth.errors import EdgeDepthError
from edgedepth.preprocess import import_cv2

COLORMAPS = ("turbo", "inferno", "magma", "viridis", "gray")


def colorize_depth(
    depth: np.ndarray,
    min_depth: float,
    max_depth: float,
    colormap: str = "turbo",
    invalid_mask: Optional[np.ndarray] = None,
) -> np.ndarray:
    """HxW metres -> HxWx3 uint8 BGR; near is warm (turbo: red), far is cool; invalid is black."""
    if colormap not in COLORMAPS:
        raise EdgeDepthError(f"colormap {colormap!r} is unknown; choose one of {', '.join(COLORMAPS)}")
    if not max_depth > min_depth:
        raise EdgeDepthError(f"depth range [{min_depth}, {max_depth}] is empty; pass MIN < MAX")
    cv2 = import_cv2()
    depth = np.asarray(depth, dtype=np.float32)
    # Inverse scale so near objects get the high end of the map, as depth viewers usually show.
    # Non-finite pixels are painted black below; map them in range first (no overflow warnings).
    finite = np.nan_to_num(depth, nan=max_depth, posinf=max_depth, neginf=max_depth)
    scaled = (max_depth - finite) / (max_depth - min_depth)
    levels = np.clip(scaled * 255.0, 0, 255).astype(np.uint8)
    if colormap == "gray":
        image = cv2.cvtColor(levels, cv2.COLOR_GRAY2BGR)
    else:
        image = cv2.applyColorMap(levels, getattr(cv2, f"COLORMAP_{colormap.upper()}"))
    invalid = ~np.isfinite(depth) if invalid_mask is None else (invalid_mask | ~np.isfinite(depth))
    image[invalid] = 0
    return image
