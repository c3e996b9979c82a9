# The two commands of the README. Each sets itself up (virtualenv + installs) and is idempotent.
#   make demo   train on synthetic data for a few minutes, evaluate, print metrics
#   make test   run the whole test suite
VENV ?= .venv
PYTHON ?= python3
# The CPU wheel of PyTorch that lies on this kind of machine; installed before the extras so
# nothing pulls a multi-GB CUDA build. Override on a GPU box: make TORCH_SPEC='torch' ...
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgedepth-installed

.PHONY: demo test test-fast install clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[train,export,runtime,calib,modelopt,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
