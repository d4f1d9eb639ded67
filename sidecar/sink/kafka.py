"""The Kafka sink: the one module of the sidecar that imports aiokafka.

The sink is split the way aiokafka splits its producer: the outbox (`SinkBase`) takes
records in submission order and accounts for them; the sender here builds each
partition's record batch itself and hands whole batches to one idempotent producer
(acks=all) with `send_batch`. A record costs one `append` to its partition's open batch
at submit time (so its CreateTime is when the sidecar produced it), not a `send()` with
its futures and tasks.

Each partition is a *lane*: the open batch records are appended to, closed batches
waiting their turn, and at most one batch in flight. A lane hands its next batch to the
producer only when the previous one is settled, so a partition's records reach Kafka in
submission order, and a failed batch is always the oldest of its lane: it goes back to
the lane's front, ahead of everything that followed it. The sender hands over every
ready lane in the same step, once per `--linger-ms` tick, so one broker gets one produce
request for all its partitions instead of one per partition.

The linger is the sink's alone: the producer gets `linger_ms=0`, or it would make every
batch handed over wait a second linger of its own. Records someone waits for (a stream's
first delta, a terminal: `Record.urgent`) do not linger: their lane goes at once, or as
soon as Kafka acknowledges its batch in flight, with every other lane ready then.

aiokafka retries retriable produce errors by itself, with the batch's original sequence
number and forever when idempotent: that covers a broker outage and NotEnoughReplicas
(both tested against real brokers). It does not recover a partition after
OutOfOrderSequenceNumber (aiokafka #1017), and fails a batch whose leader stays unknown
past the request timeout. For what it does surface, the sink waits for what is in flight
to settle, recreates the producer and resends the unacknowledged batches, in order,
until `--delivery-timeout-ms` after each record's submission; only then is a record
reported as `delivery_failed`. A batch the broker refuses as too large is split: each of
its records is resent in a batch of its own, so only a record that is really too large
fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
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
from aiokafka.producer.message_accumulator import BatchBuilder
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
# task id -> (partition, key bytes): the pure-Python murmur2 is a third of a record's
# cost. Bounded in bytes (ids are client input), cleared when full.
_PARTITION_CACHE_BYTES = 4 << 20
_PARTITION_ENTRY_OVERHEAD = 200  # dict slot, the tuple, the key's bytes object
# A record batch's header plus a record's own framing and its fixed headers, at most.
_RECORD_OVERHEAD = 61 + 21 + 64


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
            if _client_cert_wanted(settings, exc):
                problem = KafkaProblem(
                    Reason.TLS_HANDSHAKE_FAILED,
                    f"{address}: the broker closed the TLS connection at once: it requires "
                    "a client certificate (--ssl-cert-file/--ssl-key-file)",
                )
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


def _client_cert_wanted(settings: KafkaSettings, exc: BaseException) -> bool:
    """With TLS 1.3 a broker that requires a client certificate completes the handshake
    and then closes the connection: the client sees only "Connection ... closed" on its
    first request. Without a certificate configured, that is the likely reason."""
    return (
        isinstance(exc, KafkaConnectionError)
        and "closed" in str(exc)
        and settings.security_protocol in ("SSL", "SASL_SSL")
        and settings.ssl_cert_file is None
    )


def producer_kwargs(config: Config) -> dict[str, Any]:
    return {
        **security_kwargs(config),
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "enable_idempotence": True,
        "acks": "all",
        # The sink lingers itself (_linger_from); a batch it hands over goes at once.
        "linger_ms": 0,
        "compression_type": config.compression_type,
        "max_batch_size": config.max_batch_bytes,
        "max_request_size": config.max_request_bytes,
        "request_timeout_ms": config.request_timeout_ms,
        "retry_backoff_ms": 100,
    }


Batch = tuple[BatchBuilder, list[Record]]


class _Lane:
    """One partition's records on their way: the open batch, closed batches waiting, and
    the one batch Kafka has now (`inflight`, with its future)."""

    __slots__ = ("builder", "future", "inflight", "number", "ready", "records", "sink", "urgent")

    def __init__(self, sink: KafkaSink, number: int) -> None:
        self.sink = sink
        self.number = number
        self.builder: BatchBuilder | None = None
        self.records: list[Record] = []
        self.ready: deque[Batch] = deque()
        self.inflight: list[Record] | None = None
        self.future: asyncio.Future[Any] | None = None
        self.urgent = False  # an urgent record waits (Record.urgent): no linger for it

    def append(self, record: Record, key: bytes) -> int:
        """Add a record behind the lane's others; returns the bytes its batch copy takes."""
        headers = record.headers(self.sink.instance)
        if record.urgent:
            self.urgent = True
        if record.solo:
            self._close()
            builder = self.sink.new_builder()
            meta = builder.append(timestamp=None, key=key, value=record.value, headers=headers)
            self.ready.append((builder, [record]))
            return int(meta.size)
        builder = self.builder
        if builder is None:
            builder = self.builder = self.sink.new_builder()
        meta = builder.append(timestamp=None, key=key, value=record.value, headers=headers)
        if meta is None:  # full: it waits its turn closed, the record opens the next one
            self._close()
            builder = self.builder = self.sink.new_builder()
            meta = builder.append(timestamp=None, key=key, value=record.value, headers=headers)
        self.records.append(record)
        return int(meta.size)

    def _close(self) -> None:
        if self.builder is not None:
            self.ready.append((self.builder, self.records))
            self.builder, self.records = None, []

    def take(self) -> Batch | None:
        """The next batch to send, oldest first (None: nothing waiting)."""
        if not self.ready:
            self._close()
        if not self.ready:
            return None
        batch = self.ready.popleft()
        if not self.ready:
            self.urgent = False  # nothing waits any more (the open batch was just closed)
        return batch

    @property
    def has_waiting(self) -> bool:
        return bool(self.ready or self.records)

    def oldest(self) -> Record | None:
        """The first record not yet handed to the producer."""
        if self.ready:
            return self.ready[0][1][0]
        return self.records[0] if self.records else None

    def waiting(self) -> list[Record]:
        """Every record not yet handed to the producer, in order; empties the lane."""
        out = [r for _, records in self.ready for r in records]
        out += self.records
        self.ready.clear()
        self.builder, self.records = None, []
        self.urgent = False
        return out

    def requeue(self, front: list[Record]) -> None:
        """Put `front` (a settled-as-failed batch) back ahead of everything waiting."""
        rest = self.waiting()
        for record in front + rest:
            self.append(record, self.sink.key_of(record.task_id)[1])


class KafkaSink(SinkBase):
    def __init__(self, config: Config, metrics: Metrics) -> None:
        super().__init__(max_pending_bytes=config.max_pending_bytes, metrics=metrics)
        self.config = config
        self.topic = config.topic
        self.kafka_up = False
        self._producer: AIOKafkaProducer | None = None
        self._lanes: list[_Lane] = []  # one per partition, once the topic is known
        self._keys: dict[str, tuple[int, bytes]] = {}
        self._keys_bytes = 0
        self._compression = (
            AIOKafkaProducer._COMPRESSORS[config.compression][1] if config.compression_type else 0
        )
        self._linger = config.linger_ms / 1000
        self._tick: asyncio.TimerHandle | None = None
        self._recovering = False
        self._refused: list[Record] = []  # larger than a request may be: failed by serve()
        self._delivery_timeout = config.delivery_timeout_ms / 1000

    @property
    def cache_bytes(self) -> int:
        return self._keys_bytes

    # -- intake ------------------------------------------------------------------------

    def _accept(self, record: Record) -> int:
        if not self._lanes:
            # The topic's partitions are not known yet (Kafka away since start-up).
            self.queue.append(record)
            self._wakeup.set()
            return len(record.value) + len(record.task_id)
        partition, key = self.key_of(record.task_id)
        # The batch overhead and the headers (type, seq, reason) besides the message id.
        size = len(record.value) + len(key) + len(record.message_id) + _RECORD_OVERHEAD
        if size > self.config.max_request_bytes:
            self._refused.append(record)
            self._wakeup.set()
            return 0
        record.partition = partition
        lane = self._lanes[partition]
        copied = lane.append(record, key)
        if lane.urgent and lane.inflight is None:
            self._wakeup.set()  # it goes now (or when the lane's batch in flight settles)
        elif self._tick is None:
            self._linger_from(record.submitted_at)
        return copied

    def _on_tick(self) -> None:
        self._tick = None
        self._wakeup.set()

    def _linger_from(self, since: float) -> None:
        """Records wait in an open batch since `since`: they go out (every ready lane at
        once) when that first one has lingered `--linger-ms`, with whatever joined it by
        then. Also when a lane is freed by Kafka's acknowledgement with records waiting:
        sending those at once would make every partition a stream of tiny batches paced
        by the broker's round trip, and a batch costs far more than a record to send."""
        if self._tick is not None:
            return  # the armed tick sends it (it was armed at most a linger ago)
        delay = since + self._linger - self.clock()
        if delay <= 0:
            self._wakeup.set()
        else:
            self._tick = asyncio.get_running_loop().call_later(delay, self._on_tick)

    def new_builder(self) -> BatchBuilder:
        return BatchBuilder(self.config.max_batch_bytes, self._compression)

    def key_of(self, task_id: str) -> tuple[int, bytes]:
        """The partition Kafka's default partitioner picks for a task, and its key."""
        hit = self._keys.get(task_id)
        if hit is None:
            key = task_id.encode()
            hit = (partition_for(task_id, len(self._lanes)), key)  # once per task: cached
            cost = len(key) * 2 + _PARTITION_ENTRY_OVERHEAD
            if self._keys_bytes + cost > _PARTITION_CACHE_BYTES:
                self._keys.clear()
                self._keys_bytes = 0
            self._keys[task_id] = hit
            self._keys_bytes += cost
        return hit

    # -- the sender ----------------------------------------------------------------------

    async def serve(self) -> None:
        """Produce submitted records until cancelled; survives Kafka being away."""
        backoff = 0.1
        try:
            while True:
                self._wakeup.clear()
                if self._recovering:
                    await self._recover()
                if self._producer is None:
                    try:
                        await self._start_producer()
                        backoff = 0.1
                    except (KafkaError, OSError) as exc:
                        self._set_down(await self.diagnose(exc))
                        self._expire_waiting()
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                self._fail_refused()
                if self.sweep_needed:
                    self._sweep_withdrawn()
                if not await self._dispatch():
                    await asyncio.sleep(backoff)  # metadata unavailable: Kafka away
                    backoff = min(backoff * 2, 5.0)
                    continue
                # Woken by a tick, a settled batch, or a failure that needs recovery.
                await self._wakeup.wait()
        finally:
            if self._tick is not None:
                self._tick.cancel()
                self._tick = None
            await self._stop_producer()

    async def _dispatch(self) -> bool:
        """Hand every free lane's next batch to the producer in one step (so they share a
        request). False if the producer could not take them (Kafka away)."""
        producer = self._producer
        assert producer is not None
        for lane in self._lanes:
            if lane.inflight is not None or self._recovering:
                continue
            batch = lane.take()
            if batch is None:
                continue
            builder, records = batch
            lane.inflight = records
            try:
                fut = await producer.send_batch(builder, self.topic, partition=lane.number)
            except KafkaTimeoutError:
                # No metadata within the request timeout: Kafka is away. Keep the batch.
                lane.inflight = None
                lane.requeue(records)
                self._set_down(
                    KafkaProblem(Reason.UNREACHABLE, "no metadata for the topic within the timeout")
                )
                self._expire_waiting()
                return False
            lane.future = fut
            fut.add_done_callback(partial(self._on_batch_done, lane, records))
        return True

    def _on_batch_done(self, lane: _Lane, records: list[Record], fut: asyncio.Future[Any]) -> None:
        if lane.inflight is not records:
            return  # given up on at a producer stop, and requeued already
        lane.inflight = lane.future = None
        if self._refused or lane.ready or lane.urgent:
            self._wakeup.set()  # a full batch, an urgent record or a refusal: no linger
        elif lane.records:
            self._linger_from(lane.records[0].submitted_at)
        exc: BaseException | None
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is None:
            self.kafka_up = True
            for record in records:
                record.solo = False
            self.delivered_batch(records, lane.number, fut.result().offset)
            return
        if isinstance(exc, MessageSizeTooLargeError) and (len(records) > 1 or not records[0].solo):
            # The broker refuses a whole batch for one oversized record; like the Java
            # producer's batch split, resend each of its records alone, so only the
            # record that is really too large fails.
            for record in records:
                record.solo = True
            lane.requeue(records)
            self._wakeup.set()
            return
        recoverable = isinstance(exc, _RECOVERABLE) or (
            isinstance(exc, KafkaError) and exc.retriable
        )
        if not recoverable:
            for record in records:
                self.failed(record, f"Kafka refused the record: {exc!r}")
            return
        keep = []
        for record in records:
            if self.expired(record, self._delivery_timeout):
                self.failed(record, f"delivery timed out: {exc!r}")
            else:
                keep.append(record)
        if keep:
            self._set_down(classify(exc, "delivery, will resend"))
            lane.requeue(keep)
            self._recovering = True
            self._wakeup.set()

    async def _recover(self) -> None:
        """Let in-flight batches settle, recreate the producer, resend failures in order."""
        self.metrics.producer_recoveries += 1
        pending = [lane.future for lane in self._lanes if lane.future is not None]
        if pending:
            await asyncio.wait(pending, timeout=self.config.request_timeout_ms / 1000)
        await self._stop_producer()
        for lane in self._lanes:  # batches the old producer never settled
            records = lane.inflight
            if records is not None:
                lane.inflight = lane.future = None
                lane.requeue(records)
        self._recovering = False
        log.warning("recreating the Kafka producer to resend %d records", self.pending_records)

    def _fail_refused(self) -> None:
        refused, self._refused = self._refused, []
        limit = self.config.max_request_bytes
        for record in refused:
            why = f"the record is larger than --max-request-bytes {limit}"
            self.failed(record, f"Kafka refused the record: {why}")

    # -- producer ------------------------------------------------------------------------

    async def _start_producer(self) -> None:
        producer = AIOKafkaProducer(**producer_kwargs(self.config))
        # aiokafka expires a batch whose partition leader stays unknown for one request
        # timeout (a broker restart does that). Resending such a batch through a new
        # producer could duplicate it if an earlier attempt was written, so batches live
        # for the delivery timeout instead, like the Java producer's delivery.timeout.ms.
        accumulator = getattr(producer, "_message_accumulator", None)
        if accumulator is not None and hasattr(accumulator, "_batch_ttl"):
            accumulator._batch_ttl = self._delivery_timeout
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
        if len(partitions) != len(self._lanes):
            self._route_anew(len(partitions))
        self._producer = producer
        self.kafka_up = True
        self.problem = None
        log.info("producing to %s (%d partitions)", self.topic, len(self._lanes))

    def _route_anew(self, partitions: int) -> None:
        """(Re)build the lanes for a partition count; what waits is routed again, in
        submission order. Nothing is in flight here: no producer is running."""
        waiting = [r for lane in self._lanes for r in lane.waiting()]
        waiting += self.queue
        self.queue.clear()
        order = {id(r): i for i, r in enumerate(self._pending.values())}
        waiting.sort(key=lambda r: order.get(id(r), 0))
        self._lanes = [_Lane(self, p) for p in range(partitions)]
        self._keys.clear()
        self._keys_bytes = 0
        for record in waiting:
            partition, key = self.key_of(record.task_id)
            record.partition = partition
            self._lanes[partition].append(record, key)

    async def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.config.request_timeout_ms / 1000)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("Kafka producer did not stop cleanly: %r", exc)

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

    def _sweep_withdrawn(self) -> None:
        """Withdraw the waiting records of streams that ended at a failed record (no
        silent holes, PROTOCOL §5); what is in flight cannot be recalled."""
        self.sweep_needed = False
        if self.queue:
            kept = [r for r in self.queue if not self.withdraw(r)]
            self.queue.clear()
            self.queue.extend(kept)
        for lane in self._lanes:
            if lane.has_waiting:
                lane.requeue([r for r in lane.waiting() if not self.withdraw(r)])

    def _expire_waiting(self) -> None:
        """Fail waiting records past the delivery timeout (each lane's oldest first, so
        order holds)."""
        limit = self._delivery_timeout
        while self.queue and self.expired(self.queue[0], limit):
            self.failed(self.queue.popleft(), "delivery timed out: Kafka unavailable")
        for lane in self._lanes:
            oldest = lane.oldest()
            if oldest is None or not self.expired(oldest, limit):
                continue
            waiting = lane.waiting()
            fresh = 0
            while fresh < len(waiting) and self.expired(waiting[fresh], limit):
                self.failed(waiting[fresh], "delivery timed out: Kafka unavailable")
                fresh += 1
            lane.requeue(waiting[fresh:])


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
