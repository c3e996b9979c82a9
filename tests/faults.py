"""Fault injection for the output rule (issue 17): a tiny real file system that fills up, a
read-only folder, and a signal sent to a running command. Real kernel behaviour, no mocks.

``small_disk`` mounts a tmpfs of a few hundred KiB (root only, which CI is; elsewhere the tests
skip with the reason). ``read_only_dir`` is a tmpfs remounted read-only, so root is refused too
(a chmod 555 folder would not stop root).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Union

import pytest


def _mount(target: Path, options: str) -> Optional[str]:
    """None when mounted; else why not (not root, no mount(8), a sandbox without CAP_SYS_ADMIN)."""
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run mount: {exc}"
    return None if done.returncode == 0 else f"mount -t tmpfs refused: {done.stderr.strip()}"


@contextlib.contextmanager
def _tmpfs(options: str) -> Iterator[Path]:
    target = Path(tempfile.mkdtemp(prefix="edgedepth-fault-"))
    problem = _mount(target, options)
    if problem:
        target.rmdir()
        pytest.skip(f"fault injection needs a tmpfs mount (root): {problem}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)
        target.rmdir()


@contextlib.contextmanager
def small_disk(size_kib: int = 256) -> Iterator[Path]:
    """A folder on a file system of ``size_kib`` KiB: writes past it fail with ENOSPC."""
    with _tmpfs(f"size={size_kib}k") as folder:
        yield folder


@contextlib.contextmanager
def read_only_dir() -> Iterator[Path]:
    """A folder on a read-only file system: every write fails with EROFS, for root too."""
    with _tmpfs("size=64k") as folder:
        (folder / "existing").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True, timeout=30)
        yield folder


def run_command(argv: Sequence[str], timeout: float = 600, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run an edgedepth console command (``depth-run ...``) in a fresh interpreter."""
    module, function = _entry(argv[0])
    code = f"import sys; from {module} import {function} as main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv[1:]], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def signal_after(argv: Sequence[str], sig: int, after: Union[Path, Callable[[], bool]], timeout: float = 300,
                 cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Start a command, wait until ``after`` exists (or, a callable, returns True: it got going),
    send ``sig``, wait for the end."""
    module, function = _entry(argv[0])
    code = f"import sys; from {module} import {function} as main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen([sys.executable, "-c", code, *argv[1:]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=cwd)
    deadline = time.monotonic() + timeout
    while not _started(after) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(sig)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _started(marker: Union[Path, Callable[[], bool]]) -> bool:
    if callable(marker):
        return marker()
    return marker.exists() or any(marker.parent.glob(f".{marker.name}.*")) if marker.parent.exists() else False


def _entry(command: str) -> "tuple[str, str]":
    from edgedepth.cli import STAGES

    name = command.removeprefix("depth-")
    module, function = STAGES[name].split(":")
    return module, function


def leftovers(folder: Path) -> List[str]:
    """Temporary files an interrupted or failed write left behind (none may remain)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.startswith(".") and ".tmp" in p.name)


def alias(path: Path, how: str, folder: Path) -> Path:
    """Another name for the file ``path``: ``"same path"`` (itself), ``"hard link"`` or ``"symlink"``
    (made in ``folder``), for tests that an input is never an output under any name."""
    if how == "same path":
        return path
    other = folder / f"alias-{how.replace(' ', '-')}{path.suffix}"
    if how == "hard link":
        os.link(path, other)
    else:
        other.symlink_to(path)
    return other


__all__ = ["alias", "leftovers", "read_only_dir", "run_command", "signal_after", "small_disk"]
