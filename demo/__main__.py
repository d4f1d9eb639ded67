"""`make demo`: a local Kafka broker, the sidecar, and simulated agents streaming into it.

Ends by itself: the agents finish, `sidecar tail --reassemble` shows what landed in
Kafka, the sidecar drains on SIGTERM, and the broker is stopped.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from testbed import create_topic, open_broker
from testbed.process import sidecar_command, start_sidecar

_WORDS = [
    "the",
    "sidecar",
    "coalesces",
    "tiny",
    "deltas",
    "per",
    "stream",
    "and",
    "produces",
    "ordered",
    "batched",
    "records",
    "to",
    "kafka",
    "keyed",
    "by",
    "task",
    "so",
    "every",
    "partition",
    "carries",
    "each",
    "stream",
    "in",
    "order",
]


def _parent(task: str, msg: str) -> dict[str, Any]:
    return {
        "id": msg,
        "task_id": task,
        "content": {"type": "text", "author": "agent", "content": ""},
    }


def _update(kind: str, task: str, msg: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, "parent_task_message": _parent(task, msg), **fields}) + b"\n"


async def agent(socket: Path, task: str, rng: random.Random) -> int:
    """One agent: a reasoning stream, a tool call, then the answer, as agentex JSON."""
    reader, writer = await asyncio.open_unix_connection(str(socket))
    writer.write(
        orjson.dumps({"type": "hello", "client": "demo-agent/1", "acks": "terminal"}) + b"\n"
    )
    terminals = 0

    async def stream(msg: str, deltas: list[dict[str, Any]], index: int) -> None:
        nonlocal terminals
        writer.write(
            _update(
                "start",
                task,
                msg,
                content={"type": "text", "author": "agent", "content": ""},
                index=index,
            )
        )
        for d in deltas:
            writer.write(_update("delta", task, msg, delta=d, index=index))
            await writer.drain()
            await asyncio.sleep(rng.uniform(0.002, 0.02))  # an LLM's token pace
        writer.write(_update("done", task, msg, index=index))
        terminals += 1

    words = rng.sample(_WORDS, 12)
    await stream(
        f"{task}-reasoning",
        [
            {"type": "reasoning_summary", "summary_index": 0, "summary_delta": w + " "}
            for w in words
        ],
        0,
    )
    args = orjson.dumps({"query": " ".join(words[:3]), "limit": 5}).decode()
    await stream(
        f"{task}-tool",
        [
            {
                "type": "tool_request",
                "tool_call_id": f"call-{task}",
                "name": "search",
                "arguments_delta": args[i : i + 4],
            }
            for i in range(0, len(args), 4)
        ],
        1,
    )
    answer = " ".join(rng.choice(_WORDS) for _ in range(60))
    await stream(
        f"{task}-answer",
        [{"type": "text", "text_delta": answer[i : i + 3]} for i in range(0, len(answer), 3)],
        2,
    )
    await writer.drain()
    acked = 0
    while acked < terminals:
        reply = orjson.loads(await reader.readline())
        if reply["type"] != "ack":
            print(f"  {task}: {reply}", file=sys.stderr)
        acked += 1
    writer.close()
    return acked


async def demo(bootstrap: str, workdir: Path) -> int:
    topic = f"demo-task-updates-{int(time.time())}"
    await create_topic(bootstrap, name=topic, partitions=3)
    sock = workdir / "sidecar.sock"
    env = {**os.environ, "SIDECAR_LOG_LEVEL": "warning"}
    proc = await start_sidecar(sock, bootstrap, topic, env=env)
    try:
        print(f"==> sidecar up on {sock}, producing to {topic}; 3 agents streaming", flush=True)
        rng = random.Random(42)
        started = time.monotonic()
        acks = await asyncio.gather(*(agent(sock, f"task-{i}", rng) for i in range(3)))
        took = time.monotonic() - started
        print(f"==> agents done in {took:.1f}s; {sum(acks)} terminals acked by Kafka", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
        print(f"==> sidecar drained and exited with {code}", flush=True)
    print("==> sidecar tail --reassemble", flush=True)
    tail = await asyncio.create_subprocess_exec(
        *sidecar_command("tail", "--bootstrap-servers", bootstrap, "--topic", topic),
        "--reassemble",
        "--no-follow",
    )
    return code or await tail.wait()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sidecar-demo-") as tmp, open_broker() as broker:
        print(f"==> Kafka broker at {broker.bootstrap_servers}", flush=True)
        code = asyncio.run(demo(broker.bootstrap_servers, Path(tmp)))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
