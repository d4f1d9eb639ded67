# The README's two commands: `make demo` (the main job) and `make test` (everything CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv check test test-fast demo bench clean lock image podman-setup

venv: $(STAMP)

# Re-install whenever a pyproject.toml changes, so a fresh clone and an old checkout agree.
# Both distributions in one pip call: the server's `sidecar-client` requirement is met by
# the local client/ tree, never looked up on an index.
$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ./client -e ".[test]"
	touch $(STAMP)

check: $(STAMP)
	$(BIN)/ruff check sidecar client tests bench testbed demo
	$(BIN)/ruff format --check sidecar client tests bench testbed demo
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

# The whole suite: static checks, hermetic tests and real-Kafka tests (the broker is
# obtained by tests/conftest.py: KAFKA_BOOTSTRAP_SERVERS, Docker, or local KRaft jars).
test: check
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest -m "not kafka" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m demo

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The image's dependency lock (pinned, hash-checked; the Dockerfile installs from it).
# Existing pins are kept; `make lock LOCK_ARGS=--upgrade` moves them to the newest allowed.
LOCK := $(BIN)/uv pip compile --native-tls --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" $(LOCK_ARGS)
lock: $(STAMP)
	$(LOCK) --no-emit-package sidecar --no-emit-package sidecar-client \
		requirements/image.in -o requirements/image.txt
	$(LOCK) requirements/build.in -o requirements/build.txt

# podman (+ runc, debootstrap) and the local python:3.11-slim stand-in; root, idempotent.
podman-setup:
	scripts/podman-setup.sh

image: podman-setup
	scripts/image-build.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
