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
