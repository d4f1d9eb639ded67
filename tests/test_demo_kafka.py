"""`make demo` as CI sees it: not a terminal, so plain lines; exit 0 only when every check
of its verdict (read back from the real broker) passes, non-zero when one fails."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testbed import Broker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def run_demo(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "TERM": "xterm"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "demo", "--agents", "2", "--answer-words", "20", *args],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
        check=False,
    )


def test_demo_passes_in_plain_lines(kafka_broker: Broker) -> None:
    out = run_demo(kafka_broker, "--idle-streams", "1000", "--idle-seconds", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "\x1b" not in out.stdout  # no escape codes off a terminal
    lines = out.stdout.splitlines()
    assert any("deltas written" in line and "records in Kafka" in line for line in lines)
    assert "Verdict, from the records read back from Kafka" in out.stdout
    for row in ("task-1-reasoning", "task-2-tool", "task-2-answer"):
        assert any(line.startswith(row) for line in lines), row
    assert "Idle: 1,000 open streams, nothing pending" in out.stdout
    assert "the seed design: a 50 ms ticker per stream" in out.stdout
    passes = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert len(passes) == 5 and all(p.startswith("PASS") for p in passes), passes
    assert lines[-1].startswith("demo passed in ")


def test_a_failed_check_exits_non_zero(kafka_broker: Broker) -> None:
    # Coalescing off: as many delta records as deltas, which the verdict reads from Kafka.
    out = run_demo(kafka_broker, "--idle-streams", "0", "--sidecar-option=--flush-interval-ms=0")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL fewer delta records than deltas (coalescing)" in out.stdout
    assert "PASS every stream in Kafka in order" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("demo FAILED in ")
