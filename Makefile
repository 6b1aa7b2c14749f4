# deepcuts — developer entry points. `make run` and `make test` work on a fresh machine
# with Python 3.11, a C compiler and access to PyPI.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_VERSION := 26.3

.PHONY: install run ui test lint fmt bench lock clean

# pip warns once per package about every index location of the machine's pip configuration that is
# not there ("WARNING: Location 'file:///...' is ignored: it is neither a file nor a directory"):
# drop exactly those lines; every other warning and error still shows, and pip's exit status counts.
PIP_QUIET := --quiet --disable-pip-version-check
PIP_FILTER := 2>&1 | { grep -v -E "^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory\.$$" || true; }

install: $(STAMP)

# Re-installs only when the dependency definition changes; otherwise `make install` is instant.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "deepcuts: installing the pinned dependencies into $(VENV) (a few minutes the first time) ..."
	@set -o pipefail; $(BIN)/python -m pip install $(PIP_QUIET) "pip==$(PIP_VERSION)" $(PIP_FILTER)
	@set -o pipefail; $(BIN)/python -m pip install $(PIP_QUIET) -c constraints.txt -e ".[dev]" $(PIP_FILTER)
	@# pip compiles what it copies, not an editable project's own modules; where PYTHONDONTWRITEBYTECODE is
	@# set, every task process (one per Airflow task) would then compile them again. Compile them once, as
	@# the Docker image's wheel install does (a module edited later is recompiled on import, as before).
	@$(BIN)/python -m compileall -q deepcuts pipelines models dags >/dev/null
	@# `import deepcuts` first: it silences Great Expectations' import-time INFO lines (deepcuts/__init__.py).
	@$(BIN)/python -c "import deepcuts, lightfm, airflow, great_expectations; print('deepcuts: environment ready')"
	@touch $(STAMP)

run: install
	$(BIN)/deepcuts demo

# The Airflow UI on the demo's lake (after `make run`): prints the URL and the login; Ctrl-C stops it.
# UI_PORT=8081 make ui picks another port (the next free one is used if it is taken).
UI_PORT ?= 8080
ui: install
	$(BIN)/deepcuts ui --port $(UI_PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python benchmarks/run_all.py

# Re-resolve the pins after changing dependencies in pyproject.toml.
lock:
	rm -rf /tmp/deepcuts-lock && $(PYTHON) -m venv /tmp/deepcuts-lock
	/tmp/deepcuts-lock/bin/python -m pip install --quiet "pip==$(PIP_VERSION)"
	/tmp/deepcuts-lock/bin/python -m pip install --quiet ".[dev]"
	{ head -3 constraints.txt; /tmp/deepcuts-lock/bin/python -m pip freeze --exclude-editable | grep -v -iE '^(deepcuts|pip|setuptools|wheel)[=@ ]'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .deepcuts .pytest_cache .ruff_cache
