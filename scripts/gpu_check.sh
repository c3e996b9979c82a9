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
# When the machine has no CUDA Python binding, the cuda-python matching the driver's CUDA major
# (from nvidia-smi, or CUDA_MAJOR) is installed too.
# Environment: VENV (default .venv-gpu), WHEELS (default scripts/wheels), PYVER for `wheels`
# (default: this python's), ARCH for `wheels` (default x86_64; aarch64 for a Jetson), CUDA_MAJOR (default: nvidia-smi's, else 13), EXTRAS (default
# train,export,runtime,calib,dev).
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

cuda_extra() {
  # The tensorrt-* extra whose cuda-python matches this driver (CUDA_MAJOR overrides: 11, 12, 13).
  local major=${CUDA_MAJOR:-$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -1)}
  case "$major" in 11) echo tensorrt-jp5 ;; 12) echo tensorrt-cu12 ;; *) echo tensorrt-cu13 ;; esac
}

if [ "${1:-}" = "wheels" ]; then
  PYVER=${PYVER:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')}
  ARCH=${ARCH:-x86_64}  # the GPU machine's: aarch64 for a Jetson
  mkdir -p "$WHEELS"
  EXTRAS="$EXTRAS,$(cuda_extra)" requirements > "$WHEELS/requirements.txt"
  python3 -m pip download -q -d "$WHEELS" --only-binary=:all: --python-version "$PYVER" \
    --platform "manylinux_2_28_$ARCH" --platform "manylinux2014_$ARCH" --platform "manylinux_2_17_$ARCH" \
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

# No CUDA Python binding on the machine: install the cuda-python of the driver's CUDA major
# (nvidia-smi prints "CUDA Version: 12.4"), never a newer one (it would need a newer driver).
if ! "$VENV/bin/python" -c "import sys, edgedepth.trt.memory as m; sys.exit(0 if m.available_libraries() else 1)"; then
  EXTRAS=$(cuda_extra) requirements > "$VENV/cuda-requirements.txt"
  "$VENV/bin/python" -m pip install -q "${FIND[@]}" -r "$VENV/cuda-requirements.txt"
fi

"$VENV/bin/python" - <<'EOF'
from edgedepth.trt import imports, memory
torch = __import__("importlib").util.find_spec("torch")
print("torch:", __import__("torch").__version__ if torch else "absent",
      "| cuda libraries:", memory.available_libraries() or "none",
      "| tensorrt:", "installed" if imports.tensorrt_installed() else "absent")
EOF

echo "== make test-gpu"
make test-gpu VENV="$VENV"
