"""Stand-ins for the tools' tests: a tiny sidecar on a Unix socket and a record source."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sidecar.model import Record
from sidecar.sink.kafka import ConsumedRecord
from sidecar.sink.memory import MemorySink
from sidecar_client.protocol import encode_ack, encode_error

UPDATE_TYPES = ("start", "delta", "full", "done")


@dataclass
class FakeSidecar:
    """Just enough of PROTOCOL §2-3: lines numbered from 1, a hello on line 1 sets the ack
    mode, lines that are not updates get an error, accepted lines are acked at once (at
    partition 0, offset = seq) unless `ack` is off. Closes on the client's end of input,
    or after `close_after` lines."""

    path: Path
    ack: bool = True
    close_after: int | None = None
    lines: list[list[bytes]] = field(default_factory=list)  # per connection, as received
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # a connection ended

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines: list[bytes] = []
        self.lines.append(lines)
        mode = "none"
        try:
            while raw := await reader.readline():
                lines.append(raw)
                seq = len(lines)
                reply = self._reply(seq, raw, mode)
                if isinstance(reply, str):
                    mode = reply
                elif reply:
                    writer.write(reply)
                    await writer.drain()
                if seq == self.close_after:
                    break
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.closed.set()

    def _reply(self, seq: int, raw: bytes, mode: str) -> bytes | str | None:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return encode_error(seq, "invalid_json", "not JSON")
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "hello" and seq == 1:
            return str(obj.get("acks") or "none")
        if kind not in UPDATE_TYPES:
            return encode_error(seq, "invalid_frame", f"type {kind!r}")
        if self.ack and (mode == "all" or (mode == "terminal" and kind in ("full", "done"))):
            return encode_ack(seq, 0, seq)
        return None

    def received(self, conn: int = 0) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.lines[conn]]


@contextlib.asynccontextmanager
async def fake_sidecar(tmp_path: Path, **options: Any) -> AsyncIterator[FakeSidecar]:
    fake = FakeSidecar(tmp_path / "fake.sock", **options)
    server = await asyncio.start_unix_server(fake.handle, path=str(fake.path), limit=1 << 24)
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


def consumed(sink: MemorySink) -> list[ConsumedRecord]:
    """A memory sink's records as a consumer would read them, partition by partition."""
    out = [
        ConsumedRecord(p, off, 0, r.task_id.encode(), r.value, dict(r.headers()))
        for p, off, r in sink.records
    ]
    return sorted(out, key=lambda c: (c.partition, c.offset))


def consumed_from(records: list[Record]) -> list[ConsumedRecord]:
    """Records on one partition, offsets in list order."""
    return [
        ConsumedRecord(0, i, 0, r.task_id.encode(), r.value, dict(r.headers()))
        for i, r in enumerate(records)
    ]


class FakeTopic:
    """A RecordSource over fixed records: `poll` hands out at most `batch` per call."""

    def __init__(self, records: list[ConsumedRecord], *, at_end: bool = False, batch: int = 3):
        self.records = sorted(records, key=lambda c: (c.partition, c.offset))
        self.ends: dict[int, int] = {}
        for r in self.records:
            self.ends[r.partition] = max(self.ends.get(r.partition, 0), r.offset + 1)
        self.batch = batch
        self.next = len(self.records) if at_end else 0
        self.polls = 0
        self.idle = asyncio.Event()  # set once a poll found nothing to hand out

    async def end_offsets(self) -> dict[int, int]:
        return dict(self.ends)

    async def position(self, partition: int) -> int:
        # Past the last record, the fetcher skips what is never delivered up to the end.
        pending = [r.offset for r in self.records[self.next :] if r.partition == partition]
        return pending[0] if pending else self.ends.get(partition, 0)

    async def poll(self, timeout_ms: int = 500, max_records: int = 10_000) -> list[ConsumedRecord]:
        self.polls += 1
        n = min(self.batch, max_records)
        out = self.records[self.next : self.next + n]
        self.next += len(out)
        if not out:
            self.idle.set()
            await asyncio.sleep(timeout_ms / 1000)  # as a consumer waits for new records
        return out
