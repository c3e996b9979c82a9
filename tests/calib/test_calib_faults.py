"""depth-calib and the output rule (issue 17, D2/D3): outputs are checked before any work (an
unwritable folder, an input named as an output: exit 2), a full disk while writing is one line
naming the path and the cause (exit 1), and nothing partial or temporary is left behind. Real
file systems (tests/faults.py): a tiny tmpfs that fills up, a read-only tmpfs that refuses root."""
from __future__ import annotations

import os

import pytest

from edgedepth.calib.cli import main

from faults import alias, leftovers, read_only_dir, run_command, small_disk


def _error_lines(capsys) -> list:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.strip().splitlines() if "error:" in line]


def _argv(onnx_path, folder, *extra) -> list:
    return ["--onnx", str(onnx_path), "--data", str(folder), "--num-images", "8", "--num-eval", "4", *extra]


def test_a_full_disk_while_writing_the_int8_model_is_one_line_and_leaves_nothing(small, tmp_path):
    """D3: `--output small/m.int8.onnx` on a full disk was an OSError traceback. Run as a user runs
    it (a fresh interpreter), so the one stderr line is what a user sees."""
    onnx_path, folder = small
    with small_disk(8) as disk:  # the Q/DQ graph of the small net is ~20 KB: it cannot fit
        out = disk / "m.int8.onnx"
        done = run_command(["depth-calib", *_argv(onnx_path, folder, "--output", str(out))])
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("depth-calib: error:") and str(out) in line, line
        assert "No space left on device (ENOSPC)" in line and "free space or write elsewhere" in line
        assert not out.exists() and leftovers(disk) == []
        assert os.listdir(disk) == []


@pytest.mark.parametrize("option", ["--output", "--report", "--save-set"])
def test_an_output_in_a_read_only_folder_is_refused_before_any_work(small, tmp_path, capsys, option):
    """D3: `--report rofs/r.json` failed only at the end, after the INT8 model was written;
    `--save-set rofs/s.npy` after reading every image. Now both are refused up front (exit 2)."""
    onnx_path, folder = small
    out = tmp_path / "m.int8.onnx"
    with read_only_dir() as rofs:
        target = rofs / "sub" / "x.json"
        outputs = {"--output": out, option: target}
        extra = [arg for name, path in outputs.items() for arg in (name, str(path))]
        assert main(_argv(onnx_path, folder, *extra)) == 2
        lines = _error_lines(capsys)
        assert len(lines) == 1 and option in lines[0] and str(target) in lines[0]
        assert "Read-only file system" in lines[0] and "choose a writable folder" in lines[0]
    assert not out.exists() and not (tmp_path / "m.int8.report.json").exists()


@pytest.mark.parametrize("link", ["same path", "hard link", "symlink"])
def test_the_onnx_is_never_an_output(small, tmp_path, capsys, link):
    """D2: an output that is the input, under any name, is refused (exit 2) and the input stays."""
    onnx_path, folder = small
    before = onnx_path.read_bytes()
    assert main(_argv(onnx_path, folder, "--output", str(alias(onnx_path, link, tmp_path)))) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and "is the --onnx file" in lines[0]
    assert onnx_path.read_bytes() == before


def test_outputs_may_not_replace_the_loaded_set_or_each_other(small, tmp_path, capsys):
    onnx_path, folder = small
    saved = tmp_path / "set.npy"
    assert main(_argv(onnx_path, folder, "--output", str(tmp_path / "a.onnx"), "--save-set", str(saved))) == 0
    capsys.readouterr()
    argv = ["--onnx", str(onnx_path), "--load-set", str(saved), "--save-set", str(saved),
            "--output", str(tmp_path / "b.onnx")]
    assert main(argv) == 2
    line = _error_lines(capsys)[0]
    assert "--save-set" in line and "--load-set" in line
    argv = ["--onnx", str(onnx_path), "--load-set", str(saved), "--output", str(tmp_path / "b.onnx"),
            "--report", str(tmp_path / "set.npy.json")]  # the report would replace the set's key file
    assert main(argv) == 2
    line = _error_lines(capsys)[0]
    assert "--report" in line and "--load-set's key file" in line
    argv = ["--onnx", str(onnx_path), "--load-set", str(saved), "--output", str(tmp_path / "b.onnx"),
            "--save-set", str(tmp_path / "b.onnx")]
    assert main(argv) == 2
    assert "name the same file" in _error_lines(capsys)[0]
    assert not (tmp_path / "b.onnx").exists()
