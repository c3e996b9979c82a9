"""The umbrella ``edgedepth`` command: version, environment report, and the stage commands."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import platform
import sys
from typing import Dict, List, Optional

from edgedepth import __version__

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


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="edgedepth", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgedepth {__version__}")
    parser.add_argument("command", nargs="?", choices=sorted(STAGES) + ["env"], help="stage to run")
    if argv and argv[0] in STAGES:
        return _run_stage(argv[0], argv[1:])
    args = parser.parse_args(argv)
    if args.command == "env":
        print(json.dumps(environment_report(), indent=2))
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
