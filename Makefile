# edgeport: `make demo` sets up everything and runs the main job on the bundled example; `make test` sets up
# and runs the whole suite. Both work on a fresh machine (Python 3.11, Node.js/npm, apt as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR := examples/digits
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=
# [dev] is the lint and test tools only. The suite runs every target, the fleet and image folders, and fails
# (never skips) without one of them, so `make test` installs every extra by name (tests/core/test_ci_example.py
# checks this list against pyproject.toml); the demo needs the ONNX and TFLM converters and the plots.
TEST_EXTRAS := dev,onnx,tflm,npu,browser,report,fleet,images
DEMO_EXTRAS := onnx,tflm,report

.PHONY: setup python-deps test-deps test-programs demo-deps system-deps lint demo test bench clean

setup: python-deps system-deps

# One stamp per set of extras, remade when pyproject.toml changes.
define pip_install
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(1)]"
	! $(PY) -m pip show -q tensorflowjs 2>/dev/null  # edgeport emits TF.js itself: never the tensorflowjs package
	touch $@
endef

python-deps: $(VENV)/.stamp-deps
$(VENV)/.stamp-deps: pyproject.toml
	$(call pip_install,dev)

test-deps: $(VENV)/.stamp-test-deps
$(VENV)/.stamp-test-deps: pyproject.toml
	$(call pip_install,$(TEST_EXTRAS))

demo-deps: $(VENV)/.stamp-demo-deps
$(VENV)/.stamp-demo-deps: pyproject.toml
	$(call pip_install,$(DEMO_EXTRAS))

# What the targets need outside Python: the TF.js npm packages (from the lockfile shipped in the package, into
# ~/.cache/edgeport), Debian's Chromium and Node.js (apt as root, --no-install-recommends: what a headless run
# needs, not udev, avahi or printer tools). `edgeport setup` does it; it is idempotent.
system-deps: python-deps
	$(VENV)/bin/edgeport setup

$(DEMO_DIR)/saved_model: | python-deps
	$(PY) examples/train_digits.py --out $(DEMO_DIR)

demo: demo-deps setup $(DEMO_DIR)/saved_model
	$(VENV)/bin/edgeport convert --config examples/edgeport.toml -o $(DEMO_OUT)
	@echo "report: $(DEMO_OUT)/report.json, $(DEMO_OUT)/report.html, $(DEMO_OUT)/summary.md"

# Lint, format and types: every `# noqa` and `# type: ignore` left in the code is one these tools read.
lint: python-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Programs only the tests use: a real sshd on loopback (the --device tests) and strace (the pre-load scan's
# "never opened" tests). Not part of `edgeport setup`: users of edgeport need neither.
TEST_PROGRAMS := strace sshd
test-programs:
	@for program in $(TEST_PROGRAMS); do command -v $$program >/dev/null || [ -x /usr/sbin/$$program ] || missing=1; done; \
	if [ -n "$$missing" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends strace openssh-server openssh-client; fi

# Two workers: most of a test's time is a TensorFlow or runtime subprocess on one core. The ten slowest tests
# are printed at the end (the timing note is in benchmarks/README.md). Tests that judge latency on the real
# clock (marker `alone`) run afterwards with nothing beside them.
test: test-deps setup test-programs lint
	$(VENV)/bin/pytest -q -n 2 --durations=10 -m "not alone" $(PYTEST_ARGS)
	$(VENV)/bin/pytest -q -m alone $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(DEMO_OUT) $(DEMO_DIR) build dist *.egg-info .pytest_cache
