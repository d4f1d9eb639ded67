"""Secured clusters, against a real broker with one listener per security setup
(testbed.secure): records arrive in order through TLS, mTLS, SASL_SSL/SCRAM-SHA-512,
SASL_PLAINTEXT/PLAIN and OAUTHBEARER; each way of getting it wrong is one line from
`check` (exit 1) and, from `run`, a log line and a /readyz reason while it stays up."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import Config
from sidecar.sink.kafka import inspect_topic
from testbed.secure import PASSWORD, USER, SecureBroker, unsecured_jwt
from testbed.topics import create_topic
from tests.helpers import (
    RawClient,
    done,
    make_config,
    open_server,
    start,
    text_delta,
    until_kafka_state,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def secure() -> Iterator[SecureBroker]:
    broker = SecureBroker()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def topic(secure: SecureBroker) -> str:
    return asyncio.run(create_topic(secure.bootstrap_servers, partitions=2))


def secret_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def good(case: str, b: SecureBroker, tmp_path: Path) -> dict[str, Any]:
    tls = {"ssl_ca_file": b.ca_file}
    mtls = {**tls, "ssl_cert_file": b.client_cert, "ssl_key_file": b.client_key}
    scram = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": USER}
    plain = {"sasl_mechanism": "PLAIN", "sasl_username": USER}
    token = secret_file(tmp_path, "token", unsecured_jwt())
    cases: dict[str, dict[str, Any]] = {
        "SSL": {"security_protocol": "SSL", **tls},
        "MTLS": {"security_protocol": "SSL", **mtls},
        "SCRAM": {
            "security_protocol": "SASL_SSL",
            **tls,
            **scram,
            "sasl_password_file": secret_file(tmp_path, "pw", PASSWORD),
        },
        "PLAIN": {"security_protocol": "SASL_PLAINTEXT", **plain, "sasl_password": PASSWORD},
        "OAUTH": {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_file": token,
        },
    }
    return {"bootstrap_servers": b.listener(case), **cases[case]}


# (listener, what changes from the good settings, the reason code, words of the line)
BAD: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "wrong CA": ("SSL", {"ssl_ca_file": "other"}, "tls_verification_failed", "issuer"),
    "expired": ("EXPIRED", {}, "tls_verification_failed", "expired"),
    "wrong host": ("WRONGHOST", {}, "tls_verification_failed", "Hostname mismatch"),
    "no client cert": (
        "MTLS",
        {"ssl_cert_file": None, "ssl_key_file": None},
        "tls_handshake_failed",
        "client certificate",
    ),
    "wrong password": ("SCRAM", {"sasl_password_file": "bad"}, "authentication_failed", "SASL"),
}


def bad(name: str, b: SecureBroker, tmp_path: Path) -> dict[str, Any]:
    listener, change, _, _ = BAD[name]
    base = {"EXPIRED": "SSL", "WRONGHOST": "SSL"}.get(listener, listener)
    settings = good(base, b, tmp_path)
    settings["bootstrap_servers"] = b.listener(listener)
    for key, value in change.items():
        if value == "other":
            value = b.other_ca_file
        elif value == "bad":
            value = secret_file(tmp_path, "bad-pw", "not-the-password")
        if value is None:
            settings.pop(key)
        else:
            settings[key] = value
    return settings


def flags(settings: dict[str, Any]) -> list[str]:
    out = []
    for key, value in settings.items():
        if key == "sasl_password":
            continue  # never a flag: SIDECAR_SASL_PASSWORD
        out += ["--" + key.replace("_", "-"), str(value)]
    return out


def check(settings: dict[str, Any], topic: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if "sasl_password" in settings:
        env["SIDECAR_SASL_PASSWORD"] = settings["sasl_password"]
    args = ["check", "--topic", topic, "--timeout", "15", "--socket", str(tmp_path / "s.sock")]
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args, *flags(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("case", ["SSL", "MTLS", "SCRAM", "PLAIN", "OAUTH"])
async def test_records_arrive_in_order(
    case: str, secure: SecureBroker, topic: str, tmp_path: Path
) -> None:
    settings = good(case, secure, tmp_path)
    result = await asyncio.to_thread(check, settings, topic, tmp_path)
    assert result.returncode == 0, result.stderr
    config = make_config(tmp_path, topic=topic, linger_ms=1, **settings)
    task, msg = f"task-{case}", f"msg-{case}"
    words = [f"{case}-{i} " for i in range(30)]
    async with open_server(config, kafka=True) as server:
        client = await RawClient.connect(config.socket)
        await client.send({"type": "hello", "acks": "all"})
        await client.send(start(task, msg))
        for w in words:
            await client.send(text_delta(task, msg, w))
        await client.send(done(task, msg))
        replies = await client.read_replies(len(words) + 2, timeout=60)
        assert all(r["type"] == "ack" for r in replies), replies
        assert server.readiness()[1]["kafka"] == {
            "reachable": True,
            "last_error": None,
            "configuration_error": False,
            "required": False,
        }
        await client.aclose()
    # Read back through the same secured listener.
    from sidecar.sink.kafka import open_consumer

    got: list[str] = []
    async with open_consumer(
        config.bootstrap_servers, topic, settings=Config(**settings, topic=topic)
    ) as records:
        async with asyncio.timeout(60):
            async for rec in records:
                if rec.key == task.encode():
                    got.append(rec.headers["type"].decode())
                    if got[-1] == "done":
                        break
    assert got[0] == "start" and got[-1] == "done" and set(got[1:-1]) == {"delta"}


@pytest.mark.parametrize("name", list(BAD))
async def test_a_wrong_setting_explains_itself(
    name: str, secure: SecureBroker, topic: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, reason, words = BAD[name]
    settings = bad(name, secure, tmp_path)
    result = await asyncio.to_thread(check, settings, topic, tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert reason in lines[0] and words in lines[0], lines[0]
    # run: stays up, not ready, says why in its log and in /readyz.
    caplog.set_level(logging.INFO, logger="sidecar")
    config = make_config(tmp_path, topic=topic, request_timeout_ms=5000, **settings)
    async with open_server(config, kafka=True) as server:
        await until_kafka_state(server, reason)
        ready, body = server.readiness()
        assert not ready
        assert body["kafka"]["last_error"] == reason  # type: ignore[index]
    said = [r.getMessage() for r in caplog.records if "Kafka unavailable" in r.getMessage()]
    assert len(said) == 1, said  # once, not once per retry
    assert "records" in said[0] and "waiting" in said[0]


async def test_a_missing_topic_fails_readiness_and_is_not_created(
    secure: SecureBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar")
    missing = f"missing-{os.getpid()}"
    settings = good("SSL", secure, tmp_path)
    config = make_config(
        tmp_path, topic=missing, request_timeout_ms=2000, delivery_timeout_ms=5000, **settings
    )
    async with open_server(config, kafka=True) as server:
        await until_kafka_state(server, "topic_missing")
        assert not server.readiness()[0]
    with pytest.raises(Exception, match="topic_missing"):
        await inspect_topic(config)
