# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; set TORCH_SPEC to another spec (for example a CUDA build) on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
# augment's synonym and EDA methods read WordNet; back-translation and `tuneforge translate` run Apertium.
DEBIAN_PACKAGES ?= wordnet-base apertium apertium-eng-spa

.PHONY: demo test test-slow bench lint install dev docs clean system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[onnx]"
	touch $@

# Installed when this user may (root, or sudo without a password); otherwise one line says the command to run.
system-packages:
	@if dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "augment and translate need WordNet and Apertium (Debian: $(DEBIAN_PACKAGES)); install them with your package manager"; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null) || \
		echo "augment and translate need Debian packages that could not be installed: apt-get update && apt-get install -y $(DEBIAN_PACKAGES)"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then \
		(sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null) || \
		echo "augment and translate need Debian packages that could not be installed: sudo apt-get update && sudo apt-get install -y $(DEBIAN_PACKAGES)"; \
	else \
		echo "augment and translate need Debian packages: sudo apt-get update && sudo apt-get install -y $(DEBIAN_PACKAGES)"; \
	fi

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed system-packages

dev: $(VENV)/.dev-installed

demo: $(VENV)/.installed system-packages
	$(BIN)/tuneforge demo --output runs/demo

# One worker per core (pytest-xdist), each test file on one worker so its trained fixtures are built once.
test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -n auto --dist loadfile

test-slow: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -m slow -n auto --dist loadfile

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
