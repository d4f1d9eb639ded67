"""The Kafka sink: the one module of the sidecar that imports aiokafka.

One task feeds one idempotent producer (acks=all) in submission order, so each
partition sees every stream's records in the order the coalescer emitted them; many
tasks calling `send()` would slow down quadratically (aiokafka #528).

aiokafka retries retriable produce errors by itself, with the batch's original
sequence number and forever when idempotent: that covers a broker outage and
NotEnoughReplicas (both tested against real brokers). It does not recover a partition
after OutOfOrderSequenceNumber (aiokafka #1017), and fails a batch whose leader stays
unknown past the request timeout. For what it does surface, the sink waits for what is
in flight to settle, recreates the producer and resends the unacknowledged records in
their order, until `--delivery-timeout-ms` after their submission; only then is a
record reported as `delivery_failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    OutOfOrderSequenceNumber,
)
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from sidecar.config import Config
from sidecar.metrics import Metrics
from sidecar.model import Record
from sidecar.sink.base import SinkBase

log = logging.getLogger("sidecar.sink.kafka")

# Errors after which this producer cannot be trusted to deliver the partition in order.
_RECOVERABLE: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber,
    NotEnoughReplicasError,
    KafkaTimeoutError,
    KafkaConnectionError,
    asyncio.CancelledError,
)
_PARTITION_CACHE_MAX = 100_000


def producer_kwargs(config: Config) -> dict[str, Any]:
    return {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": config.linger_ms,
        "compression_type": config.compression_type,
        "max_batch_size": config.max_batch_bytes,
        "max_request_size": config.max_request_bytes,
        "request_timeout_ms": config.request_timeout_ms,
        "retry_backoff_ms": 100,
    }


class KafkaSink(SinkBase):
    def __init__(self, config: Config, metrics: Metrics) -> None:
        super().__init__(max_pending_bytes=config.max_pending_bytes, metrics=metrics)
        self.config = config
        self.topic = config.topic
        self.kafka_up = False
        self._producer: AIOKafkaProducer | None = None
        self._partitions = 0
        self._partition_of: dict[str, int] = {}
        # Records handed to the producer and not settled yet, in submission order.
        self._inflight: dict[int, tuple[Record, asyncio.Future[Any]]] = {}
        self._resend: list[Record] = []
        self._solo: set[int] = set()  # records to send in a batch of their own

    # -- the loop ----------------------------------------------------------------------

    async def serve(self) -> None:
        """Produce submitted records until cancelled; survives Kafka being away."""
        backoff = 0.1
        try:
            while True:
                if self._resend:
                    await self._recover()
                if self._producer is None:
                    try:
                        await self._start_producer()
                        backoff = 0.1
                    except (KafkaError, OSError) as exc:
                        self._set_down("unreachable", f"cannot reach Kafka: {exc!r}")
                        self._expire_queued()
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                if not self.queue:
                    # Woken by submit(), or by a failure that needs recovery.
                    await self._wait_for_work()
                    continue
                await self._send_all(self._take_queued())
        finally:
            await self._stop_producer()

    async def _send_all(self, batch: list[Record]) -> None:
        producer = self._producer
        assert producer is not None
        for i, record in enumerate(batch):
            if self._resend:
                # A failure is being recovered: keep the rest queued, in order, so
                # nothing overtakes the records that are about to be resent.
                self.queue.extendleft(reversed(batch[i:]))
                return
            if self.withdraw(record):
                continue
            key = record.task_id.encode()
            try:
                fut = await producer.send(
                    self.topic,
                    record.value,
                    key=key,
                    partition=self._partition(record.task_id, key),
                    headers=record.headers(self.instance),
                )
            except KafkaTimeoutError:
                # The producer's buffer stayed full (Kafka away): retry later, in order.
                self.queue.extendleft(reversed(batch[i:]))
                self._set_down("buffer_full", "producer buffer full while Kafka is unavailable")
                self._expire_queued()
                return
            except KafkaError as exc:
                self.failed(record, f"Kafka refused the record: {exc!r}")
                continue
            self._inflight[id(record)] = (record, fut)
            fut.add_done_callback(partial(self._on_done, record))
            if id(record) in self._solo:
                await asyncio.wait([fut])  # nothing joins its batch

    def _on_done(self, record: Record, fut: asyncio.Future[Any]) -> None:
        self._inflight.pop(id(record), None)
        exc: BaseException | None
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is None:
            meta = fut.result()
            self._solo.discard(id(record))
            self.kafka_up = True
            self.delivered(record, meta.partition, meta.offset)
            return
        if isinstance(exc, MessageSizeTooLargeError) and id(record) not in self._solo:
            # The broker refuses a whole batch for one oversized record; like the Java
            # producer's batch split, resend each of its records alone, so only the
            # record that is really too large fails.
            self._solo.add(id(record))
            self._resend.append(record)
            self._wakeup.set()
            return
        self._solo.discard(id(record))
        recoverable = isinstance(exc, _RECOVERABLE) or (
            isinstance(exc, KafkaError) and exc.retriable
        )
        if recoverable and not self._expired(record):
            self._set_down("retrying", f"delivery failed, will resend: {exc!r}")
            self._resend.append(record)
            self._wakeup.set()
            return
        why = "delivery timed out" if recoverable else "Kafka refused the record"
        self.failed(record, f"{why}: {exc!r}")

    async def _recover(self) -> None:
        """Let in-flight records settle, recreate the producer, resend failures in order."""
        self.metrics.producer_recoveries.inc()
        pending = [fut for _, fut in self._inflight.values()]
        if pending:
            await asyncio.wait(pending, timeout=self.config.request_timeout_ms / 1000)
        await self._stop_producer()
        # Pending records are kept in submission order: resend in that order.
        rank = {rid: i for i, rid in enumerate(self._submitted_at)}
        resend = sorted(self._resend, key=lambda r: rank.get(id(r), 0))
        self._resend.clear()
        log.warning("recreating the Kafka producer to resend %d records", len(resend))
        self.queue.extendleft(reversed(resend))

    # -- producer ------------------------------------------------------------------------

    async def _start_producer(self) -> None:
        producer = AIOKafkaProducer(**producer_kwargs(self.config))
        # aiokafka expires a batch whose partition leader stays unknown for one request
        # timeout (a broker restart does that). Resending such a batch through a new
        # producer could duplicate it if an earlier attempt was written, so batches live
        # for the delivery timeout instead, like the Java producer's delivery.timeout.ms.
        accumulator = getattr(producer, "_message_accumulator", None)
        if accumulator is not None and hasattr(accumulator, "_batch_ttl"):
            accumulator._batch_ttl = self.config.delivery_timeout_ms / 1000
        try:
            await producer.start()
            partitions = await producer.partitions_for(self.topic)
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        if not partitions:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise KafkaError(f"topic {self.topic!r} has no partitions (does it exist?)")
        if len(partitions) != self._partitions:
            self._partition_of.clear()
        self._partitions = len(partitions)
        self._producer = producer
        self.kafka_up = True
        self.last_error = None
        log.info("producing to %s (%d partitions)", self.topic, self._partitions)

    async def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.config.request_timeout_ms / 1000)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("Kafka producer did not stop cleanly: %r", exc)

    def _partition(self, task_id: str, key: bytes) -> int:
        # Java-compatible murmur2, as Kafka's default partitioner; computed once per
        # task because the pure-Python hash is a third of send()'s cost.
        p = self._partition_of.get(task_id)
        if p is None:
            if len(self._partition_of) >= _PARTITION_CACHE_MAX:
                self._partition_of.clear()
            p = int(murmur2(key) & 0x7FFFFFFF) % self._partitions
            self._partition_of[task_id] = p
        return p

    # -- bookkeeping ---------------------------------------------------------------------

    def _set_down(self, reason: str, why: str) -> None:
        if self.kafka_up or self.last_error is None:
            log.warning("%s", why)
        self.kafka_up = False
        self.down_reason = reason
        self.last_error = why

    def _expired(self, record: Record) -> bool:
        if record.terminal_reason == "delivery_failed":
            # The marker of a hole never expires: without it the hole would be silent
            # (PROTOCOL §5). One per failed stream; the shutdown deadline bounds it.
            return False
        started = self._submitted_at.get(id(record))
        limit = self.config.delivery_timeout_ms / 1000
        return started is not None and self.clock() - started > limit

    def _expire_queued(self) -> None:
        """Fail queued records past the delivery timeout (oldest first, so order holds)."""
        while self.queue and self._expired(self.queue[0]):
            self.failed(self.queue.popleft(), "delivery timed out: Kafka unavailable")


def partition_for(task_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a task key."""
    return int(murmur2(task_id.encode()) & 0x7FFFFFFF) % partitions


async def probe(config: Config) -> int:
    """Reach Kafka and the topic; returns its partition count or raises KafkaError/OSError."""
    producer = AIOKafkaProducer(**producer_kwargs(config))
    try:
        await producer.start()
        partitions = await producer.partitions_for(config.topic)
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
    if not partitions:
        raise KafkaError(f"topic {config.topic!r} has no partitions")
    return len(partitions)


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


class TopicReader:
    """Records of one topic, read without a consumer group."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self._consumer = consumer
        self.topic = topic

    async def end_offsets(self) -> dict[int, int]:
        """The offset after each partition's last record, as of now."""
        parts = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        ends = await self._consumer.end_offsets(tps)
        return {tp.partition: int(off) for tp, off in ends.items()}

    async def position(self, partition: int) -> int:
        return int(await self._consumer.position(TopicPartition(self.topic, partition)))

    async def poll(self, timeout_ms: int = 500, max_records: int = 10_000) -> list[ConsumedRecord]:
        """One fetch: what arrives within `timeout_ms`, maybe nothing; each partition's
        records in offset order. Between polls, `position()` tells how far each got."""
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            ConsumedRecord(
                partition=msg.partition,
                offset=msg.offset,
                timestamp_ms=msg.timestamp,
                key=msg.key,
                value=msg.value,
                headers=dict(msg.headers or ()),
            )
            for msgs in batches.values()
            for msg in msgs
        ]

    async def records(self, timeout_ms: int = 500) -> AsyncIterator[ConsumedRecord]:
        while True:
            for rec in await self.poll(timeout_ms):
                yield rec

    def __aiter__(self) -> AsyncIterator[ConsumedRecord]:
        return self.records()


@contextlib.asynccontextmanager
async def open_consumer(
    bootstrap_servers: str, topic: str, *, from_beginning: bool = True
) -> AsyncIterator[TopicReader]:
    """Consume a topic without a group (for `sidecar tail`, the benchmark and tests)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        yield TopicReader(consumer, topic)
    finally:
        await consumer.stop()


async def create_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
) -> None:
    """Create a topic (for the demo, the benchmark and tests); an existing one is kept."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        new = NewTopic(topic, partitions, replication_factor, topic_configs=config or {})
        resp = await admin.create_topics([new])
        for t in getattr(resp, "topic_errors", ()):
            code = t[1]
            if code and code != TopicAlreadyExistsError.errno:
                raise KafkaError(f"cannot create topic {topic!r}: error code {code} {t}")
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
