"""agentex's `StreamRepository` on the sidecar (extra `sidecar-client[agentex]`; its
`subscribe` also needs `[kafka]`).

The two-line change in an agentex agent:

    from sidecar_client.agentex import SidecarStreamRepository
    streaming = StreamingService(agentex_client, SidecarStreamRepository())

- `send_event` writes the event (agentex's `update.model_dump(mode="json")`) as one line,
  encoded once by orjson. For a delta (and a `start`) it returns as soon as the line is
  queued: it waits only when the sidecar pushes back. For a terminal (`done`/`full`) it
  returns once Kafka acknowledged the terminal, and so the whole stream before it:
  `"partition:offset"` of the terminal. When an agentex streaming context closes, its
  stream is durable; if it could not be made so, `send_event` raises (agentex's
  StreamingService logs it).
- `cleanup_stream` does nothing: Kafka's retention owns the topic's lifetime.
- `subscribe(topic, last_id)` reads the task's stream back from Kafka, in order, as the
  event dicts agentex sent: `last_id` `"$"` from now, `"0"` from the start, `"P:O"`
  after that offset (what `send_event` returned). This is what an agentex server or an
  SSE gateway uses to serve a UI from the topic.

Stream agentex contexts with `streaming_mode="per_token"`: the sidecar coalesces (with
no timer for idle streams); agentex's own `coalesced` mode works too, it only adds a
50 ms in-process window before the sidecar's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from agentex.lib.core.adapters.streams.port import StreamRepository

from sidecar_client.protocol.model import TERMINAL_KINDS
from sidecar_client.sidecar import SidecarClient

TOPIC_PREFIX = "task:"  # agentex's stream topic for a task: f"task:{task_id}"


class SidecarStreamRepository(StreamRepository):  # type: ignore[misc]
    """Writes through the sidecar's socket; reads the Kafka topic back.

    `socket_path` defaults to `SIDECAR_SOCKET`, then the sidecar's default path.
    `bootstrap_servers`, `topic` and `kafka_options` (the sidecar's security settings,
    see `sidecar_client.kafka`) are needed only by `subscribe`. `client_options` go to
    the `SidecarClient` (`high_water`, `max_buffer_bytes`, `connect_timeout`, ...).
    """

    def __init__(
        self,
        socket_path: Path | str | None = None,
        *,
        bootstrap_servers: str | None = None,
        topic: str = "task-updates",
        client_options: dict[str, Any] | None = None,
        **kafka_options: Any,
    ) -> None:
        options: dict[str, Any] = {"client": "agentex", "acks": "terminal"}
        options.update(client_options or {})
        self.sidecar = SidecarClient(socket_path, **options)
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.kafka_options = kafka_options

    async def send_event(self, topic: str, event: dict[str, Any]) -> str:
        delivery = await self.sidecar.send(event)
        if event.get("type") not in TERMINAL_KINDS:
            return ""  # not acknowledged yet; its terminal's ack will cover it
        ack = await delivery  # raises FrameRejected / NotDelivered
        return str(ack)

    async def subscribe(self, topic: str, last_id: str = "$") -> AsyncIterator[dict[str, Any]]:
        if self.bootstrap_servers is None:
            raise ValueError("subscribe needs bootstrap_servers (the sidecar's Kafka)")
        from sidecar_client.kafka import read_task  # the [kafka] extra, only when reading

        task_id = topic.removeprefix(TOPIC_PREFIX)
        records = read_task(
            self.bootstrap_servers, self.topic, task_id, last_id, **self.kafka_options
        )
        async for record in records:
            if record.value is not None:
                event: dict[str, Any] = orjson.loads(record.value)
                yield event

    async def cleanup_stream(self, topic: str) -> None:
        return None  # Kafka's retention owns cleanup

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Close the socket connection (after the acks still owed, up to `timeout`)."""
        await self.sidecar.aclose(timeout)
