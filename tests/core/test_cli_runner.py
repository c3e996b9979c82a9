"""The one command runner: every command maps errors to the same exit codes, in one line, and
every command goes through it."""
from __future__ import annotations

import argparse
import ast
import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgedepth.cli import STAGES, describe_os_error, run_command
from edgedepth.errors import ConfigError, DataError, UsageError
from edgedepth.io import atomic_path

REPO = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--n", type=int, default=1)
    return parser


def _run(body, argv=(), capsys=None):
    status = run_command("demo", _parser(), body, list(argv))
    err = capsys.readouterr().err.strip().splitlines() if capsys else []
    return status, err


def _raise(exc: BaseException):
    def body(args: argparse.Namespace) -> int:
        raise exc

    return body


def test_success_returns_the_body_status(capsys):
    assert _run(lambda args: None, capsys=capsys) == (0, [])
    assert _run(lambda args: 3, ["--n", "2"], capsys=capsys)[0] == 3


@pytest.mark.parametrize("exc, status", [
    (DataError("the folder holds no image"), 1),
    (UsageError("pass --output or --cache"), 2),
    (ConfigError("train.stpes is unknown"), 2),
])
def test_library_errors_are_one_line_with_their_exit_code(capsys, exc, status):
    code, err = _run(_raise(exc), capsys=capsys)
    assert code == status and err == [f"demo: error: {exc}"]


def test_argparse_usage_errors_exit_2_and_help_exits_0(capsys):
    assert _run(lambda args: 0, ["--n", "lots"], capsys=capsys)[0] == 2
    assert run_command("demo", _parser(), lambda args: 0, ["--help"]) == 0


def test_validate_hook_usage_errors_exit_2(capsys):
    def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
        if args.n > 1:
            parser.error("--n must be 1 here")

    assert run_command("demo", _parser(), lambda args: 0, ["--n", "2"], validate=validate) == 2
    assert "--n must be 1 here" in capsys.readouterr().err


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "disk is full"),
    (errno.EROFS, "read-only"),
    (errno.EACCES, "permission denied"),
])
def test_os_errors_name_the_path_and_the_cause(capsys, code, words):
    exc = OSError(code, os.strerror(code), "/media/card/out.mp4")
    status, err = _run(_raise(exc), capsys=capsys)
    assert status == 1 and len(err) == 1
    assert err[0].startswith("demo: error: /media/card/out.mp4: ")
    assert errno.errorcode[code] in err[0] and words in err[0]


def test_describe_os_error_without_a_path_or_errno_still_reads():
    assert describe_os_error(OSError("odd failure")) == "a file: odd failure"


def test_ctrl_c_exits_130_without_traceback_and_removes_the_partial_file(tmp_path, capsys):
    target = tmp_path / "model.onnx"

    def body(args: argparse.Namespace) -> int:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt

    status, err = _run(body, capsys=capsys)
    assert status == 130 and len(err) == 1 and "interrupted" in err[0] and "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_command_like_ctrl_c(tmp_path, sig):
    """A real signal to a real process: exit 130, one line, no partial output left."""
    script = textwrap.dedent(f"""
        import argparse, os, signal, sys
        from edgedepth.cli import run_command
        from edgedepth.io import atomic_path

        def body(args):
            with atomic_path({str(tmp_path / 'out.bin')!r}) as tmp:
                tmp.write_bytes(b"partial")
                os.kill(os.getpid(), signal.{sig})
                raise SystemExit("the signal did not stop the body")

        sys.exit(run_command("demo", argparse.ArgumentParser(prog="demo"), body, []))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    expected = f"demo: interrupted by {sig}; finished outputs kept, partial ones removed"
    assert done.stderr.strip().splitlines() == [expected]
    assert list(tmp_path.iterdir()) == []


def test_signal_handlers_are_restored_after_the_command():
    before = signal.getsignal(signal.SIGTERM)
    run_command("demo", _parser(), lambda args: 0, [])
    assert signal.getsignal(signal.SIGTERM) == before


def _entry_functions():
    """(module file, function name) of every console command."""
    for spec in STAGES.values():
        module, function = spec.split(":")
        parts = module.split(".")[1:]  # edgedepth.training.cli -> training/cli.py
        yield REPO.joinpath(*parts[:-1], parts[-1] + ".py"), function
    yield REPO / "edgedepth" / "cli.py", "main"


@pytest.mark.parametrize("path, function", list(_entry_functions()), ids=lambda value: str(value))
def test_every_command_goes_through_the_one_runner(path, function):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    entry = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == function)
    calls = {node.func.id for node in ast.walk(entry) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    handlers = [node for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler)
                and isinstance(node.type, ast.Name) and node.type.id in ("KeyboardInterrupt", "SystemExit")]
    assert "run_command" in calls or "_run_stage" in calls, f"{path}:{function} bypasses edgedepth.cli.run_command"
    if path.parent.name != "edgedepth":  # the runner itself is where these are handled
        assert not handlers, f"{path} handles KeyboardInterrupt/SystemExit itself; leave it to run_command"


def test_a_signal_python_swallows_in_a_callback_still_ends_the_command_as_interrupted(capsys):
    """A signal landing in a ``__del__`` (or an import-lock callback) raises there, where Python
    only prints "Exception ignored": the runner records it, prints no traceback, and exits 130."""

    class SignalsOnCollection:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)

    def body(args: argparse.Namespace) -> int:
        SignalsOnCollection()  # collected at once: the handler's KeyboardInterrupt is swallowed there
        return 0

    status, err = _run(body, capsys=capsys)
    assert status == 130 and err == ["demo: interrupted by SIGTERM; finished outputs kept, partial ones removed"]
    assert run_command("demo", _parser(), lambda args: 0, []) == 0, "the next command starts clean"


def test_a_signal_that_surfaces_as_another_error_is_still_an_interrupt(capsys):
    """A signal inside an import can leave an extension half-initialised, and the next import then
    raises ImportError (onnxruntime: 'type ... is already registered'): still exit 130, one line."""

    def body(args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            raise ImportError('generic_type: type "GraphOptimizationLevel" is already registered!') from None
        return 0

    status, err = _run(body, capsys=capsys)
    assert status == 130 and err == ["demo: interrupted by SIGTERM; finished outputs kept, partial ones removed"]


def test_a_bug_without_a_signal_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run_command("demo", _parser(), lambda args: 1 // 0, [])
