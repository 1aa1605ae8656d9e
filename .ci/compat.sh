# shellcheck shell=bash
# Sourced by .ci/run: an interpreter with the oldest torch a board runs (2.0.1, from PyPI), for
# tests/test_torchscript_compat.py. Kept between runs under $PANTHEON_COMPAT_VENV (~4 GB: the PyPI
# wheel is the CUDA build); made once with `make compat-venv`.
export PANTHEON_COMPAT_VENV="${PANTHEON_COMPAT_VENV:-/var/cache/pantheon/venv-torch2.0}"
make compat-venv COMPAT_VENV="$PANTHEON_COMPAT_VENV"
export PANTHEON_COMPAT_PYTHON="$PANTHEON_COMPAT_VENV/bin/python"
export PANTHEON_REQUIRE_COMPAT=1
