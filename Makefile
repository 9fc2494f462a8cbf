# The two commands that matter: `make run` and `make test`. Both make .venv themselves.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Installs take requirements.lock as constraints: a fresh machine gets exactly what was tested.
# `make lock` refreshes the lock on purpose (newest releases that pyproject.toml allows).
LOCKED := -c requirements.lock

.PHONY: run test lint bench bench-compare lock audit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: pyproject.toml requirements.lock | $(BIN)/python
	$(PIP) $(LOCKED) -e .
	@touch $@

$(VENV)/.dev-deps: pyproject.toml requirements.lock | $(BIN)/python
	$(PIP) $(LOCKED) -e '.[dev]'
	@touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	$(BIN)/llm-gateway serve

test: $(VENV)/.dev-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.dev-deps
	$(BIN)/python bench/run.py --full-pipeline

bench-compare: $(VENV)/.dev-deps
	$(BIN)/python bench/run.py --full-pipeline --compare-litellm

# requirements.lock pins every runtime and dev dependency, resolved in a fresh venv; rerun after
# changing the dependencies in pyproject.toml.
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(VENV)-lock/bin/python -m pip freeze --exclude-editable > requirements.lock
	rm -rf $(VENV)-lock

# Known vulnerabilities in the locked dependencies. --strict: a dependency that cannot be audited
# (its vulnerability service unreachable) fails the audit instead of being skipped with a warning.
audit: $(VENV)/.dev-deps
	$(BIN)/pip-audit --strict --no-deps --progress-spinner off -r requirements.lock \
	    || { echo "make audit: FAILED: a known vulnerability, or a dependency that could not be audited (above)" >&2; exit 1; }

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
