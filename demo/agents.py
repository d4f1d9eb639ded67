"""The demo's agents: each streams a reasoning summary, a tool call and an answer, as the
agentex JSON an agent already has, through the agent-side client library (sidecar_client).

Everything a verdict needs from the writer's side is kept in a `StreamRow`: what was
written (the text, in order), how many deltas, and when the first delta was written
(wall clock, to compare with the Kafka record's CreateTime).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar_client import open_sidecar

_TEXT = (
    "the sidecar coalesces tiny deltas per stream and produces ordered batched records to "
    "kafka keyed by task so every partition carries each stream in order with exactly one "
    "terminal last while agents keep streaming tokens at their own pace"
)
_WORDS = tuple(_TEXT.split())

# The text field of each delta type the demo writes (PROTOCOL §2.1).
TEXT_FIELD = {
    "text": "text_delta",
    "reasoning_summary": "summary_delta",
    "tool_request": "arguments_delta",
}


@dataclass
class StreamRow:
    """One stream as its agent saw it; `records` and `terminal` are filled from Kafka."""

    agent: str
    task: str
    message: str
    kind: str  # "reasoning", "tool" or "answer"
    written: list[str] = field(default_factory=list)  # delta texts, in order
    first_write: float | None = None  # time.time() of the first delta's write
    state: str = "waiting"  # waiting, streaming, sent, acked, failed: <why>
    records: int = 0  # records of this stream seen in Kafka so far
    terminals: int = 0
    latency_ms: float | None = None  # first delta: write -> Kafka CreateTime

    @property
    def deltas(self) -> int:
        return len(self.written)


def _parent(task: str, msg: str) -> dict[str, Any]:
    return {"id": msg, "task_id": task, "content": {"type": "text", "author": "agent"}}


def _update(kind: str, row: StreamRow, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "parent_task_message": _parent(row.task, row.message), **fields}


def plan(agents: int) -> list[StreamRow]:
    """The streams the agents will write: three per agent."""
    rows = []
    for a in range(agents):
        task = f"task-{a + 1}"
        for kind in ("reasoning", "tool", "answer"):
            rows.append(StreamRow(f"agent-{a + 1}", task, f"{task}-{kind}", kind))
    return rows


def _deltas(row: StreamRow, rng: random.Random, answer_words: int) -> list[dict[str, Any]]:
    if row.kind == "reasoning":
        words = rng.sample(_WORDS, 12)
        return [
            {"type": "reasoning_summary", "summary_index": 0, "summary_delta": w + " "}
            for w in words
        ]
    if row.kind == "tool":
        query = " ".join(rng.sample(_WORDS, 3))
        args = f'{{"query": "{query}", "limit": 5}}'
        return [
            {
                "type": "tool_request",
                "tool_call_id": f"call-{row.task}",
                "name": "search",
                "arguments_delta": args[i : i + 4],
            }
            for i in range(0, len(args), 4)
        ]
    answer = " ".join(rng.choice(_WORDS) for _ in range(answer_words))
    # Token-sized pieces, as an LLM streams them.
    return [{"type": "text", "text_delta": answer[i : i + 4]} for i in range(0, len(answer), 4)]


async def run_agent(
    socket: Path, rows: list[StreamRow], rng: random.Random, answer_words: int, pace: float
) -> None:
    """One agent: its streams one after another, each delta `pace` seconds apart on
    average (an LLM's token pace), every terminal awaited until Kafka acknowledged it."""
    async with open_sidecar(socket, client="demo-agent/1", acks="terminal") as sidecar:
        for index, row in enumerate(rows):
            row.state = "streaming"
            content = {"type": "text", "author": "agent", "content": ""}
            await sidecar.send(_update("start", row, content=content, index=index))
            for delta in _deltas(row, rng, answer_words):
                if row.first_write is None:
                    row.first_write = time.time()
                await sidecar.send(_update("delta", row, delta=delta, index=index))
                row.written.append(delta[TEXT_FIELD[delta["type"]]])
                await asyncio.sleep(rng.uniform(0.2, 1.8) * pace)
            terminal = await sidecar.send(_update("done", row, index=index))
            row.state = "sent"
            try:
                await asyncio.wait_for(terminal, 60)
            except Exception as exc:
                row.state = f"failed: {exc}"
            else:
                row.state = "acked"
