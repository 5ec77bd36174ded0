# edgeport: `make demo` sets up everything and runs the main job on the bundled example; `make test` sets up
# and runs the whole suite. Both work on a fresh machine (Python 3.11, Node.js/npm, apt as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR := examples/digits
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: setup python-deps system-deps lint demo test bench clean

setup: python-deps system-deps

python-deps: $(VENV)/.stamp-deps
$(VENV)/.stamp-deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	! $(PY) -m pip show -q tensorflowjs 2>/dev/null  # edgeport emits TF.js itself: never the tensorflowjs package
	touch $@

# What the targets need outside Python: the TF.js npm packages (from the lockfile shipped in the package, into
# ~/.cache/edgeport), Debian's Chromium and Node.js (apt, as root). `edgeport setup` does it; it is idempotent.
system-deps: python-deps
	$(VENV)/bin/edgeport setup

$(DEMO_DIR)/saved_model: | python-deps
	$(PY) examples/train_digits.py --out $(DEMO_DIR)

demo: setup $(DEMO_DIR)/saved_model
	$(VENV)/bin/edgeport convert --config examples/edgeport.toml -o $(DEMO_OUT)
	@echo "report: $(DEMO_OUT)/report.json, $(DEMO_OUT)/report.html, $(DEMO_OUT)/summary.md"

# Lint, format and types: every `# noqa` and `# type: ignore` left in the code is one these tools read.
lint: python-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(DEMO_OUT) $(DEMO_DIR) build dist *.egg-info .pytest_cache
