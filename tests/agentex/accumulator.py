"""agentex's own DeltaAccumulator against `sidecar_client.content.ContentAccumulator` on
random delta sequences of every kind (including nulls, empty texts, reasoning indexes
out of order, mixed kinds and bad JSON): same content, or both refuse.

Run as `python -m tests.agentex.accumulator [N]`; prints one JSON summary line and exits
non-zero on the first difference."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

from agentex.lib.core.services.adk.streaming import DeltaAccumulator
from agentex.types.task_message_delta import (
    DataDelta,
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    TextDelta,
    ToolRequestDelta,
    ToolResponseDelta,
)

from sidecar_client.content import ContentAccumulator, ContentError

PIECES = ["", "a", "héllo ", " ", "\n", "{", "}", '"k"', ":", "1", ",", "[", "]", "x y"]


def text(rng: random.Random) -> str | None:
    return None if rng.random() < 0.1 else rng.choice(PIECES)


def json_pieces(rng: random.Random, value: Any) -> list[str]:
    """A JSON text cut at random places (sometimes broken)."""
    doc = json.dumps(value)
    if rng.random() < 0.1:
        doc = doc[:-1]  # not JSON any more: both must refuse
    cuts = sorted(rng.sample(range(len(doc) + 1), min(len(doc), rng.randint(0, 6))))
    return [doc[i:j] for i, j in zip([0, *cuts], [*cuts, len(doc)], strict=True)]


def deltas(rng: random.Random) -> list[Any]:
    kind = rng.choice(["text", "data", "tool_request", "tool_response", "reasoning"])
    n = rng.randint(1, 12)
    out: list[Any]
    if kind == "text":
        out = [TextDelta(type="text", text_delta=text(rng)) for _ in range(n)]
    elif kind == "data":
        out = [DataDelta(type="data", data_delta=p) for p in json_pieces(rng, {"a": [1, "b"]})]
    elif kind == "tool_request":
        args = json_pieces(rng, {"city": "Paris", "days": 3})
        out = [
            ToolRequestDelta(type="tool_request", tool_call_id="c1", name="f", arguments_delta=p)
            for p in args
        ]
    elif kind == "tool_response":
        out = [
            ToolResponseDelta(
                type="tool_response", tool_call_id="c2", name="g", content_delta=text(rng)
            )
            for _ in range(n)
        ]
    else:
        out = []
        for _ in range(n):
            index = rng.choice([0, 1, 2, 5])
            if rng.random() < 0.5:
                out.append(
                    ReasoningSummaryDelta(
                        type="reasoning_summary", summary_index=index, summary_delta=text(rng)
                    )
                )
            else:
                out.append(
                    ReasoningContentDelta(
                        type="reasoning_content", content_index=index, content_delta=text(rng)
                    )
                )
    if rng.random() < 0.05:  # a second kind in the stream: both must refuse
        out.insert(rng.randrange(len(out) + 1), TextDelta(type="text", text_delta="z"))
    return out


def agentex_content(ds: list[Any]) -> Any:
    acc = DeltaAccumulator()
    try:
        for d in ds:
            acc.add_delta(d)
        return acc.convert_to_content().model_dump(mode="json")
    except Exception as exc:  # pydantic's ValidationError is a ValueError too
        return f"refused: {type(exc).__name__}"


def ours(ds: list[Any]) -> Any:
    acc = ContentAccumulator()
    try:
        for d in ds:
            acc.add(d.model_dump(mode="json"))
        return acc.content()
    except ContentError as exc:
        return f"refused: {type(exc).__name__}"


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rng = random.Random(8)
    refused = 0
    for i in range(n):
        ds = deltas(rng)
        want, got = agentex_content(ds), ours(ds)
        if isinstance(want, str) or isinstance(got, str):
            if not (isinstance(want, str) and isinstance(got, str)):
                print(
                    json.dumps(
                        {
                            "case": i,
                            "agentex": want,
                            "ours": got,
                            "deltas": [d.model_dump(mode="json") for d in ds],
                        }
                    )
                )
                return 1
            refused += 1
        elif want != got:
            print(json.dumps({"case": i, "agentex": want, "ours": got}))
            return 1
    print(json.dumps({"cases": n, "refused_by_both": refused}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
