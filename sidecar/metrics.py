"""Every metric the sidecar exports, defined in this one module.

Each server gets its own registry, so tests and embedded servers never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DELTAS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.frames_received = Counter(
            "sidecar_frames_received",
            "Lines received on the socket, by frame type (invalid for rejected lines).",
            ["type"],
            registry=r,
        )
        self.errors = Counter(
            "sidecar_errors", "Error replies, by code (PROTOCOL §3).", ["code"], registry=r
        )
        self.records_produced = Counter(
            "sidecar_records_produced",
            "Records acknowledged by Kafka, by update type.",
            ["type"],
            registry=r,
        )
        self.deltas_per_record = Histogram(
            "sidecar_deltas_per_record",
            "Delta lines merged into one delta record.",
            buckets=_DELTAS_BUCKETS,
            registry=r,
        )
        self.streams_open = Gauge("sidecar_open_streams", "Streams open now.", registry=r)
        self.streams_ended = Counter(
            "sidecar_streams_ended", "Streams ended, by terminal_reason.", ["reason"], registry=r
        )
        self.connections = Gauge("sidecar_connections", "Socket connections open now.", registry=r)
        self.connections_refused = Counter(
            "sidecar_connections_refused",
            "Connections closed at once: peer not in --allowed-uids/--allowed-gids, or its "
            "credentials unreadable.",
            registry=r,
        )
        self.pending_bytes = Gauge(
            "sidecar_pending_bytes",
            "Bytes of records accepted and not yet acknowledged by Kafka.",
            registry=r,
        )
        self.backpressure = Gauge(
            "sidecar_backpressure",
            "1 while socket reads are paused because pending bytes passed the limit.",
            registry=r,
        )
        self.first_delta_latency = Histogram(
            "sidecar_first_delta_latency_seconds",
            "From reading a stream's first delta to Kafka acknowledging its record.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "sidecar_kafka_delivery_latency_seconds",
            "From handing a record to the Kafka sink to its acknowledgement.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.delivery_failures = Counter(
            "sidecar_delivery_failures",
            "Records Kafka finally refused or that timed out (delivery_failed); each ends "
            "its stream with a delivery_failed terminal (sidecar_streams_ended).",
            registry=r,
        )
        self.undelivered_at_shutdown = Gauge(
            "sidecar_undelivered_at_shutdown",
            "Records not acknowledged by Kafka when the shutdown deadline passed.",
            registry=r,
        )
        self.producer_recoveries = Counter(
            "sidecar_producer_recoveries",
            "Times the Kafka producer was recreated to resend unacknowledged records.",
            registry=r,
        )
        self.kafka_up = Gauge(
            "sidecar_kafka_up", "1 while the last contact with Kafka succeeded.", registry=r
        )
        self.replies_dropped = Counter(
            "sidecar_replies_dropped",
            "Replies dropped because the client did not read them (PROTOCOL §3).",
            registry=r,
        )

        # Label children resolved once: labels() costs a lock and a dict lookup per call,
        # and these are counted per frame and per record.
        kinds = ("hello", "start", "delta", "full", "done", "invalid")
        self.frames = {k: self.frames_received.labels(k) for k in kinds}
        self.produced = {k: self.records_produced.labels(k) for k in kinds[1:5]}

    def render(self) -> bytes:
        return generate_latest(self.registry)
