"""Atomic file writing (a kill at any moment leaves either the old file or the new one) and the
checks every command makes on its outputs before any work: an input is never an output, two
outputs are never one file, and an output's folder can be written."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Union

from edgedepth.errors import UsageError

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic. On any
    exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Named before it exists (not by mkstemp), so that a Ctrl-C or SIGTERM arriving just as it is
    # created still finds it in ``tmp`` below; 64 random bits keep the name unique.
    tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
        with _named(target):
            yield tmp
            # Created 0600 (as mkstemp does); give the artifact the mode a plain open() would.
            os.chmod(tmp, _default_file_mode())
            _fsync_file(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def _named(target: Path) -> Iterator[None]:
    """An OSError without a file name (a write or fsync on a full disk) gets ``target``'s name."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or not exc.errno:
            raise
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(target)) from exc


def _read_umask() -> int:
    # os.umask is the only portable way to read it; done once at import, because setting it
    # from a writer thread would race with files other threads create.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _default_file_mode() -> int:
    """0o666 less the process umask: the mode a plain open() would give."""
    return 0o666 & ~_UMASK


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so big engines do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name one file: the same resolved path (symlinks followed), or two
    names of one inode (hard links, bind mounts)."""
    first, second = Path(a).resolve(), Path(b).resolve()
    if first == second:
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet): then they cannot be one file
        return False


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable(path: PathLike, option: str) -> None:
    """Raise UsageError unless a file can be created at ``path``: its folder (or, if missing, the
    nearest existing ancestor, where the folder would be created) must be a folder this process can
    write, and ``path`` must not be a folder. Probed with a real temporary file, so read-only
    mounts and permissions (root included) answer as they will at the end of the run."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {target} is a folder; name a file inside it")
    _probe_folder(target.parent if str(target.parent) else Path("."), option, target)


def _probe_folder(folder: Path, option: str, named: Path) -> None:
    """Create and remove a file in ``folder`` (or its nearest existing ancestor); UsageError naming
    ``option`` and ``named`` (what the command line said) when that fails."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise UsageError(f"{option} {named}: {existing} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgedepth-write-probe.", dir=existing)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"{option} {named}: cannot write in {existing} ({reason}); choose a writable folder") from exc
    os.close(fd)
    os.unlink(probe)


def check_writable_folder(path: PathLike, option: str) -> None:
    """Raise UsageError unless files can be written in the folder ``path`` (created later if
    missing): it must not be a file, and it (or its nearest existing ancestor) must be writable."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder} is a file; name a folder")
    _probe_folder(folder, option, folder)


def check_outputs(outputs: Mapping[str, Optional[PathLike]], inputs: Mapping[str, Optional[PathLike]]) -> None:
    """Refuse, before any work, what would destroy an input or lose an output (UsageError, exit 2).

    ``outputs`` and ``inputs`` map an option name (``--output``) to its path (None = not given).
    An output may not be an input (resolved paths and hard links compared), two outputs may not be
    one file, and every output's folder must be writable.
    """
    given_outputs = {name: Path(path) for name, path in outputs.items() if path is not None}
    given_inputs = {name: Path(path) for name, path in inputs.items() if path is not None}
    for out_name, out_path in given_outputs.items():
        for in_name, in_path in given_inputs.items():
            if same_file(out_path, in_path):
                raise UsageError(f"{out_name} {out_path} is the {in_name} file: it would be overwritten; "
                                 "choose another output name")
    names = list(given_outputs)
    for index, first in enumerate(names):
        for second in names[index + 1:]:
            if same_file(given_outputs[first], given_outputs[second]):
                raise UsageError(f"{first} and {second} name the same file {given_outputs[first]}; "
                                 "give each output its own path")
    for name, path in given_outputs.items():
        check_writable(path, name)
