"""depth-run --sparse-depth / --align / --temporal (issue 16): the stages the flags build run before
the sinks, their figures reach the stats JSON, and wrong uses are refused before any work."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.runtime.cli import run_main

pytest.importorskip("scipy")


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def image_folder(folder: Path, frames) -> Path:
    folder.mkdir()
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"view{index}.png"), frame)
    return folder


def run(model: Path, images: Path, out: Path, *extra: str) -> dict:
    stats = out / "stats.json"
    code = run_main(["--model", str(model), "--input", str(images), "--no-display", "--quiet",
                     "--save-depth", str(out / "depth"), "--depth-format", "npy", "--stats-json", str(stats), *extra])
    assert code == 0
    return json.loads(stats.read_text())


def saved(out: Path) -> dict:
    return {path.stem: np.load(path) for path in sorted((out / "depth").glob("*.npy"))}


def test_sparse_depth_aligns_the_saved_depth_and_reports_the_fit(tiny_model_factory, make_frames, tmp_path):
    """Sparse points at 1.5x the network's own depth (5% of pixels, named like the images): the saved
    depth is the prediction scaled by 1.5 wherever that stays in range, and the stats hold the fit."""
    model = tiny_model_factory("m.onnx")
    images = image_folder(tmp_path / "images", make_frames(3, 320, 240))
    raw = saved_after(run(model.path, images, tmp_path / "raw"), tmp_path / "raw")

    sparse = tmp_path / "sparse"
    sparse.mkdir()
    rng = np.random.default_rng(0)
    for name, depth in raw.items():
        points = np.where(rng.random(depth.shape) < 0.05, 1.5 * depth, 0.0).astype(np.float32)
        np.save(sparse / f"{name}.npy", points)

    stats = run(model.path, images, tmp_path / "aligned", "--sparse-depth", str(sparse), "--align", "scale")
    aligned = saved(tmp_path / "aligned")
    assert aligned.keys() == raw.keys()
    for name, depth in raw.items():
        in_range = 1.5 * depth < 9.9  # the model's max_depth is 10: aligned depth is clipped there
        np.testing.assert_allclose(aligned[name][in_range], 1.5 * depth[in_range], rtol=1e-3)
    summary = stats["alignment"]
    assert summary["frames"] == 3 and summary["aligned"] == 3
    assert json.dumps(summary).count("NaN") == 0
    assert summary["scale"]["median"] == pytest.approx(1.5, rel=1e-3)


def saved_after(stats: dict, out: Path) -> dict:
    assert stats["frames"]["processed"] == 3
    return saved(out)


def test_temporal_filter_runs_last_and_reports_flicker(tiny_model_factory, make_frames, tmp_path):
    model = tiny_model_factory("m.onnx")
    images = image_folder(tmp_path / "images", make_frames(4, 320, 240))
    stats = run(model.path, images, tmp_path / "out", "--temporal", "0.3")
    summary = stats["temporal"]
    assert {"flicker_raw", "flicker_filtered"} <= set(summary)
    assert summary["frames"] == 4


@pytest.mark.parametrize("case", ["save_depth_is_sparse", "temporal_above_one", "empty_sparse_folder"])
def test_wrong_uses_are_refused_before_any_work(case, tiny_model_factory, make_frames, tmp_path, capsys):
    model = tiny_model_factory("m.onnx")
    images = image_folder(tmp_path / "images", make_frames(2, 320, 240))
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    if case != "empty_sparse_folder":
        np.save(sparse / "view0.npy", np.ones((64, 96), np.float32))
    stats = tmp_path / "stats.json"
    args = ["--model", str(model.path), "--input", str(images), "--no-display", "--stats-json", str(stats),
            "--sparse-depth", str(sparse)]
    args += {"save_depth_is_sparse": ["--save-depth", str(sparse)], "temporal_above_one": ["--temporal", "1.5"],
             "empty_sparse_folder": []}[case]
    assert run_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    flag = {"save_depth_is_sparse": "--save-depth", "temporal_above_one": "--temporal",
            "empty_sparse_folder": "sparse"}[case]
    assert "error" in err[-1] and flag in err[-1], err  # argparse's usage lines may come first
    assert not stats.exists()  # nothing ran
    assert sorted(path.name for path in sparse.iterdir()) == ([] if case == "empty_sparse_folder" else ["view0.npy"])
