# The two commands of README.md. Each sets up .venv on first use (pinned by
# requirements.txt) and reuses it afterwards; a changed requirements.txt
# reinstalls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: demo test test-bundle lint benchmark clean

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

## demo: set up, then run the whole workflow on the built-in demo data
demo: $(BIN)/.installed
	$(BIN)/snakemake --cores $(CORES)

## test: set up, then run the test suite
test: $(BIN)/.installed
	$(BIN)/python -m pytest

## test-bundle: the slow tier: the inference bundle in a virtual environment of its own (CI runs it too)
test-bundle: $(BIN)/.installed
	$(BIN)/python -m pytest -m bundle_env

## lint: ruff, snakefmt and snakemake --lint
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

clean:
	rm -rf results resources/demo .snakemake
