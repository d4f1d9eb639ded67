"""Start-up failures a user can cause: each is one line naming the path, port or setting,
exit 2, no traceback, and no socket file left behind (`run` and `check` alike)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from sidecar.logs import JsonFormatter

SECRET = "hunter2-not-for-logs"
SASL_PLAIN = ["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN"]


def sidecar(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def one_line_exit_2(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def unused_kafka() -> Iterator[str]:
    with socket.socket() as s:  # bound, not listening: nothing answers
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("command", ["run", "check"])
def test_socket_folder_missing(command: str, tmp_path: Path) -> None:
    sock = tmp_path / "nope" / "s.sock"
    result = sidecar(command, "--socket", str(sock), "--http-port", "0")
    one_line_exit_2(result, str(tmp_path / "nope"), "does not exist")
    assert not sock.parent.exists()  # not created behind the user's back


@pytest.mark.parametrize("command", ["run", "check"])
def test_socket_folder_not_writable(command: str) -> None:
    # Root may write any folder it can chmod, but not /proc/sys (the kernel refuses).
    root = os.geteuid() == 0
    folder = Path("/proc/sys") if root else Path(tempfile.mkdtemp(prefix="sidecar-ro-"))
    try:
        folder.chmod(0o555) if not root else None
        sock = folder / "s.sock"
        result = sidecar(command, "--socket", str(sock), "--http-port", "0")
        one_line_exit_2(result, str(folder), "not writable")
        assert not sock.exists()
    finally:
        if not root:
            folder.chmod(0o755)
            folder.rmdir()


@pytest.mark.parametrize("command", ["run", "check"])
def test_socket_path_too_long(command: str, tmp_path: Path) -> None:
    sock = tmp_path / ("x" * 120 + ".sock")
    result = sidecar(command, "--socket", str(sock), "--http-port", "0")
    one_line_exit_2(result, "--socket", "at most 107")
    assert not sock.exists()


def test_http_port_in_use(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = sidecar(
            "run", "--socket", str(sock), "--http-host", "127.0.0.1", "--http-port", port
        )
    one_line_exit_2(result, f"--http-port {port}", "in use")
    assert not sock.exists()


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--security-protocol", "SSL", "--ssl-ca-file", "/nonexistent/ca.pem"], ["--ssl-ca-file"]),
        (["--ssl-ca-file", "/etc/hostname"], ["--ssl-ca-file", "PLAINTEXT"]),
        (["--security-protocol", "SASL_SSL"], ["needs --sasl-mechanism"]),
        (
            ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512"],
            ["needs --sasl-username"],
        ),
        (
            [*SASL_PLAIN, "--sasl-username", "u"],
            ["needs a password", "SIDECAR_SASL_PASSWORD"],
        ),
        (
            [*SASL_PLAIN, "--sasl-username", "u", "--sasl-password-file", "/nonexistent/pw"],
            ["cannot read --sasl-password-file /nonexistent/pw"],
        ),
        (
            ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "OAUTHBEARER"],
            ["needs --sasl-oauth-token-file"],
        ),
        (["--ssl-cert-file", "/etc/hostname", "--security-protocol", "SSL"], ["go together"]),
    ],
)
def test_security_settings_that_cannot_work(
    command: str, args: list[str], needles: list[str], tmp_path: Path
) -> None:
    sock = tmp_path / "s.sock"
    result = sidecar(command, "--socket", str(sock), "--http-port", "0", *args)
    one_line_exit_2(result, *needles)
    assert not sock.exists()


def test_the_password_comes_from_the_environment_and_shows_nowhere(
    tmp_path: Path, unused_kafka: str
) -> None:
    args = ["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN"]
    args += ["--sasl-username", "agent", "--bootstrap-servers", unused_kafka]
    env = {"SIDECAR_SASL_PASSWORD": SECRET}
    result = sidecar("check", "--socket", str(tmp_path / "s"), "--timeout", "2", *args, env=env)
    assert result.returncode == 1, result.stderr
    assert "unreachable" in result.stderr
    helped = sidecar("run", "--help", env={**env, "COLUMNS": "200"})
    assert "--sasl-password-file" in helped.stdout
    assert "--sasl-password " not in helped.stdout  # no flag for the secret itself
    bad = sidecar("run", "--socket", str(tmp_path / "s"), "--http-port", "-1", *args, env=env)
    assert bad.returncode == 2
    for out in (result, helped, bad):
        assert SECRET not in out.stdout + out.stderr


def test_json_log_lines_are_valid_json_with_rfc3339_time(tmp_path: Path, unused_kafka: str) -> None:
    sock = tmp_path / "s.sock"
    args = ["run", "--socket", str(sock), "--http-port", "0", "--log-format", "json"]
    args += ["--bootstrap-servers", unused_kafka, "--no-uvloop"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:  # wait for the start-up line, then stop it
            lines.append(line)
            if "listening on" in line:
                proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert any("listening on" in line for line in lines)
    for line in lines:
        entry = orjson.loads(line)
        assert datetime.fromisoformat(entry["time"]).tzinfo is not None
        assert entry["level"] in ("debug", "info", "warning", "error", "critical")
    assert not sock.exists()


def test_json_formatter_keeps_quotes_newlines_and_exceptions() -> None:
    try:
        raise ValueError('bad "value"\nsecond line')
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, "f", 1, 'say "%s"\n%s', ("hi", "there"), sys.exc_info()
        )
    out = JsonFormatter().format(record)
    assert "\n" not in out
    entry = orjson.loads(out)
    assert entry["message"] == 'say "hi"\nthere'
    assert 'ValueError: bad "value"\nsecond line' in entry["exception"]
    assert entry["time"].endswith("+00:00")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--flush-interval-ms", "-1"], {}, "--flush-interval-ms"),
        (["--linger-ms", "soon"], {}, "--linger-ms"),
        ([], {"SIDECAR_LINGER_MS": "soon"}, "SIDECAR_LINGER_MS"),
        (["--max-batch-bytes", "4194304", "--max-request-bytes", "2097152"], {}, "--max-batch"),
        (["--socket-mode", "rw-rw----"], {}, "--socket-mode"),
        (["--on-disconnect", "linger"], {}, "--on-disconnect"),
        (["--no-such-option"], {}, "--no-such-option"),
    ],
)
def test_a_setting_that_does_not_parse_or_fit(
    args: list[str], env: dict[str, str], needle: str, tmp_path: Path
) -> None:
    """Flags and SIDECAR_* values, as click or the settings model reject them: one line
    too, not click's usage block."""
    sock = tmp_path / "s.sock"
    result = sidecar("run", "--socket", str(sock), "--http-port", "0", *args, env=env)
    one_line_exit_2(result, needle)
    assert not sock.exists()


def test_an_unknown_command() -> None:
    one_line_exit_2(sidecar("runn"), "runn")


@pytest.mark.parametrize("command", ["run", "check"])
def test_socket_folder_others_can_write(command: str, tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)  # no sticky bit: anyone could replace the socket
    sock = folder / "s.sock"
    result = sidecar(command, "--socket", str(sock), "--http-port", "0")
    one_line_exit_2(result, str(folder), "writable by group or others")
    assert not sock.exists()


def test_socket_folder_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    sock = tmp_path / "file" / "sub" / "s.sock"
    one_line_exit_2(sidecar("run", "--socket", str(sock), "--http-port", "0"), str(sock.parent))


def test_another_process_accepting_on_the_socket(tmp_path: Path, unused_kafka: str) -> None:
    sock = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(sock))
        other.listen()
        args = ["--bootstrap-servers", unused_kafka, "--http-port", "0"]
        one_line_exit_2(sidecar("run", "--socket", str(sock), *args), "accepting")
        assert sock.exists(), "the other process's socket was removed"
