"""D8/D13: Ctrl-C, SIGTERM or SIGHUP during depth-export and depth-calib end the command with exit
130 and one line, no traceback, and leave no temporary file (the review found a 57 MB
``.model.onnx.*.tmp`` after SIGTERM on depth-export, and 56-70 MB temp folders after depth-calib)."""
from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import pytest

from faults import leftovers, signal_after

pytest.importorskip("torch")


def _calib_workdirs() -> set:
    return set(Path(tempfile.gettempdir()).glob("edgedepth-calib-*"))


def _assert_interrupted(done, folder: Path, expected: set, finished: tuple = ()) -> None:
    """Exit 130, one line, no traceback, no temporary file. ``finished``: outputs that may exist when
    the signal was swallowed by native code and the command ran on ("finished outputs kept"): each
    must then be complete (an ONNX that passes the checker, a JSON that parses)."""
    assert done.returncode == 130, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and "interrupted by" in lines[-1], done.stderr
    assert leftovers(folder) == [] and {p.name for p in folder.iterdir()} - set(finished) == expected
    for name in finished:
        path = folder / name
        if path.exists() and path.suffix == ".onnx":
            import onnx

            onnx.checker.check_model(str(path), full_check=True)
        elif path.exists() and path.suffix == ".json":
            import json

            json.loads(path.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_depth_export_onnx_leaves_nothing_behind(checkpoint, tmp_path, sig):
    out = tmp_path / "model.onnx"
    done = signal_after(["depth-export", "onnx", "--checkpoint", str(checkpoint), "--output", str(out)], sig,
                        after=out)  # the temporary .model.onnx.*.tmp appears when tracing starts
    _assert_interrupted(done, tmp_path, set(), finished=("model.onnx",))


@pytest.mark.slow
def test_sigterm_during_depth_calib_removes_its_work_folder(static_onnx, tmp_path):
    import cv2
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for index in range(40):
        cv2.imwrite(str(frames / f"{index:03d}.png"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    before = _calib_workdirs()
    out = tmp_path / "model.int8.onnx"
    argv = ["depth-calib", "--onnx", str(static_onnx), "--data", str(frames), "--num-images", "24",
            "--num-eval", "8", "--output", str(out), "--max-fallback", "0"]
    done = signal_after(argv, signal.SIGTERM, after=lambda: bool(_calib_workdirs() - before))
    finished = ("model.int8.onnx", "model.int8.report.json", "model.int8.report.md")
    _assert_interrupted(done, tmp_path, {"frames"}, finished=finished)
    assert _calib_workdirs() - before == set(), "the quantizer's work folder is removed"
