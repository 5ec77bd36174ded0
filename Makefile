# edgeport: `make demo` sets up everything and runs the main job on the bundled example; `make test` sets up
# and runs the whole suite. Both work on a fresh machine (Python 3.11, Node.js/npm, apt as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NODE_DIR := targets/tfjs
DEMO_DIR := examples/digits
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: setup python-deps node-deps system-deps demo test bench clean

setup: python-deps node-deps system-deps

python-deps: $(VENV)/.stamp-deps
$(VENV)/.stamp-deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	! $(PY) -m pip show -q tensorflowjs 2>/dev/null  # edgeport emits TF.js itself: never the tensorflowjs package
	touch $@

# Node.js runtime for the TF.js targets: exact versions from the committed lockfile, installed once here.
node-deps: $(NODE_DIR)/node_modules/.package-lock.json
$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error

# Debian's Chromium for the browser target and the HTML report tests (Playwright drives it; no browser download).
system-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

$(DEMO_DIR)/saved_model: | python-deps
	$(PY) examples/train_digits.py --out $(DEMO_DIR)

demo: setup $(DEMO_DIR)/saved_model
	$(VENV)/bin/edgeport convert --config examples/edgeport.toml -o $(DEMO_OUT)
	@echo "report: $(DEMO_OUT)/report.json, $(DEMO_OUT)/report.html, $(DEMO_OUT)/summary.md"

test: setup
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(DEMO_OUT) $(DEMO_DIR) build dist *.egg-info .pytest_cache
