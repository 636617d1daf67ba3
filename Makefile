# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if it is
# missing and installs the project (with its test extras) into it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEED ?= 0
DEMO_DATA ?= demo/seed$(SEED)/data
DEMO_WORK ?= demo/seed$(SEED)/work

.PHONY: demo test lint format venv clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

# The built-in dataset (deterministic for a seed: regenerating gives the same bytes, so a second
# `make demo` skips every finished stage), then the whole pipeline and the ablation table.
demo: $(STAMP)
	$(BIN)/lsda toyworld --out $(DEMO_DATA) --size demo --seed $(SEED)
	$(BIN)/lsda run --data $(DEMO_DATA) --work $(DEMO_WORK) --config configs/toyworld.yaml

clean-demo:
	rm -rf demo
