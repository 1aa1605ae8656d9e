# Pantheon developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

# Container images (see docs/containers.md).
BASE_IMAGE ?=
TAG ?=
WHEELHOUSE ?=
PIP_INDEX ?=
JETSON_STATS_VERSION ?=

# The oldest torch a board runs, for tests/test_torchscript_compat.py (PANTHEON_COMPAT_PYTHON).
COMPAT_VENV ?= .venv-torch2.0
COMPAT_TORCH ?= 2.0.1

.PHONY: lock compat-venv venv test lint pytest demo demo-quick bench proto clean image-desktop image-jetson test-images

venv: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -r requirements-dev.txt
	$(PIP) install -e '.[offline,deploy,dev]'
	touch $(STAMP)

# The runtime image's lock files (deploy/lock/): exact versions and hashes of pantheon's dependencies.
lock: venv
	$(PY) -m pantheon.deploy.images lock --out deploy/lock

compat-venv: $(COMPAT_VENV)/.installed

$(COMPAT_VENV)/.installed:
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install -q torch==$(COMPAT_TORCH) 'numpy<2'
	touch $@

lint: venv
	$(BIN)/ruff check pantheon tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
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

# Images: one way to build them (CI, tests, pantheon-deploy and people). Stdlib-only helper, so a
# board's plain python3 runs it from a checkout. Examples:
#   make image-jetson                                     # on the board, default l4t-pytorch r35.2.1 base
#   make image-jetson BASE_IMAGE=dustynv/l4t-pytorch:r36.4.0 TAG=pantheon-jetson:r36.4.0
#   make image-jetson BASE_IMAGE=pantheon-test-base:bookworm WHEELHOUSE=/opt/wheels TAG=pantheon-jetson:test
#   make image-desktop TAG=pantheon-desktop:latest
image-jetson image-desktop: image-%:
	PYTHONPATH=$(CURDIR) $(PYTHON) -m pantheon.deploy.images $* --base-image "$(BASE_IMAGE)" --tag "$(TAG)" \
		--wheelhouse "$(WHEELHOUSE)" --pip-index "$(PIP_INDEX)" \
		--jetson-stats "$(JETSON_STATS_VERSION)" $(if $(L4T_VERSION),--l4t "$(L4T_VERSION)")

# The container tests against a Docker engine (source .ci/docker.sh first for a local engine + base),
# including the slow desktop-image build that CI skips.
test-images: venv
	PANTHEON_REQUIRE_DOCKER=1 PANTHEON_TEST_DESKTOP_IMAGE=1 $(BIN)/pytest -q tests/test_images.py tests/test_compose.py
