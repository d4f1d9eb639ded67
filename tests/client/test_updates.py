"""The update builders make frames the sidecar accepts, shaped as agentex dumps them."""

from __future__ import annotations

import orjson

from sidecar_client.protocol import decode_frame
from sidecar_client.protocol.model import Update
from sidecar_client.updates import delta, done, full, start, text


def test_builders_make_valid_agentex_updates() -> None:
    frames = [
        start("t", "m"),
        text("t", "m", "hi"),
        delta("t", "m", {"type": "tool_request", "tool_call_id": "c", "name": "f"}),
        delta("t", "m", None),
        delta("t", "m", {"type": "future_kind", "x": 1}, index=3),
        full("t", "m", "all of it"),
        done("t", "m", index=1),
    ]
    decoded = [decode_frame(orjson.dumps(f)) for f in frames]
    assert all(isinstance(u, Update) and u.key == ("t", "m") for u in decoded)
    assert [u.kind for u in decoded if isinstance(u, Update)] == [
        "start",
        "delta",
        "delta",
        "delta",
        "delta",
        "full",
        "done",
    ]
    assert frames[0]["content"] == {
        "author": "agent",
        "content": "",
        "attachments": None,
        "format": "plain",
        "style": "static",
        "type": "text",
    }
    assert full("t", "m", "x")["content"]["content"] == "x"
    assert text("t", "m", "hi")["delta"] == {"type": "text", "text_delta": "hi"}
