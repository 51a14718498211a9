# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; set TORCH_SPEC to another spec (for example a CUDA build) on a GPU machine.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-slow bench lint install dev docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

demo: $(VENV)/.installed
	$(BIN)/tuneforge demo --output runs/demo

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q

test-slow: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -m slow

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/quality.py

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench

# The documentation site (docs/, mkdocs.yml) into site/; --strict turns broken links and missing pages into errors.
docs: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[docs]"
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site .pytest_cache
