# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if it is
# missing and installs the project (with its test extras) into it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEED ?= 0
DEMO_DATA ?= demo/seed$(SEED)/data
DEMO_WORK ?= demo/seed$(SEED)/work

.PHONY: demo test test-slow test-all lint format venv clean-demo s3-dev

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

# Two test processes (pytest-xdist), a module each at a time; slowest tests listed at the end
# (the end-to-end and fault tests print what they measured).
# `make test` (~10 min on 2 cores): the unit tests and the integration tests through a real
# local Ray, a real three-node cluster, Ray Jobs, moto S3 with injected faults, and stages
# stopped by signals and resumed. `make test-slow` (~30 min): the tests marked `slow`, which
# run the pipeline end to end and assert the README's measured claims (the ablation's ordering,
# the S3 job, the vocabulary, training). CI (.ci/run) runs both; `make test-all`, one pytest.
PYTEST := $(BIN)/python -m pytest -q -ra -n 2 --dist loadfile --durations=12

test: lint
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PYTEST) -m slow $(PYTEST_ARGS)

test-all: lint
	$(PYTEST) $(PYTEST_ARGS)

# The built-in dataset (deterministic for a seed: regenerating gives the same bytes, so a second
# `make demo` skips every finished stage), then the whole pipeline and the ablation table.
demo: $(STAMP)
	$(BIN)/lsda toyworld --out $(DEMO_DATA) --size demo --seed $(SEED)
	$(BIN)/lsda run --data $(DEMO_DATA) --work $(DEMO_WORK) --config configs/toyworld.yaml

# A local S3 endpoint on 127.0.0.1:9000 (moto) for trying s3:// paths; Ctrl-C stops it.
s3-dev: $(STAMP)
	$(BIN)/python infra/s3_dev.py

clean-demo:
	rm -rf demo
