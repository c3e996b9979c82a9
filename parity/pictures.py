"""The report's pictures, drawn with OpenCV (no plotting library needed on a Jetson).

* worst input: the frame, reference depth, candidate depth and an |error| heatmap with its scale;
* side by side: reference and candidate depth for several inputs;
* error histograms: absolute (m) and relative error over every pixel, log-scaled, budget marked.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.agreement import HIST_BINS_PER_DECADE, HIST_DECADES, ErrorHistogram
from edgedepth.colormap import colorize_depth
from edgedepth.io import write_bytes_atomic
from edgedepth.preprocess import import_cv2

PANEL_HEIGHT = 192
HEADER = 24
GAP = 4
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)
NONFINITE_COLOUR = (255, 0, 255)  # magenta: no colour map uses it
FONT_SCALE = 0.42


def fit_height(image: np.ndarray, height: int = PANEL_HEIGHT) -> np.ndarray:
    """Scale to ``height`` rows: whole-pixel blocks when enlarging (pixels stay visible), area when shrinking."""
    cv2 = import_cv2()
    rows, cols = image.shape[:2]
    if rows == height:
        return image
    if rows < height:
        factor = max(1, height // rows)
        image = cv2.resize(image, (cols * factor, rows * factor), interpolation=cv2.INTER_NEAREST)
        rows, cols = image.shape[:2]
        if rows == height:
            return image
    width = max(1, round(cols * height / rows))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if rows > height else cv2.INTER_LINEAR)


def put_text(image: np.ndarray, text: str, origin: Tuple[int, int], colour=TEXT, scale: float = FONT_SCALE) -> None:
    cv2 = import_cv2()
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def titled(panel: np.ndarray, title: str) -> np.ndarray:
    """``panel`` under a dark header strip holding ``title``."""
    header = np.full((HEADER, panel.shape[1], 3), BACKGROUND, np.uint8)
    put_text(header, title, (4, HEADER - 8))
    return np.vstack([header, panel])


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = image
    return canvas


def hstack(panels: Sequence[np.ndarray]) -> np.ndarray:
    height = max(panel.shape[0] for panel in panels)
    parts: List[np.ndarray] = []
    for panel in panels:
        parts += [_pad_to(panel, height, panel.shape[1]), np.full((height, GAP, 3), BACKGROUND, np.uint8)]
    return np.hstack(parts[:-1])


def vstack(panels: Sequence[np.ndarray]) -> np.ndarray:
    width = max(panel.shape[1] for panel in panels)
    parts: List[np.ndarray] = []
    for panel in panels:
        parts += [_pad_to(panel, panel.shape[0], width), np.full((GAP, width, 3), BACKGROUND, np.uint8)]
    return np.vstack(parts[:-1])


def as_bgr(image: np.ndarray, input_order: str) -> np.ndarray:
    return np.ascontiguousarray(image[:, :, ::-1]) if input_order == "RGB" else image


def depth_panel(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Turbo-coloured depth (near = red); NaN/Inf black."""
    return fit_height(colorize_depth(depth, min_depth, max_depth))


def error_panel(error: np.ndarray, cap: float) -> np.ndarray:
    """|error| on the inferno map from 0 (black) to ``cap`` (yellow); NaN/Inf magenta."""
    cv2 = import_cv2()
    finite = np.isfinite(error)
    scaled = np.where(finite, error, 0.0) / max(cap, 1e-30)
    levels = np.clip(scaled * 255.0, 0, 255).astype(np.uint8)
    image = cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO)
    image[~finite] = NONFINITE_COLOUR
    return fit_height(image)


def colour_bar(width: int, cap: float, unit: str) -> np.ndarray:
    """A horizontal inferno scale from 0 to ``cap`` with its end labels."""
    cv2 = import_cv2()
    ramp = np.tile(np.linspace(0, 255, max(width - 8, 2)).astype(np.uint8), (12, 1))
    bar = np.full((34, width, 3), BACKGROUND, np.uint8)
    bar[2:14, 4: 4 + ramp.shape[1]] = cv2.applyColorMap(ramp, cv2.COLORMAP_INFERNO)
    put_text(bar, "0", (4, 29))
    label = format_metres(cap) if unit == "m" else f"{cap:.3g} {unit}".strip()
    put_text(bar, label, (max(4, width - 8 * len(label)), 29))
    return bar


def format_metres(value: float) -> str:
    """0.0032 -> '3.2 mm', 0.42 -> '42 cm', 2.5 -> '2.5 m'."""
    if not math.isfinite(value):
        return str(value)
    for unit, factor in (("m", 1.0), ("cm", 1e2), ("mm", 1e3), ("um", 1e6)):
        if abs(value) * factor >= 1 or unit == "um":
            return f"{value * factor:.3g} {unit}"
    return f"{value:.3g} m"


def worst_input_picture(
    image: np.ndarray, reference: np.ndarray, candidate: np.ndarray, min_depth: float, max_depth: float,
    title: str, input_order: str = "BGR",
) -> np.ndarray:
    """Frame | reference | candidate | |candidate - reference| heatmap, with the heatmap's scale."""
    error = _abs_error(reference, candidate)
    cap, finite = _error_cap([error]), np.isfinite(error)
    label = f"|error| (max {format_metres(cap)})" if finite.any() else "|error|: every pixel NaN/Inf"
    if not finite.all():
        label += ", NaN/Inf magenta"
    heat = titled(error_panel(error, cap), label)
    heat = vstack([heat, colour_bar(heat.shape[1], cap, "m")])
    panels = [
        titled(fit_height(as_bgr(image, input_order)), "input"),
        titled(depth_panel(reference, min_depth, max_depth), "reference (PyTorch FP32)"),
        titled(depth_panel(candidate, min_depth, max_depth), "candidate"),
        heat,
    ]
    return titled(hstack(panels), title)


def _abs_error(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(candidate.astype(np.float64) - reference.astype(np.float64))


def _error_cap(errors: Sequence[np.ndarray]) -> float:
    finite = [float(e[np.isfinite(e)].max()) for e in errors if np.isfinite(e).any()]
    return max(finite + [0.0]) or 1e-9


def side_by_side_picture(
    rows: Sequence[Tuple[str, np.ndarray, str, np.ndarray, np.ndarray]], min_depth: float, max_depth: float, title: str
) -> np.ndarray:
    """One row per ``(name, image, input_order, reference, candidate)``: frame | reference | candidate |
    |error|, the error on one scale for every row (given under the last row)."""
    errors = [_abs_error(reference, candidate) for _, _, _, reference, candidate in rows]
    cap, small = _error_cap(errors), PANEL_HEIGHT // 2
    lines = []
    for (name, image, order, reference, candidate), error in zip(rows, errors):
        lines.append(hstack([
            titled(fit_height(as_bgr(image, order), small), name[:28]),
            titled(fit_height(colorize_depth(reference, min_depth, max_depth), small), "reference"),
            titled(fit_height(colorize_depth(candidate, min_depth, max_depth), small), "candidate"),
            titled(fit_height(error_panel(error, cap), small), "|error|"),
        ]))
    body = vstack(lines)
    legend = np.full((34, body.shape[1], 3), BACKGROUND, np.uint8)
    bar = colour_bar(min(body.shape[1] // 2, 320), cap, "m")
    legend[:, legend.shape[1] - bar.shape[1]:] = bar
    put_text(legend, f"depth: turbo, red = near ({min_depth:g} m), blue = far ({max_depth:g} m)", (4, 20))
    return titled(vstack([body, legend]), title)


# --------------------------------------------------------------------------- histograms

PLOT_W, PLOT_H, MARGIN_L, MARGIN_B = 620, 200, 56, 30
DISPLAY_BINS_PER_DECADE = 10


def _display_counts(histogram: ErrorHistogram) -> Tuple[np.ndarray, int]:
    """Counts regrouped to :data:`DISPLAY_BINS_PER_DECADE` per decade, and the first decade."""
    group = HIST_BINS_PER_DECADE // DISPLAY_BINS_PER_DECADE
    return histogram.counts.reshape(-1, group).sum(axis=1), HIST_DECADES[0]


def _decade_range(counts: np.ndarray, first_decade: int) -> Tuple[int, int]:
    nonzero = np.flatnonzero(counts)
    if not nonzero.size:
        return -6, -3
    low = first_decade + nonzero[0] // DISPLAY_BINS_PER_DECADE
    high = first_decade + nonzero[-1] // DISPLAY_BINS_PER_DECADE + 1
    extra = max(0, 3 - (high - low))  # show at least three decades
    return low - extra // 2, high + extra - extra // 2


def _x_of(log_value: float, low: int, high: int) -> int:
    return MARGIN_L + int(round((log_value - low) / (high - low) * (PLOT_W - MARGIN_L - 10)))


def _axes(canvas: np.ndarray, low: int, high: int, unit: str) -> None:
    cv2 = import_cv2()
    base = PLOT_H - MARGIN_B
    cv2.line(canvas, (MARGIN_L, base), (PLOT_W - 10, base), TEXT, 1)
    for decade in range(low, high + 1):
        x = _x_of(decade, low, high)
        cv2.line(canvas, (x, base), (x, base + 4), TEXT, 1)
        put_text(canvas, f"1e{decade}", (x - 14, base + 18), scale=0.36)
    put_text(canvas, unit, (PLOT_W - 60, base + 18), scale=0.36)


def _bars(canvas: np.ndarray, counts: np.ndarray, first_decade: int, low: int, high: int, total: int) -> None:
    cv2 = import_cv2()
    base, top = PLOT_H - MARGIN_B, 30
    tallest = max(int(counts.max()), 1)
    for index in np.flatnonzero(counts):
        start = first_decade + index / DISPLAY_BINS_PER_DECADE
        x0, x1 = _x_of(start, low, high), _x_of(start + 1 / DISPLAY_BINS_PER_DECADE, low, high)
        y = base - int(round(counts[index] / tallest * (base - top)))
        cv2.rectangle(canvas, (x0, y), (max(x0 + 1, x1 - 1), base - 1), (230, 170, 60), -1)
    put_text(canvas, f"tallest bar: {tallest / max(total, 1):.1%} of pixels", (MARGIN_L, top - 6), scale=0.36)


def _markers(canvas: np.ndarray, markers: Sequence[Tuple[float, str]], low: int, high: int) -> None:
    cv2 = import_cv2()
    for value, label in markers:
        if value > 0 and low <= math.log10(value) <= high:
            x = _x_of(math.log10(value), low, high)
            cv2.line(canvas, (x, 24), (x, PLOT_H - MARGIN_B), (60, 60, 255), 1)
            put_text(canvas, label, (min(x + 3, PLOT_W - 8 * len(label)), 40), (90, 90, 255), 0.36)


def histogram_plot(
    histogram: ErrorHistogram, title: str, unit: str, markers: Sequence[Tuple[float, str]] = (),
) -> np.ndarray:
    """One log-x histogram panel with exact/overflow/non-finite counts in its title."""
    canvas = np.full((PLOT_H, PLOT_W, 3), BACKGROUND, np.uint8)
    counts, first = _display_counts(histogram)
    low, high = _decade_range(counts, first)
    total = histogram.total
    _axes(canvas, low, high, unit)
    _bars(canvas, counts, first, low, high, total)
    _markers(canvas, markers, low, high)
    share = max(total, 1)
    extra = (f"exact (<1e{HIST_DECADES[0]}): {histogram.exact / share:.1%}   "
             f"NaN/Inf: {histogram.nonfinite} ({histogram.nonfinite / share:.1%})")
    put_text(canvas, f"{title}   {extra}", (6, 14))
    return canvas


def histogram_picture(
    histograms: Dict[str, ErrorHistogram], title: str, markers: Optional[Dict[str, Sequence[Tuple[float, str]]]] = None,
) -> np.ndarray:
    """Absolute (m) and relative error histograms over every pixel of every input."""
    markers = markers or {}
    plots = [
        histogram_plot(histograms["abs"], "|candidate - reference|", "m", markers.get("abs", ())),
        histogram_plot(histograms["rel"], "|candidate - reference| / reference", "ratio", markers.get("rel", ())),
    ]
    return titled(vstack(plots), title)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Encode ``image`` (BGR uint8) as PNG and write it atomically."""
    cv2 = import_cv2()
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"OpenCV could not encode {path} as PNG")
    write_bytes_atomic(path, data.tobytes())
    return path
