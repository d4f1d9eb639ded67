"""Every environment or settings problem at start is one line naming the cause, and exit 2
(docs/protocol.md §7): never a traceback, never a half-started sidecar."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Each case: (what, its set-up in tmp_path -> (extra `run` arguments, extra environment),
# a word the one line must contain).
Setup = Callable[[Path], tuple[list[str], dict[str, str]]]


def bad_value(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return ["--flush-interval-ms", "-1"], {}


def bad_env_value(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return [], {"SIDECAR_LINGER_MS": "soon"}


def bad_combination(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return ["--max-batch-bytes", "4194304", "--max-request-bytes", "2097152"], {}


def bad_socket_mode(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return ["--socket-mode", "rw-rw----"], {}


CASES: dict[str, tuple[Setup, str]] = {
    "an option out of range": (bad_value, "--flush-interval-ms"),
    "a SIDECAR_* variable that does not parse": (bad_env_value, "SIDECAR_LINGER_MS"),
    "settings that contradict each other": (bad_combination, "--max-batch-bytes"),
    "a socket mode that is not octal": (bad_socket_mode, "--socket-mode"),
}


def run_sidecar(
    tmp: Path, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    base = ["--socket", str(tmp / "sidecar.sock"), "--bootstrap-servers", "127.0.0.1:1"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "run", *base, "--http-port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,  # a sidecar that started instead of failing is killed here
        env={**environ, **env},
        check=False,
    )


def assert_one_line_exit_2(out: subprocess.CompletedProcess[str], word: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert len(lines) == 1, out.stderr
    assert word in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_startup_problem_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    setup, word = CASES[case]
    args, env = setup(tmp_path)
    assert_one_line_exit_2(run_sidecar(tmp_path, args, env), word)
