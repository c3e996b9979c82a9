"""The distribution: one wheel holding every subpackage and the shipped configs; a torch-free core."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = (
    "edgedepth",
    "edgedepth/parity",
    "edgedepth/trt",
    "edgedepth/training",
    "edgedepth/training/model",
    "edgedepth/training/data",
    "edgedepth/export",
    "edgedepth/calib",
    "edgedepth/runtime",
    "edgedepth/runtime/sources",
    "edgedepth/configs",
)
CONSOLE_SCRIPTS = ("edgedepth", "depth-train", "depth-eval", "depth-ablate", "depth-export", "depth-calib",
                   "depth-run", "depth-bench", "depth-parity", "depth-ros2")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the venv's setuptools builds it, so the test needs no network.
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (path,) = out.glob("edgedepth-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.slow
def test_wheel_holds_every_subpackage_and_config(wheel):
    names = set(wheel.namelist())
    for package in SUBPACKAGES:
        assert f"{package}/__init__.py" in names, f"{package} missing from the wheel"
    for config in ("grad_a", "baseline", "ssi_only", "demo", "base"):
        assert f"edgedepth/configs/{config}.yaml" in names
    assert "edgedepth/configs/budgets/default.yaml" in names
    assert "edgedepth/export/data/tensorrt_onnx_operators.json" in names  # the conformance check's tables
    top_level = ("training/", "export/", "calib/", "runtime/", "parity/", "tests/")
    assert not any(name.startswith(top_level) for name in names), "stage folders are mapped, not top level"


@pytest.mark.slow
def test_wheel_declares_the_stage_commands(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry_points).decode()
    for script in CONSOLE_SCRIPTS:
        assert f"{script} =" in text


def test_core_and_runtime_import_without_torch():
    code = (
        "import sys, edgedepth, edgedepth.metrics, edgedepth.preprocess, edgedepth.media, edgedepth.probes,"
        " edgedepth.runtime, edgedepth.parity, edgedepth.parity.inputs;"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


#: Module names whose import belongs to edgedepth/trt/imports.py alone.
DEVICE_MODULES = ("tensorrt", "pycuda", "cuda")


def _device_imports(path: Path) -> list:
    """``(line, module)`` of every import of a TensorRT/CUDA module in a Python file, static
    (``import x``, ``from x import y``) or dynamic (``importlib.import_module("x")``, ``__import__``)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and _called_name(node) in ("import_module", "__import__"):
            names = [arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
        found += [(node.lineno, name) for name in names if name.split(".")[0] in DEVICE_MODULES]
    return found


def _called_name(call) -> str:
    """``f`` of ``f(...)`` or ``m.f(...)``."""
    return getattr(call.func, "attr", getattr(call.func, "id", ""))


def test_exactly_one_module_imports_tensorrt_pycuda_or_cuda():
    folders = ("edgedepth", "export", "runtime", "calib", "training", "tests", "benchmarks", "scripts")
    sources = [path for folder in folders for path in (REPO / folder).rglob("*.py")]
    offenders = {str(path.relative_to(REPO)): _device_imports(path) for path in sources}
    offenders = {path: lines for path, lines in offenders.items() if lines}
    assert set(offenders) == {"edgedepth/trt/imports.py"}, offenders


STAGES = ("edgedepth.training", "edgedepth.export", "edgedepth.calib", "edgedepth.runtime", "edgedepth.parity")


def test_the_core_imports_no_stage_package_not_even_inside_a_function():
    """Layering (DESIGN.md): stages import the core, parity imports stages, the core imports no stage."""
    import ast

    offenders = []
    for path in (REPO / "edgedepth").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names if name.startswith(STAGES)]
    assert offenders == []


def test_the_device_package_imports_no_device_module_until_asked():
    code = (
        "import sys, edgedepth.trt, edgedepth.trt.generation, edgedepth.trt.memory, edgedepth.trt.sidecar,"
        " edgedepth.trt.platform, edgedepth.trt.calibrator, edgedepth.export.trt_build, edgedepth.runtime.trt_backend,"
        " edgedepth.calib.legacy;"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'pycuda', 'cuda')];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_umbrella_command_reports_version():
    from edgedepth import __version__

    result = subprocess.run([sys.executable, "-m", "edgedepth.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"edgedepth {__version__}"
