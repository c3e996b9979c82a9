"""Atomic writes: a finished write replaces the file, a failed one leaves the old content."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from edgedepth.io import atomic_path, sha256_file, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "nested" / "model.json"
    write_text_atomic(target, "old")
    write_json_atomic(target, {"height": 480})
    assert json.loads(target.read_text()) == {"height": 480}
    assert os.listdir(target.parent) == ["model.json"]


def test_failure_inside_the_context_keeps_the_old_content(tmp_path):
    target = tmp_path / "model.engine"
    write_bytes_atomic(target, b"old engine")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a new eng")
            raise RuntimeError("build crashed")
    assert target.read_bytes() == b"old engine"
    assert os.listdir(tmp_path) == ["model.engine"]


def test_failure_on_a_new_path_creates_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "new.onnx") as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError("export failed")
    assert os.listdir(tmp_path) == []


def test_written_files_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "shared.onnx"
    write_bytes_atomic(target, b"x")
    # A temp file is created private (0600); the finished artifact must be readable like any file.
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3000)
    write_bytes_atomic(tmp_path / "blob", data)
    assert sha256_file(tmp_path / "blob", chunk_size=1024) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- output checks


def test_an_output_that_is_an_input_is_refused_even_through_a_hard_link_or_symlink(tmp_path):
    from edgedepth.errors import UsageError
    from edgedepth.io import check_outputs

    source = tmp_path / "clip.mp4"
    source.write_bytes(b"video")
    os.link(source, tmp_path / "hard.mp4")
    (tmp_path / "soft.mp4").symlink_to(source)
    for alias in ("clip.mp4", "hard.mp4", "soft.mp4", "./sub/../clip.mp4"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(UsageError, match="is the --input file"):
            check_outputs({"--output": tmp_path / alias}, {"--input": source})
    assert source.read_bytes() == b"video"
    check_outputs({"--output": tmp_path / "other.mp4", "--stats-json": None}, {"--input": source})


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    from edgedepth.errors import UsageError
    from edgedepth.io import check_outputs

    with pytest.raises(UsageError, match="--output and --stats-json name the same file"):
        check_outputs({"--output": tmp_path / "a.json", "--stats-json": tmp_path / "x/../a.json"}, {})


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path):
    from edgedepth.errors import UsageError
    from edgedepth.io import check_outputs, check_writable_folder

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_outputs({"--output": a_file / "out.onnx"}, {})
    with pytest.raises(UsageError, match="is a folder"):
        check_outputs({"--output": tmp_path}, {})
    with pytest.raises(UsageError, match="is a file; name a folder"):
        check_writable_folder(a_file, "--save-depth")
    check_outputs({"--output": tmp_path / "new" / "deeper" / "out.onnx"}, {})  # created when written
    assert not (tmp_path / "new").exists(), "checking creates nothing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"], "the write probe leaves nothing behind"


@pytest.mark.skipif(not os.path.isdir("/proc/self") or not os.path.ismount("/proc"), reason="needs /proc")
def test_a_read_only_file_system_is_refused(tmp_path):
    from edgedepth.errors import UsageError
    from edgedepth.io import check_writable

    with pytest.raises(UsageError, match="cannot write in /proc"):
        check_writable("/proc/edgedepth-out.json", "--stats-json")
