# The two commands of the README. Each sets itself up (virtualenv + installs) and is idempotent.
#   make demo   train on synthetic data for a few minutes, evaluate, print metrics
#   make test   lint (ruff + mypy), then the whole test suite
#   make lint   ruff over the repository, mypy over the package (settings: pyproject.toml)
#   make native the C++/CUDA part (CMakeLists.txt): library, ctest suite, edgedepth/_native in place
#   make test-gpu   every gpu/tensorrt test, a missing GPU or CUDA binding failing instead of skipping
#                   (on a bare CUDA machine: bash scripts/gpu_check.sh, which prepares everything)
VENV ?= .venv
PYTHON ?= python3
# The CPU wheel of PyTorch that lies on this kind of machine; installed before the extras so
# nothing pulls a multi-GB CUDA build. Override on a GPU box: make TORCH_SPEC='torch' ...
# cuda-python 13 (tensorrt-cu13) matches this machine's CUDA 13 toolkit; with no driver it answers
# every call with an error, which the tests check is reported in one line.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgedepth-installed

# The GPU tests: CUDA memory layer, PyTorch CUDA, TensorRT (skipped with its reason where TensorRT
# is absent; EDGEDEPTH_REQUIRE_TENSORRT=1 makes that a failure too).
GPU_TESTS := -m "gpu or tensorrt or torch_cuda"

.PHONY: demo test test-fast test-gpu install lint native clean
NATIVE_BUILD ?= build/native

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[train,export,runtime,calib,modelopt,dev,tensorrt-cu13,native]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

# Lint first: a style or type error fails CI in seconds, before the 6-minute suite. Then the native
# part (its ctest suite; the CUDA tier compiles wherever nvcc is found), so pytest's tests/native
# run against the binding this checkout builds.
test: lint native
	$(PY) -m pytest -q

# The C++/CUDA part: configure + build every tier this machine has (docs/NATIVE.md), the binding
# edgedepth/_native*.so in place, then its ctest suite (CUDA tests skip without a GPU).
native: $(STAMP)
	cmake -S . -B $(NATIVE_BUILD) -DPython_EXECUTABLE=$(CURDIR)/$(PY) -DEDGEDEPTH_PYTHON=$(CURDIR)/$(PY)
	cmake --build $(NATIVE_BUILD) -j2
	ctest --test-dir $(NATIVE_BUILD) --output-on-failure

# ruff's rules and mypy's settings live in pyproject.toml. scripts/typecheck.sh gives mypy the
# package's module names (export/ is edgedepth.export; see the script).
lint: $(STAMP)
	$(PY) -m ruff check .
	PY=$(PY) bash scripts/typecheck.sh

test-gpu: $(STAMP)
	EDGEDEPTH_REQUIRE_GPU=1 $(PY) -m pytest -q -rsP $(GPU_TESTS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .venv-gpu build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
