# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
# The Lambda runtime's Python (3.12) when this machine has it, else any Python >= 3.11. A pyenv
# shim can exist without its version being active, so each candidate is run, not just found.
PYTHON ?= $(shell for c in python3.12 $$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null) python3; do \
	if "$$c" -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1; then echo "$$c"; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck unit demo serve serve-terraform package bench clean fuzz-engine

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy jobs control_plane services worker local_cloud cli

test: venv lint typecheck
	$(BIN)/pytest -q

# The pg engine judged against pg_dump | pg_restore on many random generated databases
# (tests/oracle): ORACLE_MAX_EXAMPLES of them, 200 unless set; a failure is shrunk to a smallest one.
fuzz-engine: venv
	ORACLE_RANDOM=1 ORACLE_MAX_EXAMPLES=$${ORACLE_MAX_EXAMPLES:-200} $(BIN)/pytest -q --timeout=0 \
		tests/oracle/test_differential.py -k generated

demo: venv
	$(BIN)/python -m local_cloud.demo

serve: venv
	$(BIN)/seren-remote local up

# The same, provisioned by `terraform apply` of terraform/ (needs terraform and the provider
# mirror); Ctrl-C destroys it.
serve-terraform: venv
	$(BIN)/seren-remote local up --terraform

package: venv
	$(BIN)/python -m build_tools.package --arch $(or $(ARCH),arm64)

clean:
	rm -rf $(VENV) .local build dist .mypy_cache .pytest_cache .ruff_cache
