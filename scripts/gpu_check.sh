#!/usr/bin/env bash
# edgedepth's GPU checks on a bare CUDA machine, prepared and run in one call:
#
#   bash scripts/gpu_check.sh            # on the GPU machine: venv, installs, `make test-gpu`
#   bash scripts/gpu_check.sh wheels     # beforehand, on a machine with a package index:
#                                        # downloads the wheels the GPU machine needs into scripts/wheels/
#
# The GPU machine may have no package index. Its venv sees the system's packages
# (--system-site-packages), so the CUDA build of torch, cuda-python/cuda-bindings and TensorRT that
# come with the machine are used as they are; everything else is installed from scripts/wheels/
# when that folder exists (--no-index), else from the index. Then every gpu/tensorrt test runs
# with EDGEDEPTH_REQUIRE_GPU=1: a missing GPU or CUDA binding fails instead of skipping.
# Environment: VENV (default .venv-gpu), WHEELS (default scripts/wheels), PYVER for `wheels`
# (default: this python's), EXTRAS (default train,export,runtime,calib,dev).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
WHEELS=${WHEELS:-scripts/wheels}
EXTRAS=${EXTRAS:-train,export,runtime,calib,dev}

requirements() {
  # The project's requirements for $EXTRAS, read from pyproject.toml; torch is left to the machine.
  python3 - "$EXTRAS" <<'EOF'
import sys
try:
    import tomllib
except ImportError:  # Python < 3.11: pip vendors the same parser
    from pip._vendor import tomli as tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[1].split(","):
    wanted += project["optional-dependencies"][extra]
print("\n".join(sorted({r for r in wanted if not r.startswith("torch")} | {"setuptools>=68", "wheel"})))
EOF
}

if [ "${1:-}" = "wheels" ]; then
  PYVER=${PYVER:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')}
  mkdir -p "$WHEELS"
  requirements > "$WHEELS/requirements.txt"
  python3 -m pip download -q -d "$WHEELS" --only-binary=:all: --python-version "$PYVER" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -r "$WHEELS/requirements.txt"
  echo "wheels for Python $PYVER in $WHEELS ($(ls "$WHEELS" | wc -l) files)"
  exit 0
fi

echo "== machine"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
python3 --version

echo "== venv $VENV (system site packages visible)"
test -x "$VENV/bin/python" || python3 -m venv --system-site-packages "$VENV"
FIND=()
if [ -d "$WHEELS" ]; then FIND=(--no-index --find-links "$WHEELS"); fi
requirements > "$VENV/requirements.txt"
"$VENV/bin/python" -m pip install -q "${FIND[@]}" -r "$VENV/requirements.txt"
"$VENV/bin/python" -m pip install -q "${FIND[@]}" --no-build-isolation --no-deps -e .
touch "$VENV/.edgedepth-installed"  # `make` then takes this venv as set up

"$VENV/bin/python" - <<'EOF'
from edgedepth.trt import imports, memory
torch = __import__("importlib").util.find_spec("torch")
print("torch:", __import__("torch").__version__ if torch else "absent",
      "| cuda libraries:", memory.available_libraries() or "none",
      "| tensorrt:", "installed" if imports.tensorrt_installed() else "absent")
EOF

echo "== make test-gpu"
make test-gpu VENV="$VENV"
