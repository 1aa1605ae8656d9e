# Pantheon developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

# Container images (see README "Container images").
BASE_IMAGE ?=
TAG ?=
WHEELHOUSE ?=

.PHONY: venv test lint pytest demo demo-quick bench proto clean image-desktop image-jetson test-images

venv: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -r requirements-dev.txt
	$(PIP) install -e '.[offline,deploy,dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check pantheon tests bench
	$(BIN)/hadolint $(wildcard Dockerfile.*)

pytest: venv
	$(BIN)/pytest -q

test: lint pytest

demo: venv
	$(BIN)/pantheon demo

demo-quick: venv
	$(BIN)/pantheon demo --quick

bench: venv
	$(PY) bench/run_all.py

proto: venv
	$(PY) -m pantheon.formats.gen

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
