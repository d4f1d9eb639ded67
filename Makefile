# The README's two commands: `make demo` (the main job) and `make test` (everything CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv check test test-fast demo bench clean

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

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
