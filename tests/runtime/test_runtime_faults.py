"""depth-run and depth-bench under real faults (tests/faults.py): a disk that fills, a read-only
folder, an output that is an input, and stop signals sent to a running command."""
from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedepth.errors import EdgeDepthError
from edgedepth.runtime import cli as runtime_cli
from edgedepth.runtime import sinks
from edgedepth.runtime.cli import bench_main, run_main
from edgedepth.runtime.sinks import DepthWriter, VideoSink

from faults import leftovers, read_only_dir, signal_after, small_disk
from media_helpers import write_video


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def noise_frames(count: int, width: int = 160, height: int = 120):
    """Frames that compress badly, so a few fill a small disk."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def decoded_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def error_lines(err: str):
    """Our own stderr lines (OpenCV's native writer may add its `[ WARN:...]` lines)."""
    return [line for line in err.strip().splitlines() if not line.startswith("[")]


# --- a full disk -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["full.mp4", "full.avi"])
def test_a_disk_that_fills_under_the_video_fails_the_run_and_keeps_the_old_file(tiny_model, tmp_path, capsys, name):
    clip = write_video(tmp_path / "noise.avi", noise_frames(40))
    stats = tmp_path / "s.json"
    with small_disk(256) as disk:
        (disk / name).write_bytes(b"the previous recording")
        code = run_main(["--model", str(tiny_model.path), "--input", str(clip), "--no-display", "--quiet",
                         "--output", str(disk / name), "--stats-json", str(stats)])
        assert code == 1
        err = error_lines(capsys.readouterr().err)
        assert len(err) == 1 and err[0].startswith("depth-run: error: ") and str(disk / name) in err[0]
        assert "ENOSPC" in err[0] and "disk is full" in err[0]
        assert (disk / name).read_bytes() == b"the previous recording"  # the final path untouched
        assert sorted(p.name for p in disk.iterdir()) == [name] and leftovers(disk) == []
    report = json.loads(stats.read_text())
    assert report["exit_reason"] == "error" and "ENOSPC" in report["error"]


def _fill(folder: Path) -> None:
    """Write into ``folder`` until its file system is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as info:
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC


@pytest.mark.parametrize("name", ["v.mp4", "v.avi"])
def test_a_disk_that_fills_before_the_container_is_finished_is_caught_by_the_check(name):
    """Every frame fits but the container's index does not: the reopened file fails its check."""
    with small_disk(1024) as disk:
        sink = VideoSink(str(disk / name), fps=15, fourcc="MJPG" if name.endswith(".avi") else "mp4v")
        for frame in noise_frames(5):
            sink.write(frame)
        _fill(disk)
        with pytest.raises(OSError) as info:
            sink.close()
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(disk / name)
        assert "the video writer lost frames" in str(info.value)
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_video_failing_its_check_with_space_left_says_the_writer_failed(monkeypatch):
    monkeypatch.setattr(sinks, "free_bytes", lambda folder: 1 << 40)  # as if the disk had room again
    with small_disk(1024) as disk:
        sink = VideoSink(str(disk / "v.mp4"), fps=15)
        for frame in noise_frames(5):
            sink.write(frame)
        _fill(disk)
        failed = r"the video writer failed \(.*; 0 of 5 frames decode\); the disk may be full"
        with pytest.raises(EdgeDepthError, match=failed):
            sink.close()
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_depth_files_on_a_full_disk_fail_the_run_naming_the_file(tiny_model, make_video, tmp_path, capsys):
    with small_disk(256) as disk:
        code = run_main(["--model", str(tiny_model.path), "--input", str(make_video(count=60)), "--no-display",
                         "--quiet", "--save-depth", str(disk / "depth"), "--depth-format", "npy"])
        assert code == 1
        err = error_lines(capsys.readouterr().err)
        assert len(err) == 1 and f"{disk / 'depth'}{os.sep}0000" in err[0] and ".npy: " in err[0], err
        assert "ENOSPC" in err[0] and ".tmp" not in err[0]
        assert leftovers(disk) == []
        for saved in (disk / "depth").iterdir():  # what was written is whole
            assert np.load(saved).shape == (64, 96)


def test_the_depth_writer_names_the_file_it_could_not_write():
    with small_disk(64) as disk:
        writer = DepthWriter(str(disk / "d"), "npy")
        with pytest.raises(OSError) as info:
            for index in range(100):
                writer.write(f"{index:06d}", np.zeros((96, 128), np.float32))
        assert info.value.errno == errno.ENOSPC
        assert info.value.filename == str(disk / "d" / f"{writer.written:06d}.npy")
        assert leftovers(disk) == []


# --- outputs checked before any work ----------------------------------------------------------------------------


def test_an_output_that_is_an_input_is_refused_before_any_work(tiny_model, make_video, tmp_path, capsys):
    clip = make_video(count=5)
    original = clip.read_bytes()
    os.link(clip, tmp_path / "same_inode.mp4")
    images = tmp_path / "frames"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((32, 32, 3), np.uint8))
    base = ["--model", str(tiny_model.path), "--no-display"]
    cases = [
        (["--input", str(clip), "--output", str(clip)], "--output"),
        (["--input", str(clip), "--output", str(tmp_path / "same_inode.mp4")], "--output"),
        (["--input", str(clip), "--stats-json", str(tiny_model.path)], "--stats-json"),
        (["--input", str(images), "--save-depth", str(images)], "--save-depth"),
        (["--input", str(images / "a.png"), "--save-depth", str(images)], "--save-depth"),
    ]
    for argv, option in cases:
        capsys.readouterr()
        assert run_main(base + argv) == 2, argv
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"depth-run: error: {option} "), err
        assert "frames processed" not in captured.out
    assert clip.read_bytes() == original and sorted(p.name for p in images.iterdir()) == ["a.png"]


def test_unwritable_outputs_are_refused_before_any_work(tiny_model, make_video, capsys):
    run = ["--model", str(tiny_model.path), "--no-display", "--input", str(make_video(count=5))]
    with read_only_dir() as folder:
        runs = [
            (run_main, run + ["--stats-json", str(folder / "s.json")], "--stats-json"),
            (run_main, run + ["--output", str(folder / "v.mp4")], "--output"),
            (run_main, run + ["--save-depth", str(folder / "depth")], "--save-depth"),
            (bench_main, ["--model", str(tiny_model.path), "--json", str(folder / "b.json")], "--json"),
        ]
        for main, argv, option in runs:
            capsys.readouterr()
            assert main(argv) == 2, argv
            captured = capsys.readouterr()
            err = captured.err.strip().splitlines()
            assert len(err) == 1 and f"error: {option} " in err[0] and "Read-only file system" in err[0], err
            assert captured.out == ""  # nothing ran: no summary, no benchmark line


# --- stop signals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=["SIGHUP", "SIGTERM", "SIGINT"])
def test_a_stop_signal_while_streaming_finalises_every_output(tiny_model, tmp_path, sig):
    """A closed terminal (SIGHUP), a service stop (SIGTERM) or Ctrl-C: exit 0, and the video, the
    depth files and the stats agree on the frame count, with no temporary file left."""
    clip = write_video(tmp_path / "clip.avi", noise_frames(30, 320, 240))
    out, depth, stats = tmp_path / "o.mp4", tmp_path / "depth", tmp_path / "s.json"
    # --loop with a cap: long enough to be signalled mid-stream, and never a hung test if it is not.
    done = signal_after(["depth-run", "--model", str(tiny_model.path), "--input", str(clip), "--loop",
                         "--max-frames", "3000", "--no-display", "--quiet", "--output", str(out),
                         "--save-depth", str(depth), "--stats-json", str(stats)], sig, after=out, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(stats.read_text())
    assert report["exit_reason"] == "interrupted", report["exit_reason"]
    processed = report["frames"]["processed"]
    assert processed > 0
    assert decoded_frames(out) == processed and len(list(depth.iterdir())) == processed
    assert leftovers(tmp_path) == []


def test_a_stop_signal_before_streaming_exits_130(tiny_model, make_video, tmp_path, monkeypatch, capsys):
    """Before streaming (the model loading) an interrupt stops the command: 130, as documented."""
    def interrupted_while_loading(*args, **kwargs):
        raise KeyboardInterrupt("SIGHUP")

    monkeypatch.setattr(runtime_cli, "open_backend", interrupted_while_loading)
    stats = tmp_path / "s.json"
    assert run_main(["--model", str(tiny_model.path), "--input", str(make_video(count=3)), "--no-display",
                     "--stats-json", str(stats)]) == 130
    assert "interrupted by SIGHUP" in capsys.readouterr().err
    assert not stats.exists()
