"""Reading a task's stream back from Kafka (extra `sidecar-client[kafka]`): what
`SidecarStreamRepository.subscribe` runs, and what an SSE gateway or a consumer can use
directly. The only module of this distribution that imports aiokafka.

A task's records are all on one partition, the one the producer's partitioner picks for
the key `task_id` (Kafka's murmur2 default, PROTOCOL §5), so a task is read by assigning
that one partition, without a consumer group, and keeping the records whose key is the
task: no other task's traffic is decoded.

Security settings take the sidecar's names (PROTOCOL §7) as keyword arguments:
`security_protocol`, `ssl_ca_file`, `ssl_cert_file`, `ssl_key_file`,
`ssl_key_password_file`, `ssl_check_hostname`, `sasl_mechanism`, `sasl_username`,
`sasl_password` (or `sasl_password_file`), `sasl_oauth_token_file`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

SECURITY_OPTIONS = frozenset(
    {
        "security_protocol",
        "ssl_ca_file",
        "ssl_cert_file",
        "ssl_key_file",
        "ssl_key_password_file",
        "ssl_check_hostname",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "sasl_password_file",
        "sasl_oauth_token_file",
    }
)


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record of a task, as consumed (fits `sidecar_client.reassemble`)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def position(self) -> str:
        """`"partition:offset"`: what `SidecarStreamRepository.send_event` returns for a
        terminal, and what `subscribe(last_id=...)` resumes after."""
        return f"{self.partition}:{self.offset}"


def partition_for(task_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (and so the sidecar) picks for a task."""
    return int(murmur2(task_id.encode()) & 0x7FFFFFFF) % partitions


class _FileToken(AbstractTokenProvider):  # type: ignore[misc]
    """An OAUTHBEARER token re-read from its file, so a rotated token is picked up."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    async def token(self) -> str:
        return self._path.read_text().strip()


def _read(path: str | Path | None) -> str | None:
    return None if path is None else Path(path).read_text().strip()


def security_kwargs(
    *,
    security_protocol: str = "PLAINTEXT",
    ssl_ca_file: str | Path | None = None,
    ssl_cert_file: str | Path | None = None,
    ssl_key_file: str | Path | None = None,
    ssl_key_password_file: str | Path | None = None,
    ssl_check_hostname: bool = True,
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    sasl_password_file: str | Path | None = None,
    sasl_oauth_token_file: str | Path | None = None,
) -> dict[str, Any]:
    """aiokafka client arguments for the sidecar's security settings."""
    protocol = security_protocol.upper()
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=ssl_ca_file,
            certfile=ssl_cert_file,
            keyfile=ssl_key_file,
            password=_read(ssl_key_password_file),
        )
        context.check_hostname = ssl_check_hostname
        out["ssl_context"] = context
    if protocol.startswith("SASL_"):
        mechanism = (sasl_mechanism or "PLAIN").upper()
        out["sasl_mechanism"] = mechanism
        if mechanism == "OAUTHBEARER":
            if sasl_oauth_token_file is None:
                raise ValueError("sasl_mechanism OAUTHBEARER needs sasl_oauth_token_file")
            out["sasl_oauth_token_provider"] = _FileToken(sasl_oauth_token_file)
        else:
            password = sasl_password
            if password is None:
                password = _read(sasl_password_file) or os.environ.get("SIDECAR_SASL_PASSWORD")
            out["sasl_plain_username"] = sasl_username
            out["sasl_plain_password"] = password
    return out


async def read_task(
    bootstrap_servers: str,
    topic: str,
    task_id: str,
    last_id: str = "$",
    *,
    poll_timeout_ms: int = 500,
    **security: Any,
) -> AsyncIterator[StreamRecord]:
    """The task's records in order, forever (cancel to stop): `last_id` `"$"` from now,
    `"0"` from the start of the partition, `"P:O"` after offset O of partition P."""
    unknown = set(security) - SECURITY_OPTIONS
    if unknown:
        raise TypeError(f"unknown Kafka option(s): {', '.join(sorted(unknown))}")
    consumer = AIOKafkaConsumer(
        topic,  # subscribed first only to learn its partitions; see _assign
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        **security_kwargs(**security),
    )
    await consumer.start()
    try:
        tp = await _assign(consumer, topic, task_id, last_id)
        key = task_id.encode()
        while True:
            batches = await consumer.getmany(tp, timeout_ms=poll_timeout_ms)
            for msg in batches.get(tp, ()):
                if msg.key == key:
                    yield StreamRecord(
                        msg.partition, msg.offset, msg.key, msg.value, dict(msg.headers or ())
                    )
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


async def _assign(
    consumer: AIOKafkaConsumer, topic: str, task_id: str, last_id: str
) -> TopicPartition:
    # The subscription made start() fetch the topic's metadata; then only the task's
    # partition is kept.
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise ValueError(f"topic {topic!r} does not exist or has no partitions")
    tp = TopicPartition(topic, partition_for(task_id, len(parts)))
    consumer.unsubscribe()
    consumer.assign([tp])
    if last_id == "$":
        await consumer.seek_to_end(tp)
        await consumer.position(tp)  # fix "now" before the first record is produced
    elif last_id in ("0", "0-0"):
        await consumer.seek_to_beginning(tp)
    else:
        partition, _, offset = last_id.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise ValueError(f'last_id must be "$", "0" or "partition:offset", not {last_id!r}')
        if int(partition) != tp.partition:
            raise ValueError(
                f"last_id {last_id!r} names partition {partition}, but task {task_id!r} is "
                f"on partition {tp.partition} of {topic!r}"
            )
        consumer.seek(tp, int(offset) + 1)
    return tp
