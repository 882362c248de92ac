# Two targets a newcomer runs on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing; torch==2.13.0 goes in first so that no CUDA build is pulled.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sxtquant-installed
PYTEST_ARGS ?=

.PHONY: demo test lint model figures evaluate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,dask]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sxtquant demo -o demo_output

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache
