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
from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    OutOfOrderSequenceNumber,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
)
from aiokafka.partitioner import murmur2
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import TopicPartition

from sidecar.config import Config, KafkaSettings
from sidecar.metrics import Metrics
from sidecar.model import Record
from sidecar.security import SecurityFileError, TokenFile, client_security
from sidecar.sink.base import SinkBase
from sidecar.sink.problems import KafkaProblem, KafkaUnusable, Reason, classify_os_error

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


class _TokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER: the token file's current content at each authentication."""

    def __init__(self, file: TokenFile) -> None:
        self._file = file

    async def token(self) -> str:
        return self._file.read()


def security_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """The aiokafka client arguments for reaching the brokers (TLS, SASL), built by
    sidecar.security; raises StartupError if a file named by the settings is unusable."""
    sec = client_security(settings)
    kwargs: dict[str, Any] = {"security_protocol": sec.security_protocol}
    if sec.ssl_context is not None:
        kwargs["ssl_context"] = sec.ssl_context
    if sec.sasl_mechanism is not None:
        kwargs["sasl_mechanism"] = sec.sasl_mechanism
    if sec.token_file is not None:
        kwargs["sasl_oauth_token_provider"] = _TokenProvider(sec.token_file)
    elif sec.sasl_mechanism is not None:
        kwargs["sasl_plain_username"] = sec.sasl_username
        kwargs["sasl_plain_password"] = sec.sasl_password
    return kwargs


def classify(exc: BaseException, where: str) -> KafkaProblem:
    """What a failure to use Kafka means, as a reason code and one line."""
    if isinstance(exc, KafkaUnusable):
        return exc.problem
    if isinstance(exc, SecurityFileError):
        return KafkaProblem(Reason.SECURITY_FILE, str(exc))
    if isinstance(
        exc, SaslAuthenticationFailed | AuthenticationFailedError | IllegalSaslStateError
    ):
        return KafkaProblem(
            Reason.AUTHENTICATION_FAILED,
            f"{where}: SASL authentication failed: {_kafka_message(exc)} "
            "(see --sasl-mechanism, --sasl-username and the password)",
        )
    if isinstance(exc, UnsupportedSaslMechanismError | AuthenticationMethodNotSupported):
        return KafkaProblem(
            Reason.AUTHENTICATION_FAILED,
            f"{where}: the broker does not offer this --sasl-mechanism: {_kafka_message(exc)}",
        )
    if isinstance(exc, TopicAuthorizationFailedError):
        return KafkaProblem(Reason.AUTHORIZATION_FAILED, f"{where}: not allowed to use the topic")
    if isinstance(exc, UnknownTopicOrPartitionError):
        return KafkaProblem(Reason.TOPIC_MISSING, f"{where}: the topic does not exist")
    if isinstance(exc, InvalidTopicError):
        return KafkaProblem(Reason.TOPIC_INVALID, f"{where}: the broker refuses the topic name")
    if isinstance(exc, KafkaConnectionError):
        # aiokafka reports a connection closed during the TLS or SASL handshake this way.
        return KafkaProblem(Reason.UNREACHABLE, f"{where}: {_kafka_message(exc)}")
    if isinstance(exc, KafkaError):
        return KafkaProblem(Reason.KAFKA_ERROR, f"{where}: {_kafka_message(exc)}")
    return classify_os_error(exc, where)


def _kafka_message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# Metadata error codes for a topic (Kafka's protocol): what they mean here.
_TOPIC_ERRORS = {
    3: Reason.TOPIC_MISSING,
    17: Reason.TOPIC_INVALID,
    29: Reason.AUTHORIZATION_FAILED,
}


async def inspect_topic(settings: KafkaSettings, timeout: float = 10.0) -> int:
    """Reach the brokers as configured and look the topic up WITHOUT creating it (a
    Metadata request with auto-creation off); returns its partition count or raises
    KafkaUnusable with the first problem that explains why not."""
    kwargs = security_kwargs(settings)
    problem: KafkaProblem | None = None
    for address in settings.bootstrap_servers.split(","):
        host, _, port = address.rpartition(":")
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that meets the connection's completion.
            async with asyncio.timeout(timeout):
                conn = await create_conn(
                    host.strip("[]"),
                    int(port),
                    client_id=settings.client_id,
                    request_timeout_ms=int(timeout * 1000),
                    **kwargs,
                )
        except (OSError, KafkaError, TimeoutError, ValueError) as exc:
            problem = classify(exc, address)
            if not problem.heals:
                break  # the same configuration fails on every broker
            continue
        try:
            request = MetadataRequest([settings.topic], allow_auto_topic_creation=False)
            async with asyncio.timeout(timeout):
                response = await conn.send(request)
        except (OSError, KafkaError, TimeoutError) as exc:
            problem = classify(exc, address)
            continue
        finally:
            conn.close()
        for entry in response.topics:
            code, partitions = entry[0], entry[-1]
            if code == 0 and partitions:
                return len(partitions)
            reason = _TOPIC_ERRORS.get(code, Reason.KAFKA_ERROR)
            detail = {
                Reason.TOPIC_MISSING: "does not exist (and nothing here creates it)",
                Reason.TOPIC_INVALID: "is not a valid topic name",
                Reason.AUTHORIZATION_FAILED: "may not be used by this client (ACLs)",
            }.get(reason, f"is not usable now (Kafka error code {code})")
            raise KafkaUnusable(KafkaProblem(reason, f"topic {settings.topic!r} {detail}"))
    assert problem is not None
    raise KafkaUnusable(problem)


def producer_kwargs(config: Config) -> dict[str, Any]:
    return {
        **security_kwargs(config),
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
                        self._set_down(await self.diagnose(exc))
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
            key = record.task_id.encode()
            try:
                fut = await producer.send(
                    self.topic,
                    record.value,
                    key=key,
                    partition=self._partition(record.task_id, key),
                    headers=record.headers(),
                )
            except KafkaTimeoutError:
                # The producer's buffer stayed full (Kafka away): retry later, in order.
                self.queue.extendleft(reversed(batch[i:]))
                self._set_down(
                    KafkaProblem(Reason.UNREACHABLE, "producer buffer full: Kafka is not taking")
                )
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
            self._set_down(classify(exc, "delivery, will resend"))
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
        self.problem = None
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

    def _set_down(self, problem: KafkaProblem) -> None:
        # Logged by the server's watch on reachability, once per change.
        self.kafka_up = False
        self.problem = problem

    async def diagnose(self, exc: BaseException) -> KafkaProblem:
        """Why the producer could not start: aiokafka's bootstrap says only "Unable to
        bootstrap" and a missing topic only times out, so one connection of our own, as
        configured, finds the reason."""
        timeout = min(self.config.request_timeout_ms / 1000, 10.0)
        try:
            await inspect_topic(self.config, timeout)
            found: BaseException = exc
        except (KafkaUnusable, OSError) as problem:
            found = problem
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # A cancellation aiokafka swallowed on the way (the sink is being stopped).
            raise asyncio.CancelledError
        return classify(found, self.config.bootstrap_servers)

    def _expired(self, record: Record) -> bool:
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
    bootstrap_servers: str,
    topic: str,
    *,
    from_beginning: bool = True,
    settings: KafkaSettings | None = None,
) -> AsyncIterator[TopicReader]:
    """Consume a topic without a group (for `sidecar tail`, the benchmark and tests);
    `settings` give the security options (default: PLAINTEXT)."""
    consumer = AIOKafkaConsumer(
        topic,
        **(security_kwargs(settings) if settings is not None else {}),
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
    settings: KafkaSettings | None = None,
) -> None:
    """Create a topic (for the demo, the benchmark and tests); an existing one is kept."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    security = security_kwargs(settings) if settings is not None else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security)
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
