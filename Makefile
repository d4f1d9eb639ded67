# The README's two commands: `make demo` (the main job) and `make test` (everything CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv check test test-fast demo bench clean rules tools

venv: $(STAMP)

# Re-install whenever pyproject.toml changes, so a fresh clone and an old checkout agree.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

check: $(STAMP)
	$(BIN)/ruff check sidecar tests bench deploy
	$(BIN)/ruff format --check sidecar tests bench deploy
	$(BIN)/mypy

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

# The whole suite: static checks, hermetic tests and real-Kafka tests (the broker is
# obtained by tests/conftest.py: KAFKA_BOOTSTRAP_SERVERS, Docker, or local KRaft jars).
test: check tools
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP) tools
	$(BIN)/pytest -m "not kafka" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m sidecar.demo

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
