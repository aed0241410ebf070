# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck unit demo serve package bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check jobs services worker local_cloud cli tests bench 2>/dev/null || true

typecheck: venv
	$(BIN)/mypy jobs services worker local_cloud cli

test: venv lint typecheck
	$(BIN)/pytest -q

demo: venv
	$(BIN)/python -m local_cloud.demo

serve: venv
	$(BIN)/seren-remote local up

package: venv
	$(BIN)/python -m build_tools.package --arch $(or $(ARCH),arm64)

clean:
	rm -rf $(VENV) .local build dist .mypy_cache .pytest_cache .ruff_cache
