"""--sparse-depth reading (runtime/sparse.py): file formats, matching to frames, other sizes, refusals,
and the sensor patterns simulate_sparse draws."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.errors import DataError, UsageError
from edgedepth.runtime.sources import Frame, frame_names
from edgedepth.runtime.sparse import SparseDepthReader, match_mode, simulate_sparse, to_depth_grid


def frame(index: int, name: str = "", size=(96, 128)) -> Frame:
    return Frame(index, np.zeros((*size, 3), np.uint8), 0.0, 0.0, name)


def sparse_map(shape=(96, 128), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 9.0, shape).astype(np.float32)
    return np.where(rng.random(shape) < 0.05, depth, 0).astype(np.float32)


def write_png_mm(path: Path, metres: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.rint(metres * 1000).astype(np.uint16))


def test_png_millimetres_and_npy_metres_matched_by_image_stem(tmp_path):
    expected = sparse_map()
    write_png_mm(tmp_path / "kitchen_01.png", expected)
    np.save(tmp_path / "kitchen_02.npy", expected)
    reader = SparseDepthReader(str(tmp_path), match_mode("images"))
    png = reader.read(frame(0, "kitchen_01"), (96, 128))
    npy = reader.read(frame(1, "kitchen_02"), (96, 128))
    assert png is not None and npy is not None
    np.testing.assert_allclose(png, expected, atol=5e-4)  # millimetre rounding
    np.testing.assert_array_equal(npy, expected)
    assert reader.read(frame(2, "kitchen_03"), (96, 128)) is None  # no file: no alignment
    assert reader.read(frame(0, "000000"), (96, 128)) is None  # images match by name, not index


def test_videos_and_cameras_match_by_frame_index_padded_or_not(tmp_path):
    write_png_mm(tmp_path / "000123.png", sparse_map())
    np.save(tmp_path / "7.npy", sparse_map(seed=1))
    (tmp_path / "notes.npy.txt").write_text("ignored")
    reader = SparseDepthReader(str(tmp_path), match_mode("video"))
    assert reader.read(frame(123), (96, 128)) is not None
    assert reader.read(frame(7), (96, 128)) is not None
    assert reader.read(frame(8), (96, 128)) is None
    assert len(reader) == 2


def test_image_names_as_depth_run_gives_them(tmp_path):
    """Images sharing a stem keep their extension in the frame name; --loop prefixes the position."""
    names = frame_names(["in/x.png", "in/x.jpg", "in/y.png"])
    assert names == ["x.png", "x.jpg", "y"]
    for name in names:
        np.save(tmp_path / f"{name}.npy", sparse_map())
    reader = SparseDepthReader(str(tmp_path), "name")
    assert all(reader.path_for(frame(0, name)) == tmp_path / f"{name}.npy" for name in names)
    assert reader.path_for(frame(12, "000012_y")) == tmp_path / "y.npy"


def test_zero_nan_and_negative_are_no_measurement(tmp_path):
    values = np.array([[0.0, np.nan, -1.0, 2.5]], dtype=np.float32)
    np.save(tmp_path / "000000.npy", values)
    read = SparseDepthReader(str(tmp_path), "index").read(frame(0, size=(1, 4)), (1, 4))
    np.testing.assert_array_equal(read, [[0.0, 0.0, 0.0, 2.5]])
    np.save(tmp_path / "000000.npy", values[..., None])  # HxWx1 is a map too
    read = SparseDepthReader(str(tmp_path), "index").read(frame(0, size=(1, 4)), (1, 4))
    np.testing.assert_array_equal(read, [[0.0, 0.0, 0.0, 2.5]])


def test_another_size_with_the_image_aspect_is_mapped_point_by_point():
    """A 480x640 map onto a 96x128 depth grid: every measurement lands on the pixel its centre falls
    in with its own value (no interpolation, no point lost but to a nearer one on the same pixel)."""
    big = np.zeros((480, 640), np.float32)
    big[2, 2], big[240, 320], big[479, 639] = 1.0, 2.0, 3.0
    big[240, 321] = 5.0  # same target pixel as (240, 320): the nearer, 2.0, is what the camera sees
    grid = to_depth_grid(big, (96, 128), (480, 640))
    assert {(r, c): grid[r, c] for r, c in zip(*np.nonzero(grid))} == {(0, 0): 1.0, (48, 64): 2.0, (95, 127): 3.0}
    small = np.zeros((48, 64), np.float32)
    small[10, 20] = 4.0
    up = to_depth_grid(small, (96, 128), (480, 640))
    assert np.count_nonzero(up) == 1 and up[21, 41] == 4.0  # upsampling stays sparse


def test_another_aspect_is_one_line_naming_the_sizes(tmp_path):
    np.save(tmp_path / "000000.npy", np.ones((480, 480), np.float32))
    np.save(tmp_path / "000001.npy", np.ones((96, 128), np.float32))
    reader = SparseDepthReader(str(tmp_path), "index")
    with pytest.raises(DataError, match=r"is 480x480 but the depth is 128x96 and the camera image 640x480") as info:
        reader.read(frame(0, size=(480, 640)), (96, 128))
    assert "\n" not in str(info.value)
    # The depth's own size is always accepted, whatever the camera's aspect (the input is stretched).
    assert reader.read(frame(1, size=(720, 1280)), (96, 128)) is not None


@pytest.mark.parametrize("content, message", [
    (lambda p: cv2.imwrite(str(p / "000000.png"), np.full((4, 4), 200, np.uint8)), "expected a 16-bit"),
    (lambda p: (p / "000000.png").write_bytes(b"\x89PNG truncated"), "cannot be decoded"),
    (lambda p: (p / "000000.npy").write_bytes(b"garbage"), "cannot be read"),
    (lambda p: np.save(p / "000000.npy", np.ones((2, 4, 4), np.float32)), "expected an HxW map"),
    (lambda p: np.save(p / "000000.npy", np.array(["a"] * 16).reshape(4, 4)), "expected float metres"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, content, message):
    content(tmp_path)
    with pytest.raises(DataError, match=message):
        SparseDepthReader(str(tmp_path), "index").read(frame(0, size=(4, 4)), (4, 4))


def test_a_folder_without_sparse_files_is_refused_before_any_work(tmp_path):
    with pytest.raises(UsageError, match="is not a folder"):
        SparseDepthReader(str(tmp_path / "missing"))
    (tmp_path / "readme.txt").write_text("no depth here")
    cv2.imwrite(str(tmp_path / "frame.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UsageError, match="holds no sparse depth file"):
        SparseDepthReader(str(tmp_path), "name")
    np.save(tmp_path / "x.npy", np.ones((4, 4), np.float32))
    with pytest.raises(UsageError, match=r"000123.png / 000123.npy \(frame index\)"):
        SparseDepthReader(str(tmp_path), "index")  # named, but not by frame index
    np.save(tmp_path / "0012.npy", np.ones((4, 4), np.float32))
    np.save(tmp_path / "12.npy", np.ones((4, 4), np.float32))
    with pytest.raises(UsageError, match="both belong to frame '12'"):
        SparseDepthReader(str(tmp_path), "index")
    assert SparseDepthReader(f"file://{tmp_path}", "name").path_for(frame(0, "x")) == tmp_path / "x.npy"


@pytest.mark.parametrize("density", [0.001, 0.005, 0.01, 0.05, 0.1])
def test_simulated_patterns_have_their_density_and_shape(density):
    depth = np.full((240, 320), 3.0, np.float32)
    depth[:, :8] = 0  # invalid pixels are never measured
    rng = np.random.default_rng(0)
    for pattern in ("uniform", "scanlines", "scanlines_missing_quarter", "blocked"):
        sparse = simulate_sparse(depth, density, pattern, rng)
        assert not sparse[:, :8].any() and set(np.unique(sparse)) <= {0.0, 3.0}
        measured = np.count_nonzero(sparse) / sparse.size
        share = {"scanlines_missing_quarter": 0.75, "blocked": 0.75}.get(pattern, 1.0)
        assert measured == pytest.approx(density * share * (312 / 320), rel=0.3, abs=2 / sparse.size), pattern
    full = np.unique(np.nonzero(simulate_sparse(depth, density, "scanlines", np.random.default_rng(1)))[0]).size
    kept = np.unique(np.nonzero(simulate_sparse(depth, density, "scanlines_missing_quarter",
                                                np.random.default_rng(1)))[0]).size
    assert full < 240 * 0.5 and kept == round(0.75 * full)


def test_simulate_refuses_bad_arguments():
    with pytest.raises(UsageError, match="0 < density <= 1"):
        simulate_sparse(np.ones((4, 4)), 0.0)
    with pytest.raises(UsageError, match="pattern 'radial' is unknown"):
        simulate_sparse(np.ones((4, 4)), 0.1, "radial")
