"""depth-export and the output rule (issue 17, D2/D3/D10/D16): an input is never an output (same
path, hard link, the --fp16 FP32 companion), an unwritable folder is refused before any work
(exit 2), a full disk while writing is one line naming the path and the cause (exit 1, not
"torch.onnx could not export the network"), and nothing partial or temporary is left behind.
Real file systems (tests/faults.py): a tiny tmpfs that fills up, a read-only tmpfs."""
from __future__ import annotations

import os
import shutil

import pytest

from edgedepth.export.cli import main

from faults import alias, leftovers, read_only_dir, small_disk

pytest.importorskip("torch")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_a_full_disk_during_export_names_the_file_and_leaves_nothing(checkpoint, capsys):
    """D3/D16: ENOSPC while torch.onnx writes the 57 MB graph was reported as "torch.onnx could not
    export the network (OSError: [Errno 28] ...)"."""
    with small_disk(1024) as disk:
        out = disk / "model.onnx"
        assert main(["onnx", "--checkpoint", str(checkpoint), "--output", str(out), "--no-simplify"]) == 1
        line = _error_line(capsys)
        assert line.startswith(f"depth-export: error: {out}: No space left on device (ENOSPC)"), line
        assert "torch.onnx" not in line and "free space or write elsewhere" in line
        assert os.listdir(disk) == [] and leftovers(disk) == []


@pytest.mark.parametrize("command", ["onnx", "onnx --fp16", "fp16"])
def test_an_output_in_a_read_only_folder_is_refused_before_any_work(checkpoint, static_onnx, capsys, command):
    with read_only_dir() as rofs:
        out = rofs / "models" / "model.fp16.onnx"
        source = ["--checkpoint", str(checkpoint)] if command.startswith("onnx") else ["--onnx", str(static_onnx)]
        argv = command.split() + source + ["--output", str(out)]
        assert main(argv) == 2
        line = _error_line(capsys)
        assert f"--output {out}" in line and "Read-only file system" in line and "choose a writable folder" in line


@pytest.mark.parametrize("link", ["same path", "hard link", "symlink"])
def test_export_onnx_never_overwrites_its_checkpoint(checkpoint, tmp_path, capsys, link):
    """D2: `depth-export onnx --checkpoint best.pt --output best.pt` replaced the checkpoint with an ONNX."""
    own = tmp_path / "best.pt"
    shutil.copyfile(checkpoint, own)
    before = own.read_bytes()
    assert main(["onnx", "--checkpoint", str(own), "--output", str(alias(own, link, tmp_path))]) == 2
    assert "is the --checkpoint file: it would be overwritten" in _error_line(capsys)
    assert own.read_bytes() == before


def test_export_onnx_fp16_never_writes_its_fp32_companion_over_the_checkpoint(checkpoint, tmp_path, capsys):
    """`--fp16 --output model.fp16.onnx` keeps the FP32 graph at model.onnx: that may not be the checkpoint."""
    own = tmp_path / "model.onnx"  # a checkpoint under an unlucky name
    shutil.copyfile(checkpoint, own)
    argv = ["onnx", "--checkpoint", str(own), "--output", str(tmp_path / "model.fp16.onnx"), "--fp16"]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "--fp16's FP32 graph" in line and "is the --checkpoint file" in line
    assert own.read_bytes() == checkpoint.read_bytes()


def test_fp16_never_overwrites_its_fp32_source(static_onnx, tmp_path, capsys):
    """D10: `depth-export fp16 --onnx model.onnx --output model.onnx` silently replaced the FP32 source."""
    own = tmp_path / "model.onnx"
    shutil.copyfile(static_onnx, own)
    assert main(["fp16", "--onnx", str(own), "--output", str(own)]) == 2
    assert "--output" in _error_line(capsys)
    assert own.read_bytes() == static_onnx.read_bytes()


@pytest.mark.parametrize("options, message", [
    (["--output", "{onnx}"], "--output {onnx} is the --onnx file"),
    (["--output", "m.engine", "--timing-cache", "{onnx}"], "--timing-cache {onnx} is the --onnx file"),
    (["--output", "{onnx}.engine", "--timing-cache", "{onnx}.engine.json"], "name the same file"),
])
def test_engine_never_overwrites_its_onnx_even_without_tensorrt(static_onnx, tmp_path, capsys, options, message):
    """D2: `engine --output` equal to `--onnx` is refused before TensorRT is needed (exit 2)."""
    own = tmp_path / "model.onnx"
    shutil.copyfile(static_onnx, own)
    argv = ["engine", "--onnx", str(own), "--precision", "fp16"]
    argv += [str(tmp_path / o.format(onnx=own.name)) if o.endswith(("onnx}", "engine", ".json")) else o
             for o in options]
    assert main(argv) == 2
    assert message.format(onnx=own) in _error_line(capsys)
    assert own.read_bytes() == static_onnx.read_bytes()


@pytest.mark.parametrize("option", ["--output", "--timing-cache", "--cache-dir"])
def test_engine_outputs_in_a_read_only_folder_are_refused_before_tensorrt(static_onnx, tmp_path, capsys, option):
    with read_only_dir() as rofs:
        target = rofs / "x"
        outputs = {"--output": tmp_path / "m.engine", option: target}
        argv = ["engine", "--onnx", str(static_onnx), "--precision", "fp16"]
        argv += [arg for name, path in outputs.items() for arg in (name, str(path))]
        assert main(argv) == 2
        line = _error_line(capsys)
        assert option in line and str(target) in line and "Read-only file system" in line
    assert list(tmp_path.iterdir()) == []
