"""The command line (PROTOCOL §7), run as a real process where exit codes matter."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sidecar import __version__
from sidecar.cli import app
from tests.conftest import NewTopic

runner = CliRunner()


def sidecar(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"sidecar {__version__}"


def test_every_command_is_listed() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "send", "tail", "check", "bench"):
        assert command in result.output


def test_run_help_gives_every_default_and_unit() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    out = result.output
    assert result.exit_code == 0
    for option, default in [
        ("--flush-interval-ms", "50"),
        ("--max-buffered-chars", "128"),
        ("--max-frame-bytes", "1048576"),
        ("--closed-stream-ttl", "600"),
        ("--stream-idle-timeout", "300"),
        ("--shutdown-timeout", "25"),
        ("--max-pending-bytes", "67108864"),
        ("--socket-mode", "0660"),
        ("--topic", "task-updates"),
        ("--bootstrap-servers", "localhost:9092"),
    ]:
        assert option in out, option
        assert default in out, (option, default)
    assert "SIDECAR_FLUSH_INTERVAL_MS" in out
    for unit in ("milliseconds", "seconds", "bytes"):
        assert unit in out


def test_environment_is_read_and_a_flag_wins(tmp_path: Path) -> None:
    bad = sidecar(
        "run", env={"SIDECAR_FLUSH_INTERVAL_MS": "-1", "SIDECAR_SOCKET": str(tmp_path / "s")}
    )
    assert bad.returncode == 2
    assert "--flush-interval-ms" in bad.stderr
    # The flag overrides the bad variable; start-up then stops at the socket path, which
    # is a plain file (exit 2 with its own message): so the flag was taken.
    (tmp_path / "file").write_text("x")
    good = sidecar(
        "run",
        "--flush-interval-ms",
        "10",
        "--http-port",
        "0",
        "--socket",
        str(tmp_path / "file"),
        env={"SIDECAR_FLUSH_INTERVAL_MS": "-1"},
    )
    assert good.returncode == 2, good.stderr
    assert "not a socket" in good.stderr


def test_second_instance_on_a_live_socket_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen()
        result = sidecar("run", "--socket", str(path), "--http-port", "0")
    assert result.returncode == 2
    assert "another process is accepting" in result.stderr
    assert path.exists()  # a live socket is never removed


def test_check_fails_clearly_without_kafka(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: nothing answers
        result = sidecar(
            "check",
            "--bootstrap-servers",
            f"127.0.0.1:{port}",
            "--timeout",
            "3",
            "--socket",
            str(tmp_path / "s"),
        )
    assert result.returncode == 1
    assert "cannot reach" in result.stderr


@pytest.mark.kafka
async def test_check_reaches_kafka(
    tmp_path: Path, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic(2)  # check never creates the topic it checks
    result = sidecar(
        "check",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--topic",
        topic,
        "--socket",
        str(tmp_path / "s"),
    )
    assert result.returncode == 0, result.stderr
    assert "reachable" in result.stdout


@pytest.mark.kafka
@pytest.mark.parametrize("command", ["check", "tail"])
def test_a_missing_topic_is_one_line_and_is_not_created(
    command: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    # The test bed's broker auto-creates topics: a metadata request that allowed it
    # would create this one.
    topic = f"missing-{command}-{os.getpid()}"
    args = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic]
    if command == "check":
        args += ["--socket", str(tmp_path / "s")]
    result = sidecar(command, *args)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "topic_missing" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    again = sidecar("check", *args[:4], "--socket", str(tmp_path / "s"))
    assert "topic_missing" in again.stderr  # still missing: nothing created it
