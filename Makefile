# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if it is
# missing and installs the project (with its test extras) into it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= demo/data
DEMO_WORK ?= demo/work

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

demo: $(STAMP)
	$(BIN)/lsda toyworld --out $(DEMO_DATA) --size demo
	$(BIN)/lsda check-data $(DEMO_DATA)

clean-demo:
	rm -rf demo
