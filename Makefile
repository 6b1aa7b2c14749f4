# deepcuts — developer entry points. `make run` and `make test` work on a fresh machine
# with Python 3.11, a C compiler and access to PyPI.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_VERSION := 26.3

.PHONY: install run test lint fmt bench lock clean

install: $(STAMP)

# Re-installs only when the dependency definition changes; otherwise `make install` is instant.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -c "import lightfm, airflow, great_expectations; print('deepcuts: environment ready')"
	touch $(STAMP)

run: install
	$(BIN)/deepcuts demo

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
