"""The plain data the wire protocol decodes into (PROTOCOL §2): shared by the sidecar,
the client library and the reassembler, so both ends speak the same types.

No asyncio and no Kafka here. The server's own types (records, ack tokens, clocks)
live in `sidecar.model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

UpdateKind = Literal["start", "delta", "full", "done"]
AckMode = Literal["none", "terminal", "all"]
StreamKey = tuple[str, str]  # (task_id, message_id)

TERMINAL_KINDS: frozenset[str] = frozenset({"full", "done"})


@dataclass(slots=True)
class Hello:
    client: str | None
    acks: AckMode


@dataclass(slots=True)
class Update:
    """One accepted agentex TaskMessageUpdate line.

    `body` is the JSON object exactly as received (unknown fields kept); `raw` is the
    line's bytes, reused as the record value when the update is produced unmerged.
    For deltas, `channel` is what must match for two deltas to merge (delta type,
    channel fields, update `index`), `text_field` names the delta's text field and
    `text` is its value (null counts as ""). A delta of a type the sidecar does not know,
    or a null delta, has no channel and no text field: it merges with nothing.
    """

    kind: UpdateKind
    task_id: str
    message_id: str
    body: dict[str, Any]
    raw: bytes
    channel: tuple[Any, ...] | None = None
    text_field: str | None = None
    text: str = ""

    @property
    def key(self) -> StreamKey:
        return (self.task_id, self.message_id)
