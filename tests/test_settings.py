"""The settings model (sidecar.config) and the options derived from it (sidecar.options)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sidecar.cli import app
from sidecar.config import Config, TailSettings, env_of, flag_of
from sidecar.errors import ErrorCode, ExitCode, Rejection, StartupError
from sidecar.options import SettingsError, cli_fields, load_settings
from sidecar.transform.table import StreamRejected
from sidecar_client.protocol import FrameError, decode_frame

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def help_of(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env=WIDE, terminal_width=250)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("command", "model"), [("run", Config), ("check", Config), ("tail", TailSettings)]
)
def test_every_field_is_a_flag_with_its_variable(command: str, model: type[Config]) -> None:
    out = help_of(command)
    for name in cli_fields(model):
        assert flag_of(name) in out, name
        assert env_of(name) in out, name


def test_help_texts_are_whole_sentences_with_units() -> None:
    for name, field in Config.model_fields.items():
        text = field.description or ""
        assert text[:1].isupper() and text.endswith("."), (name, text)
        if name.endswith("_ms"):
            assert "milliseconds" in text, name
        elif name.endswith("_bytes"):
            assert "bytes" in text.lower(), name
        elif name.endswith(("_timeout", "_ttl")):
            assert "seconds" in text, name


def test_flag_wins_over_environment_which_wins_over_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings(Config).flush_interval_ms == 50
    monkeypatch.setenv("SIDECAR_FLUSH_INTERVAL_MS", "20")
    monkeypatch.setenv("SIDECAR_SOCKET_MODE", "0600")
    assert load_settings(Config).flush_interval_ms == 20
    assert load_settings(Config).socket_mode == 0o600
    assert load_settings(Config, {"flush_interval_ms": 7}).flush_interval_ms == 7


def test_an_error_names_the_flag_and_the_variable_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIDECAR_HTTP_PORT", "70000")
    with pytest.raises(SettingsError) as info:
        load_settings(Config)
    assert str(info.value).startswith("--http-port (from SIDECAR_HTTP_PORT): ")
    with pytest.raises(SettingsError, match=r"^--socket-mode: '99' is not an octal"):
        load_settings(Config, {"socket_mode": "99", "http_port": 1})


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--delivery-timeout-ms", "1000"], ["--delivery-timeout-ms", "--request-timeout-ms"]),
        (["--max-batch-bytes", "4000000"], ["--max-batch-bytes", "--max-request-bytes"]),
        (["--max-frame-bytes", "4000000"], ["--max-frame-bytes", "--max-request-bytes"]),
        (["--topic", "no spaces"], ["--topic", "not a valid Kafka topic name"]),
    ],
)
@pytest.mark.parametrize("command", ["run", "check"])
def test_a_bad_combination_is_one_line_and_exit_2(
    command: str, args: list[str], names: list[str], tmp_path: Path
) -> None:
    sock = tmp_path / "s.sock"
    result = runner.invoke(app, [command, "--socket", str(sock), *args])
    assert result.exit_code == ExitCode.USAGE
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for name in names:
        assert name in lines[0]
    assert "Traceback" not in result.output
    assert not sock.exists()


def test_one_error_family() -> None:
    assert {c.value for c in ErrorCode} >= {"stream_owned", "invalid_json", "shutting_down"}
    with pytest.raises(FrameError) as info:
        decode_frame(b"nope")
    assert isinstance(info.value, Rejection)
    assert info.value.code is ErrorCode.INVALID_JSON
    assert issubclass(StreamRejected, Rejection)
    assert issubclass(SettingsError, StartupError)
    assert [int(c) for c in ExitCode] == [0, 1, 2]
