# Telemesh: the two commands are `make demo` and `make test`; both set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint gen bench clean

setup: $(STAMP)

# Rebuilt whenever the dependency list or the setup script changes.
$(STAMP): pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) scripts/setup.sh
	touch $@

demo: $(STAMP)
	$(BIN)/telemesh demo

test: $(STAMP) lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint
	scripts/buf-breaking.sh

gen: $(STAMP)
	scripts/gen.sh gen/python

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .telemesh .pytest_cache .mypy_cache .ruff_cache
