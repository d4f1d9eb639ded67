"""`sidecar_client.kafka`: the sidecar's security setting names mapped onto aiokafka's
client arguments, and the task's partition as the producer picks it."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from sidecar.sink.kafka import partition_for as server_partition_for
from sidecar_client.kafka import partition_for, read_task, security_kwargs


def test_plaintext_by_default() -> None:
    assert security_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_scram_with_a_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    got = security_kwargs(
        security_protocol="sasl_ssl",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="ui",
        sasl_password_file=secret,
        ssl_check_hostname=False,
    )
    assert got["security_protocol"] == "SASL_SSL"
    assert (got["sasl_mechanism"], got["sasl_plain_username"]) == ("SCRAM-SHA-512", "ui")
    assert got["sasl_plain_password"] == "s3cret"  # the file's content, newline stripped
    assert isinstance(got["ssl_context"], ssl.SSLContext)
    assert got["ssl_context"].check_hostname is False


async def test_oauthbearer_token_is_reread_from_its_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one")
    got = security_kwargs(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_file=token,
    )
    provider = got["sasl_oauth_token_provider"]
    assert await provider.token() == "one"
    token.write_text("two\n")  # rotated
    assert await provider.token() == "two"
    with pytest.raises(ValueError, match="sasl_oauth_token_file"):
        security_kwargs(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER")


async def test_unknown_options_are_refused_before_connecting() -> None:
    with pytest.raises(TypeError, match="ssl_cafile"):
        await anext(read_task("localhost:1", "t", "task", ssl_cafile="x"))


def test_the_task_partition_is_the_producers() -> None:
    for task in ("a", "task-1", "é", "x" * 300):
        for n in (1, 3, 12):
            assert partition_for(task, n) == server_partition_for(task, n)
