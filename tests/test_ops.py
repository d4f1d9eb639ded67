"""The operations endpoint (PROTOCOL §8): /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import orjson
import pytest

from sidecar.sink.memory import MemorySink
from sidecar.sink.problems import KafkaProblem, Reason
from tests.helpers import RawClient, done, make_config, open_server, start, text_delta


async def get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_metrics_health_and_readiness(tmp_path: Path) -> None:
    sink = MemorySink()
    config = make_config(tmp_path, http_host="127.0.0.1", http_port=free_port())
    async with open_server(config, sink) as server:
        assert server.http_port is not None
        port = server.http_port
        assert (await get(port, "/healthz"))[0] == 200
        status, body = await get(port, "/readyz")
        assert status == 200
        ready = orjson.loads(body)
        assert ready["ready"] is True
        assert ready["kafka"]["reachable"] is True
        c = await RawClient.connect(config.socket)
        await c.send({"type": "hello", "acks": "terminal"}, start("t", "m"))
        await c.send(*(text_delta("t", "m", "x") for _ in range(5)), b"junk\n", done("t", "m"))
        await c.read_replies(2)
        status, body = await get(port, "/metrics")
        assert status == 200
        text = body.decode()
        for needle in [
            'sidecar_frames_received_total{type="delta"} 5.0',
            'sidecar_frames_received_total{type="invalid"} 1.0',
            'sidecar_errors_total{code="invalid_json"} 1.0',
            'sidecar_records_produced_total{type="done"} 1.0',
            "sidecar_deltas_per_record_count",
            "sidecar_open_streams 0.0",
            "sidecar_pending_bytes 0.0",
            "sidecar_first_delta_latency_seconds_count 1.0",
            "sidecar_kafka_delivery_latency_seconds_count",
            "sidecar_replies_dropped_total 0.0",
            'sidecar_streams_ended_total{reason="client"} 1.0',
        ]:
            assert needle in text, needle
        assert (await get(port, "/nope"))[0] == 404
        # Draining: not ready any more.
        sink.hold.set()
        await c.send(start("t", "m2"))
        stopping = asyncio.create_task(server.shutdown())
        await asyncio.sleep(0)
        status, body = await get(port, "/readyz")
        assert status == 503
        assert orjson.loads(body)["draining"] is True
        sink.release()
        assert await stopping == 0


@pytest.mark.parametrize("require", [False, True])
async def test_kafka_outage_fails_readiness_only_when_required(
    tmp_path: Path, require: bool
) -> None:
    sink = MemorySink()
    sink.kafka_up = False
    sink.problem = KafkaProblem(Reason.UNREACHABLE, "localhost:9092: Connection refused")
    config = make_config(
        tmp_path, http_host="127.0.0.1", http_port=free_port(), require_kafka=require
    )
    async with open_server(config, sink) as server:
        assert server.http_port is not None
        status, body = await get(server.http_port, "/readyz")
        assert status == (503 if require else 200)
        # A reason code, never Kafka's raw error text (issue 10, failure 6) ...
        assert orjson.loads(body)["kafka"] == {
            "reachable": False,
            "last_error": "unreachable",  # a reason code, not the raw text (PROTOCOL §8)
            "configuration_error": False,
            "required": require,
        }
        assert b"Connection refused" not in body
        # ... unless asked for.
        _, body = await get(server.http_port, "/readyz?verbose=1")
        assert orjson.loads(body)["kafka_error"] == "localhost:9092: Connection refused"


# -- issue 10, failure 6: loopback by default, bounded requests, no tracebacks -------------


def test_ops_endpoint_binds_loopback_by_default() -> None:
    from sidecar.config import Config

    assert Config().http_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /readyz HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /readyz HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n", 431),
        (b"NONSENSE\r\n\r\n", 400),
        (b"\xff\xfe /x y\r\n\r\n", 405),
    ],
)
async def test_bad_requests_get_an_answer_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, request_bytes: bytes, status: int
) -> None:
    config = make_config(tmp_path, http_host="127.0.0.1", http_port=free_port())
    async with open_server(config) as server:
        assert server.http_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        writer.write(request_bytes)
        with contextlib.suppress(ConnectionResetError):
            await writer.drain()
        head = await reader.readline()
        writer.close()
        assert head.split()[1] == str(status).encode(), head
        # The endpoint still serves.
        assert (await get(server.http_port, "/healthz"))[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in caplog.text
