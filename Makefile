# pycnn's two commands:   make run   (the main job)   and   make test.
# Each creates the virtual environment if missing, installs the pinned
# dependencies, builds pycnn (incrementally) and runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-installed
ifneq ($(wildcard /usr/local/cuda/bin/nvcc),)
export CUDA_HOME ?= /usr/local/cuda
endif

.PHONY: all build run test test-fast cpp-test bench verify clean

all: test

$(DEPS): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $@

build: $(DEPS)
	$(PY) -m pip install --no-build-isolation --no-deps -e .

run: build
	$(PY) -m pycnn main

test: build
	$(PY) -m pytest -q tests

test-fast: build
	$(PY) -m pytest -q -m "not slow" tests

# The C++ build against libtorch (CMake) and its dispatcher test (ctest).
cpp-test: $(DEPS)
	cmake -S . -B build/cmake -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" -DCMAKE_BUILD_TYPE=Release
	cmake --build build/cmake -j 2
	cd build/cmake && ctest --output-on-failure

bench: build
	$(PY) -m pycnn bench

# Passive OpenMP waiting, as in tests/conftest.py: on shared cores, spinning
# workers made `verify all` 2.7x slower here (330 s against 124 s).
verify: build
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(PY) -m pycnn verify all

clean:
	rm -rf build pycnn/*.so *.egg-info
