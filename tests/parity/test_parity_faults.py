"""depth-parity under faults (issue 17): an unwritable or full --report-dir, files it cannot use
(exit 2, one line), a budget file that is not YAML, and a signal while it runs."""
from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from edgedepth.budget import load_budgets
from edgedepth.errors import ConfigError

from faults import leftovers, read_only_dir, small_disk


def parity(args: List[str]) -> Tuple[int, str, str]:
    """``depth-parity`` in-process (one thread, progress shown): exit status, stdout, stderr."""
    from edgedepth.parity.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args + ["--threads", "1"])
    return code, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    """The one error line (progress lines start with '[' or 'inputs:')."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("depth-parity:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def wrong_output_shape(source: Path, target: Path) -> Path:
    """An ONNX with the source's input and spec whose output is half the size (1x1x32x48)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    image, depth = model.graph.input[0], model.graph.output[0].name
    nodes = [helper.make_node("ReduceMean", [image.name], ["grey"], keepdims=1, axes=[1]),
             helper.make_node("AveragePool", ["grey"], [depth], kernel_shape=[2, 2], strides=[2, 2])]
    output = helper.make_tensor_value_info(depth, TensorProto.FLOAT, [1, 1, 32, 48])
    small = helper.make_model(helper.make_graph(nodes, "half", [image], [output]),
                              opset_imports=[helper.make_opsetid("", 13)])
    for prop in model.metadata_props:
        small.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(small, str(target))
    return target


# --------------------------------------------------------------------------- D3: the report folder


def test_a_read_only_report_dir_is_refused_before_any_model_runs(tiny_checkpoint, artifacts):
    with read_only_dir() as folder:
        code, _, err = parity(["--checkpoint", str(tiny_checkpoint), "--candidates", str(artifacts["fp32"]),
                               "--report-dir", str(folder / "report")])
    line = error_line(err)
    assert code == 2 and "--report-dir" in line and str(folder / "report") in line and "Read-only" in line
    assert "inputs:" not in err, "refused before the inputs were made or a model ran"


def test_a_report_dir_that_is_a_file_is_refused(tiny_checkpoint, artifacts, tmp_path):
    taken = tmp_path / "report"
    taken.write_text("not a folder")
    code, _, err = parity(["--checkpoint", str(tiny_checkpoint), "--candidates", str(artifacts["fp32"]),
                           "--report-dir", str(taken)])
    line = error_line(err)
    assert code == 2 and "--report-dir" in line and "is a file" in line and "inputs:" not in err
    assert taken.read_text() == "not a folder"


def test_a_full_disk_while_writing_the_report_is_one_line_and_leaves_nothing_half_written(tiny_checkpoint,
                                                                                            artifacts):
    with small_disk(48) as disk:
        code, _, err = parity(["--checkpoint", str(tiny_checkpoint), "--candidates", str(artifacts["fp32"]),
                               "--report-dir", str(disk / "report")])
        line = error_line(err)
        assert code == 1 and "No space left on device" in line and str(disk / "report") in line
        assert leftovers(disk) == []
        report = disk / "report" / "report.json"
        assert not report.exists() or json.loads(report.read_text())["format"] == "edgedepth-parity"


# --------------------------------------------------------------------------- D17: files it cannot use: exit 2


def test_a_candidate_with_the_wrong_output_shape_is_a_usage_error(tiny_checkpoint, artifacts, tmp_path):
    candidate = wrong_output_shape(artifacts["fp32"], tmp_path / "half.onnx")
    code, _, err = parity(["--checkpoint", str(tiny_checkpoint), "--candidates", str(candidate),
                           "--report-dir", str(tmp_path / "report")])
    line = error_line(err)
    assert code == 2 and "half.onnx" in line and "(1, 1, 32, 48)" in line
    assert not (tmp_path / "report").exists()


def test_an_undecodable_video_is_a_usage_error(tiny_checkpoint, artifacts, tmp_path):
    video = tmp_path / "junk.mp4"
    video.write_bytes(np.random.default_rng(0).integers(0, 256, 30000, dtype=np.uint8).tobytes())
    code, _, err = parity(["--checkpoint", str(tiny_checkpoint), "--candidates", str(artifacts["fp32"]),
                           "--images", str(video), "--report-dir", str(tmp_path / "report")])
    line = error_line(err)
    assert code == 2 and "--images" in line and "junk.mp4" in line


def test_a_run_folder_passed_as_the_checkpoint_is_named_a_folder(tiny_checkpoint, artifacts, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(tiny_checkpoint.read_bytes())
    code, _, err = parity(["--checkpoint", str(tmp_path / "run"), "--candidates", str(artifacts["fp32"]),
                           "--report-dir", str(tmp_path / "report")])
    line = error_line(err)
    assert code == 2 and "is a folder" in line and str(tmp_path / "run" / "checkpoints" / "best.pt") in line
    assert "does not exist" not in line


# --------------------------------------------------------------------------- budget YAML


def test_a_budget_file_that_is_not_yaml_is_one_line_with_line_and_column(tmp_path):
    path = tmp_path / "budget.yaml"
    path.write_text("fp16:\n  abs_rel: 2.0e-3\n p99_abs_error: [0.005\n")
    with pytest.raises(ConfigError) as err:
        load_budgets(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "line 3, column" in message
    assert "^" not in message, "no copy of the offending line with a caret"


# --------------------------------------------------------------------------- signals


def test_sigterm_while_measuring_exits_130_with_no_report_and_no_temp_file(tiny_checkpoint, artifacts, tmp_path):
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for index in range(60):
        cv2.imwrite(str(frames / f"f{index:03d}.png"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    report = tmp_path / "report"
    code = "import sys; from edgedepth.parity.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--checkpoint", str(tiny_checkpoint), "--candidates", str(artifacts["fp32"]),
         str(artifacts["fp16"]), "--images", str(frames), "--max-images", "60", "--report-dir", str(report),
         "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 240
    for line in process.stderr:  # progress: "[1/60] f000.png"
        seen.append(line)
        if line.startswith("[2/") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    out, rest = process.communicate(timeout=120)
    err = "".join(seen) + rest
    assert process.returncode == 130, err[-3000:]
    assert error_line(err) == "depth-parity: interrupted by SIGTERM; finished outputs kept, partial ones removed"
    assert not (report / "report.json").exists() and not (report / "report.md").exists()
    assert leftovers(tmp_path) == []
