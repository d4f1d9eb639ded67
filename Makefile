# The README's two commands: `make demo` (the main job) and `make test` (everything CI runs).
# The venv's interpreter: the distribution's CPython at /usr/bin/python3 when it is 3.11 or
# newer and can make a venv, else the first python3 on PATH; PYTHON=... overrides, and an
# existing .venv is kept. The image runs a distribution build too (Debian bookworm's
# python3.11 stand-in here, python:3.11-slim elsewhere), so tests and `make bench` run on
# the kind of build that ships: pyenv's default build (the python3 on PATH on these
# machines: shared libpython, no PGO) costs the sidecar about 10% more CPU per delta.
SYSTEM_PYTHON_OK := $(shell /usr/bin/python3 -c 'import sys, ensurepip; print(sys.version_info >= (3, 11))' 2>/dev/null)
PYTHON ?= $(if $(filter True,$(SYSTEM_PYTHON_OK)),/usr/bin/python3,python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv check test test-fast demo bench clean lock image kafka-image podman-setup deploy-tools rules tools bench-report footprint

# agentex-sdk needs Python >= 3.12; its end-to-end test runs in a venv of its own.
# These machines have CPython 3.12 under pyenv, not on PATH (pyenv's shim refuses it
# unless selected), so the pyenv build comes first; any python3.12 on PATH otherwise.
PYENV_312 := $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python3.12
PYTHON312 ?= $(shell test -x "$(PYENV_312)" && echo "$(PYENV_312)" || command -v python3.12 || echo python3.12)
AGENTEX_VENV := .venv-agentex
AGENTEX_STAMP := $(AGENTEX_VENV)/.installed
AGENTEX_SDK := agentex-sdk==0.28.4

.PHONY: agentex-venv

venv: $(STAMP)

# Re-install whenever a pyproject.toml changes, so a fresh clone and an old checkout agree.
# Both distributions in one pip call: the server's `sidecar-client` requirement is met by
# the local client/ tree, never looked up on an index.
$(STAMP): pyproject.toml client/pyproject.toml
	@echo "==> installing the development environment into $(VENV) (pip; log in $(VENV)/pip.log)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip and setuptools talk a lot while building editable wheels: keep it in the log
	@# unless the install fails.
	@$(BIN)/python -m pip install -q --upgrade pip > $(VENV)/pip.log 2>&1 \
		|| { cat $(VENV)/pip.log; exit 1; }
	@$(BIN)/python -m pip install -q -e ./client -e ".[test]" >> $(VENV)/pip.log 2>&1 \
		|| { cat $(VENV)/pip.log; exit 1; }
	@touch $(STAMP)

# ~100 s and ~1.1 GB the first time; reused while client/pyproject.toml is unchanged.
agentex-venv: $(AGENTEX_STAMP)

$(AGENTEX_STAMP): client/pyproject.toml
	test -x $(AGENTEX_VENV)/bin/python || $(PYTHON312) -m venv $(AGENTEX_VENV)
	$(AGENTEX_VENV)/bin/python -m pip install -q --upgrade pip
	$(AGENTEX_VENV)/bin/python -m pip install -q "$(AGENTEX_SDK)" -e "./client[agentex,kafka]"
	touch $(AGENTEX_STAMP)

check: $(STAMP)
	$(BIN)/ruff check sidecar client tests bench testbed demo deploy scripts
	$(BIN)/ruff format --check sidecar client tests bench testbed demo deploy scripts
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

# promtool and prometheus (Debian's package `prometheus`) for the alerting-rule tests and
# the dashboard test that scrapes a real sidecar. CI runs as root on a fresh machine.
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "==> installing Debian's prometheus package (promtool, prometheus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# deploy/prometheus/prometheusrule.yaml is made from sidecar-rules.yaml, the one source.
rules: $(STAMP)
	$(BIN)/python deploy/prometheus/make_prometheusrule.py

# The whole suite: static checks; the hermetic, deploy and image tests (the image smoke test
# gets its broker from tests/conftest.py: KAFKA_BOOTSTRAP_SERVERS, Docker, or local KRaft
# jars); then every other kafka-marked test, once, with the session broker from
# testcontainers served by podman's Docker API (scripts/testcontainers-run.sh): the path
# most users take. Both brokers run the same Kafka 4.1.1 jars; a second full kafka pass
# against the local broker would add minutes to CI and nothing new.
# The set-up steps are independent and mostly wait on the network or on one core (Go builds
# helm, debootstrap unpacks, pip installs), so they run side by side: on a fresh 2-core
# machine that takes about as long as the slowest of them instead of their sum.
# `tools` goes first, alone: it uses apt-get, as podman-setup does, and two apt-gets at once
# fail on apt's lock.
TEST_PREP := check deploy-tools $(AGENTEX_STAMP) image kafka-image
test:
	$(MAKE) tools
	$(MAKE) -j4 --output-sync=target $(TEST_PREP)
	$(BIN)/pytest -m "not kafka or image" $(PYTEST_ARGS)
	scripts/testcontainers-run.sh -m "kafka and not image" $(PYTEST_ARGS)

test-fast: $(STAMP) $(AGENTEX_STAMP) tools
	$(BIN)/pytest -m "not kafka" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m demo

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Charts (docs/bench/*.png) and the README table from bench/results/latest.json.
bench-report: $(STAMP)
	$(BIN)/python -m bench.report

# RSS and CPU behind the deploy manifests' resources (README "Deploy").
footprint: $(STAMP)
	$(BIN)/python -m bench.footprint $(FOOTPRINT_ARGS)

# The image's dependency lock (pinned, hash-checked; the Dockerfile installs from it).
# Existing pins are kept; `make lock LOCK_ARGS=--upgrade` moves them to the newest allowed.
LOCK := $(BIN)/uv pip compile --native-tls --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" $(LOCK_ARGS)
lock: $(STAMP)
	$(LOCK) --no-emit-package sidecar --no-emit-package sidecar-client \
		requirements/image.in -o requirements/image.txt
	$(LOCK) requirements/build.in -o requirements/build.txt

# helm, kustomize and tools/psa for the deploy tests (tests/deploy), built once from the Go
# module proxy into ~/.cache/sidecar/tools (cold: a few minutes, then nothing).
deploy-tools:
	tools/deploy-tools.sh >/dev/null

# podman (+ runc, debootstrap) and the local python:3.11-slim stand-in; root, idempotent.
podman-setup:
	scripts/podman-setup.sh

image: podman-setup
	scripts/image-build.sh

# The Kafka image the testcontainers pass runs: Kafka's jars (the test bed fetches them
# once into ~/.cache/sidecar) on the python:3.11-slim stand-in.
kafka-image: podman-setup $(STAMP)
	scripts/kafka-image.sh "$$($(BIN)/python -c 'from testbed.jars import cache_dir, kafka_classpath; \
		kafka_classpath(); print(cache_dir() / "libs")')"

clean:
	rm -rf $(VENV) $(AGENTEX_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
