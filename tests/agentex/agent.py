"""A real agentex agent streaming through the sidecar, then read back from Kafka.

agentex-sdk's own `StreamingService` and `StreamingTaskMessageContext`, unmodified, with
`SidecarStreamRepository` as the stream repository; only the agentex HTTP API client is
faked (it answers `messages.create` and records `messages.update`, which is where agentex
persists the content its `DeltaAccumulator` built). For each streaming mode and each kind
of content (text, reasoning, a tool call and its response, a `full`), one message is
streamed; then the task is read back with `SidecarStreamRepository.subscribe` (events)
and with `sidecar_client.kafka.read_task` (records, headers and all), both reassembled
with `sidecar_client.reassemble`.

    python -m tests.agentex.agent SOCKET BOOTSTRAP TOPIC MODE...

Prints one JSON object: per mode and message, what agentex persisted, what the two
read-backs reassembled, the events sent and subscribed, and what `send_event` returned
for the terminals. The pytest side compares them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import datetime
from typing import Any

from agentex.lib.core.services.adk.streaming import StreamingService
from agentex.types.reasoning_content import ReasoningContent
from agentex.types.task_message import TaskMessage
from agentex.types.task_message_delta import (
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    TextDelta,
    ToolRequestDelta,
    ToolResponseDelta,
)
from agentex.types.task_message_update import StreamTaskMessageDelta, StreamTaskMessageFull
from agentex.types.text_content import TextContent
from agentex.types.tool_request_content import ToolRequestContent
from agentex.types.tool_response_content import ToolResponseContent

from sidecar_client.agentex import SidecarStreamRepository
from sidecar_client.kafka import read_task
from sidecar_client.reassemble import reassemble

TOKENS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", ",", "again"]


class FakeMessages:
    """agentex's `client.messages`: create answers as the server would; update records
    the content agentex persists at the end of a stream."""

    def __init__(self) -> None:
        self.persisted: dict[str, Any] = {}

    async def create(
        self, *, task_id: str, content: dict[str, Any], streaming_status: str, **_: Any
    ) -> TaskMessage:
        return TaskMessage.model_validate(
            {
                "id": f"msg-{uuid.uuid4().hex[:10]}",
                "task_id": task_id,
                "content": content,
                "streaming_status": streaming_status,
                "created_at": datetime(2026, 1, 1).isoformat(),
            }
        )

    async def update(
        self, *, task_id: str, message_id: str, content: dict[str, Any], **_: Any
    ) -> None:
        # agentex passes `content.model_dump()`; compare it in its JSON form.
        self.persisted[message_id] = json.loads(json.dumps(content, default=str))


class FakeAgentex:
    def __init__(self) -> None:
        self.messages = FakeMessages()


async def pace(mode: str) -> None:
    # Tokens a few ms apart, as a model emits them: agentex's coalesced window (50 ms)
    # then merges some and not others.
    await asyncio.sleep(0.004 if mode == "coalesced" else 0.001)


async def stream_messages(service: StreamingService, task_id: str, mode: str) -> list[str]:
    """One message of each kind; returns their message ids in order."""
    ids: list[str] = []
    initial_text = TextContent(author="agent", content="")

    def delta(ctx: Any, d: Any) -> StreamTaskMessageDelta:
        return StreamTaskMessageDelta(parent_task_message=ctx.task_message, delta=d, type="delta")

    # Text, token by token (one null delta among them: agentex skips it).
    async with service.streaming_task_message_context(task_id, initial_text, mode) as ctx:
        for i, tok in enumerate(TOKENS * 3):
            piece = None if i == 7 else tok + " "
            await ctx.stream_update(delta(ctx, TextDelta(type="text", text_delta=piece)))
            await pace(mode)
        ids.append(ctx.task_message.id)

    # Reasoning: two summaries and one content channel, interleaved.
    initial = ReasoningContent(author="agent", summary=[], type="reasoning", style="active")
    async with service.streaming_task_message_context(task_id, initial, mode) as ctx:
        for i, tok in enumerate(TOKENS * 2):
            if i % 3 == 2:
                d: Any = ReasoningContentDelta(
                    type="reasoning_content", content_index=0, content_delta=tok + " "
                )
            else:
                d = ReasoningSummaryDelta(
                    type="reasoning_summary", summary_index=i % 2, summary_delta=tok + " "
                )
            await ctx.stream_update(delta(ctx, d))
            await pace(mode)
        ids.append(ctx.task_message.id)

    # A tool call: the arguments' JSON streamed in pieces...
    args = json.dumps({"city": "Paris", "days": 3, "units": "metric", "note": "é ü ✓"})
    initial_req = ToolRequestContent(
        author="agent", tool_call_id="call_1", name="get_weather", arguments={}
    )
    async with service.streaming_task_message_context(task_id, initial_req, mode) as ctx:
        for i in range(0, len(args), 5):
            d = ToolRequestDelta(
                type="tool_request",
                tool_call_id="call_1",
                name="get_weather",
                arguments_delta=args[i : i + 5],
            )
            await ctx.stream_update(delta(ctx, d))
            await pace(mode)
        ids.append(ctx.task_message.id)

    # ...and its response.
    initial_resp = ToolResponseContent(
        author="agent", tool_call_id="call_1", name="get_weather", content=""
    )
    async with service.streaming_task_message_context(task_id, initial_resp, mode) as ctx:
        for tok in TOKENS:
            d = ToolResponseDelta(
                type="tool_response",
                tool_call_id="call_1",
                name="get_weather",
                content_delta=tok + " ",
            )
            await ctx.stream_update(delta(ctx, d))
            await pace(mode)
        ids.append(ctx.task_message.id)

    # Some deltas, then a `full` that supersedes them.
    async with service.streaming_task_message_context(task_id, initial_text, mode) as ctx:
        for tok in TOKENS[:5]:
            await ctx.stream_update(delta(ctx, TextDelta(type="text", text_delta=tok)))
        final = TextContent(author="agent", content="the whole answer, at once")
        await ctx.stream_update(
            StreamTaskMessageFull(parent_task_message=ctx.task_message, content=final, type="full")
        )
        ids.append(ctx.task_message.id)
    return ids


class Recording(SidecarStreamRepository):
    """The repository as is, keeping what agentex sent and what send_event returned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[dict[str, Any]] = []
        self.returned: list[str] = []

    async def send_event(self, topic: str, event: dict[str, Any]) -> str:
        self.sent.append(event)
        out = await super().send_event(topic, event)
        self.returned.append(out)
        return out


async def run_mode(socket: str, bootstrap: str, topic: str, mode: str) -> dict[str, Any]:
    task_id = f"task-{mode}-{uuid.uuid4().hex[:8]}"
    repo = Recording(socket, bootstrap_servers=bootstrap, topic=topic)
    agentex = FakeAgentex()
    service = StreamingService(agentex, repo)
    ids = await stream_messages(service, task_id, mode)
    await repo.aclose()
    assert repo.sidecar.undelivered == 0, repo.sidecar.undelivered

    # Read back: the events a UI would get, and the records with their headers.
    n_terminals = len(ids)
    subscribed: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        async for event in repo.subscribe(f"task:{task_id}", "0"):
            subscribed.append(event)
            if sum(e["type"] in ("done", "full") for e in subscribed) == n_terminals:
                break
    records = []
    async with asyncio.timeout(60):
        async for rec in read_task(bootstrap, topic, task_id, "0"):
            records.append(rec)
            if sum(r.headers["type"] in (b"done", b"full") for r in records) == n_terminals:
                break
    from_events = {s.message_id: s.content for s in reassemble(subscribed)}
    from_records = {s.message_id: s.content for s in reassemble(records)}
    # subscribe resumes after a terminal's "partition:offset", as agentex resumes after
    # a Redis id: the next message's records follow, nothing of the earlier ones.
    first_terminal = next(r for r in repo.returned if r)
    resumed: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        async for event in repo.subscribe(f"task:{task_id}", first_terminal):
            resumed.append(event)
            if event["type"] in ("done", "full"):
                break
    return {
        "task_id": task_id,
        "ids": ids,
        "persisted": agentex.messages.persisted,
        "from_events": from_events,
        "from_records": from_records,
        "sent": repo.sent,
        "subscribed": subscribed,
        "returned": repo.returned,
        "terminal_positions": [
            r.position
            for r in records
            if r.headers["type"] != b"delta" and r.headers["type"] != b"start"
        ],
        "resumed_first_message": resumed[0]["parent_task_message"]["id"] if resumed else None,
        "records": len(records),
    }


async def main(socket: str, bootstrap: str, topic: str, modes: list[str]) -> None:
    out = {mode: await run_mode(socket, bootstrap, topic, mode) for mode in modes}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
