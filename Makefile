# Telemesh: the two commands are `make demo` and `make test`; both set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint gen docs bench load clean image

setup: $(STAMP)

# Rebuilt whenever a dependency list, a lock file or the setup script changes.
$(STAMP): pyproject.toml scripts/setup.sh scripts/debian-packages.txt \
		$(wildcard tests/mesh/node/package-lock.json web/package-lock.json)
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
	$(BIN)/lint-imports
	$(BIN)/buf lint
	scripts/buf-breaking.sh

gen: $(STAMP)
	scripts/gen.sh gen/python

# The API reference in docs/api/, from the protos and mesh/allowlist.yaml.
docs: $(STAMP)
	$(BIN)/python -m telemesh_tools.apidocs

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Whole visits through the edge at 1 and 2 replicas (the `fleet` suite of `make bench`).
load: $(STAMP)
	$(BIN)/python -m benchmarks fleet

# The container image (Containerfile) with podman, from a wheelhouse built here; prints
# its name and size. BASE_IMAGE=... changes the base (scripts/build-image.sh says more).
image: $(STAMP)
	scripts/build-image.sh

clean:
	rm -rf $(VENV) .telemesh .pytest_cache .mypy_cache .ruff_cache
