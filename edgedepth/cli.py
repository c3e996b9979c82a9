"""The one command runner every edgedepth command goes through, its shared argument types, and
the umbrella ``edgedepth`` command (version, environment report, the stage commands).

Exit status, for every command:

* 0: done;
* 1: it failed: an :class:`~edgedepth.errors.EdgeDepthError` (bad artifact, missed budget, a
  device that refused) or an ``OSError`` (disk full, read-only, permission), one line on stderr;
* 2: a usage error: argparse's, or a :class:`~edgedepth.errors.UsageError` (a bad config or
  budget file, an impossible combination of options), one line on stderr;
* 130: interrupted (Ctrl-C, SIGTERM, SIGHUP): outputs already written stay, a temporary file
  is removed, nothing half-written is left, and no traceback is printed.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import importlib.util
import json
import logging
import os
import platform
import signal
import sys
import threading
from types import FrameType
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from edgedepth import __version__
from edgedepth.errors import EdgeDepthError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Signals that stop a command the way Ctrl-C does: systemd/docker stop (TERM), a closed terminal
#: or ssh session (HUP). SIGINT is set too: a process started in the background by a
#: non-interactive shell inherits it as ignored, and Python keeps it so.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_STOP_NAMES = frozenset(signal.Signals(sig).name for sig in STOP_SIGNALS)
#: What to do about the commonest OSErrors, by errno.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EROFS: "the file system is read-only: write to another folder",
    errno.EACCES: "permission denied: check the folder's permissions or write elsewhere",
    errno.EPERM: "operation not permitted: check the folder's permissions or write elsewhere",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder: name a file",
}
Body = Callable[[argparse.Namespace], Optional[int]]
Validate = Callable[[argparse.ArgumentParser, argparse.Namespace], None]
_Parsed = Union[Tuple[argparse.Namespace, None], Tuple[None, int]]  # (args, None) or (None, status)

#: Stage commands: name -> "module:function". Each is also a console script of its own.
STAGES: Dict[str, str] = {
    "train": "edgedepth.training.cli:train_main",
    "eval": "edgedepth.training.cli:eval_main",
    "ablate": "edgedepth.training.ablate:ablate_main",
    "export": "edgedepth.export.cli:main",
    "calib": "edgedepth.calib.cli:main",
    "run": "edgedepth.runtime.cli:run_main",
    "bench": "edgedepth.runtime.cli:bench_main",
    "parity": "edgedepth.parity.cli:main",
}

_OPTIONAL_PACKAGES = ("torch", "onnx", "onnxruntime", "cv2", "tensorrt", "pycuda", "modelopt")


def configure_logging(quiet: bool = False) -> None:
    """Send log records to stderr for a command-line run (only errors when ``quiet``).

    Configures the root logger only when nothing has yet (``logging.basicConfig``), so a CLI
    called from a program, a notebook or a test never rewires that caller's logging.
    """
    logging.basicConfig(level=logging.ERROR if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and what the errno means: ``/data/out.mp4: No space left on device
    (ENOSPC): the disk is full: free space or write elsewhere``."""
    path = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name) or "a file"
    code = exc.errno or 0
    reason = (exc.strerror or os.strerror(code)) if code else str(exc)
    name = errno.errorcode.get(code, "")
    hint = _OS_ERROR_HINTS.get(code)
    return f"{path}: {reason}" + (f" ({name})" if name else "") + (f"; {hint}" if hint else "")


SignalHandler = Callable[[int, Optional[FrameType]], None]


@contextlib.contextmanager
def on_stop_signals(handler: SignalHandler) -> Iterator[bool]:
    """Run ``handler`` for SIGINT, SIGTERM and SIGHUP inside the block; the previous handlers come
    back after it. Yields False (and installs nothing) off the main thread, where Python cannot
    set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[List[str]]:
    """While the body runs, SIGTERM and SIGHUP (and SIGINT) raise KeyboardInterrupt, so every
    ``with`` block unwinds: atomic writes remove their temporary file, streams finalise.

    Yields the names of the stop signals received. :func:`run_command` reads it because a
    KeyboardInterrupt does not always reach it as one: raised while the interpreter runs a callback
    whose exceptions it ignores (a weakref or import-lock callback, a ``__del__``) it is printed as
    "Exception ignored" and lost (here recorded without the traceback), and raised inside an
    import it can surface as another error (onnxruntime's half-initialised extension then raises
    ImportError "already registered").
    """
    received: List[str] = []

    def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(received[-1])

    default_hook = sys.unraisablehook

    def _unraisable(unraisable: "sys.UnraisableHookArgs") -> None:
        value = unraisable.exc_value
        if isinstance(value, KeyboardInterrupt) and value.args and value.args[0] in _STOP_NAMES:
            return  # recorded in `received`; the traceback would only alarm
        default_hook(unraisable)

    with on_stop_signals(_interrupt) as installed:
        if installed:
            sys.unraisablehook = _unraisable
        try:
            yield received
        finally:
            sys.unraisablehook = default_hook


def _parse(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]], validate: Optional[Validate]) -> _Parsed:
    """``(args, None)``, or ``(None, status)`` when argparse exited (usage error 2, --help 0)."""
    try:
        args = parser.parse_args(argv)
        if validate is not None:
            validate(parser, args)
    except SystemExit as exc:
        return None, int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    return args, None


def _fail(prog: str, message: str, status: int) -> int:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return status


def run_command(prog: str, parser: argparse.ArgumentParser, body: Body, argv: Optional[Sequence[str]] = None,
                validate: Optional[Validate] = None) -> int:
    """Parse ``argv``, run ``body(args)`` and turn its outcome into an exit status (module docstring).

    ``validate(parser, args)`` may call ``parser.error`` for option combinations argparse cannot
    express. Library code raises; this is the only place errors become exit codes.
    """
    parsed = _parse(parser, argv, validate)
    if parsed[0] is None:
        return parsed[1]
    args = parsed[0]
    received: List[str] = []
    try:
        with stop_signals_as_interrupt() as received:
            status = int(body(args) or EXIT_OK)
    except KeyboardInterrupt as exc:
        return _interrupted(prog, str(exc.args[0]) if exc.args else "")
    except Exception as exc:
        if received:  # the stop signal surfaced as another error (see stop_signals_as_interrupt)
            return _interrupted(prog, received[0])
        return _failure(prog, exc)
    if received:  # the body finished after all: what it wrote is complete, but the user asked to stop
        return _interrupted(prog, received[0])
    return status


def _failure(prog: str, exc: Exception) -> int:
    """The exit status of an error; anything but an edgedepth or I/O error is a bug, re-raised."""
    if isinstance(exc, UsageError):
        return _fail(prog, str(exc), EXIT_USAGE)
    if isinstance(exc, EdgeDepthError):
        return _fail(prog, str(exc), EXIT_FAILED)
    if isinstance(exc, OSError):
        return _fail(prog, describe_os_error(exc), EXIT_FAILED)
    raise exc


def _interrupted(prog: str, signal_name: str) -> int:
    reason = f" by {signal_name}" if signal_name else ""
    print(f"{prog}: interrupted{reason}; finished outputs kept, partial ones removed", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


# --------------------------------------------------------------------------- shared argument types


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 1")
    return int(text)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 0")
    return int(text)


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


# --------------------------------------------------------------------------- the umbrella command


def environment_report() -> Dict[str, Optional[str]]:
    """Versions of the packages edgedepth can use (None when not installed)."""
    report: Dict[str, Optional[str]] = {"edgedepth": __version__, "python": platform.python_version()}
    for name in _OPTIONAL_PACKAGES:
        if importlib.util.find_spec(name) is None:
            report[name] = None
            continue
        try:
            report[name] = str(getattr(importlib.import_module(name), "__version__", "unknown"))
        except Exception as exc:  # a broken install should be reported, not crash the report
            report[name] = f"broken ({type(exc).__name__}: {exc})"
    return report


def _run_stage(name: str, argv: List[str]) -> int:
    module_name, func_name = STAGES[name].split(":")
    return int(getattr(importlib.import_module(module_name), func_name)(argv) or 0)


def _umbrella(args: argparse.Namespace) -> int:
    if args.command == "env":
        print(json.dumps(environment_report(), indent=2))
        return EXIT_OK
    umbrella_parser().print_help()
    return EXIT_OK


def umbrella_parser() -> argparse.ArgumentParser:
    """The ``edgedepth`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="edgedepth",
        description="Monocular depth for Jetson: train, export, calibrate, run and check a depth network.",
    )
    parser.add_argument("--version", action="version", version=f"edgedepth {__version__}")
    parser.add_argument("command", nargs="?", choices=sorted(STAGES) + ["env"], help="stage to run")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``edgedepth``: ``edgedepth STAGE ...`` runs that stage's command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGES:
        return _run_stage(argv[0], argv[1:])
    return run_command("edgedepth", umbrella_parser(), _umbrella, argv)


if __name__ == "__main__":
    sys.exit(main())
