"""A dependency-free Kafka Metadata probe (request v4) over a plain socket.

Synchronous on purpose (the test bed starts brokers outside any event loop) and without
aiokafka, which only `sidecar.sink.kafka` imports. A KRaft broker answers requests only
once it is unfenced, and lists only unfenced brokers, so "the broker at this address lists
itself" means "ready".
"""

from __future__ import annotations

import itertools
import socket
import struct
from dataclasses import dataclass, field

_METADATA = 3
_VERSION = 4  # the layout parsed below; served by Kafka 2.x to 4.x
_correlation = itertools.count(1)


@dataclass
class Partition:
    error: int
    leader: int
    replicas: list[int]
    isr: list[int]


@dataclass
class Metadata:
    brokers: dict[int, str]  # node id -> "host:port"
    controller: int
    topics: dict[str, dict[int, Partition]] = field(default_factory=dict)
    topic_errors: dict[str, int] = field(default_factory=dict)


def metadata(address: str, topics: list[str] | None = None, timeout: float = 2.0) -> Metadata:
    """One Metadata request to `address`; no topics asked unless named. Raises OSError or
    ValueError when the broker does not answer properly."""
    host, _, port = address.rpartition(":")
    corr = next(_correlation)
    client_id = b"sidecar-testbed"
    body = struct.pack(">i", len(topics or []))
    for t in topics or []:
        body += _str(t)
    body += b"\x00"  # allow_auto_topic_creation = false
    msg = struct.pack(">hhih", _METADATA, _VERSION, corr, len(client_id)) + client_id + body
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        (size,) = struct.unpack(">i", _read(s, 4))
        r = _Reader(_read(s, size))
    if r.i32() != corr:
        raise ValueError("correlation id mismatch")
    r.i32()  # throttle_time_ms
    brokers: dict[int, str] = {}
    for _ in range(r.i32()):
        node, host_, port_ = r.i32(), r.string(), r.i32()
        r.string()  # rack
        brokers[node] = f"{host_}:{port_}"
    r.string()  # cluster id
    md = Metadata(brokers, r.i32())
    for _ in range(r.i32()):
        error, name = r.i16(), r.string() or ""
        r.skip(1)  # is_internal
        parts: dict[int, Partition] = {}
        for _ in range(r.i32()):
            p_error, index, leader = r.i16(), r.i32(), r.i32()
            parts[index] = Partition(p_error, leader, r.i32s(), r.i32s())
        md.topics[name] = parts
        md.topic_errors[name] = error
    return md


def broker_ids(address: str, timeout: float = 2.0) -> set[int] | None:
    """The ids of the live brokers `address` knows, or None if it does not answer."""
    try:
        return set(metadata(address, timeout=timeout).brokers)
    except (OSError, ValueError, struct.error):
        return None


def _str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def _read(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ValueError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: str) -> int:
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(v)

    def i16(self) -> int:
        return self._take(">h")

    def i32(self) -> int:
        return self._take(">i")

    def skip(self, n: int) -> None:
        self.pos += n

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode()

    def i32s(self) -> list[int]:
        return [self.i32() for _ in range(max(self.i32(), 0))]
