"""No silent holes, and unambiguous restarts (PROTOCOL §5; issue 10 failures 9 and 10),
hermetic: the in-memory sink fails chosen records as an expired delivery would."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from sidecar.model import Record
from sidecar.sink.kafka import ConsumedRecord
from sidecar.sink.memory import MemorySink
from sidecar.tools.commands import run_tail
from sidecar_client.reassemble import Reassembler
from tests.helpers import RawClient, done, make_config, open_server, start, text_delta
from tests.tools.fakes import FakeTopic


def fail_seq(stream: tuple[str, str], seq: int) -> object:
    def why(record: Record) -> str | None:
        hit = (
            (record.task_id, record.message_id) == stream
            and record.stream_seq == seq
            and record.terminal_reason != "delivery_failed"  # takes the hole's seq
        )
        return "delivery timed out: Kafka unavailable" if hit else None

    return why


def delivered(sink: MemorySink, key: tuple[str, str]) -> list[tuple[int, str, str | None]]:
    return [(r.stream_seq, r.kind, r.terminal_reason) for r in sink.by_stream().get(key, [])]


async def test_an_expired_record_ends_its_open_stream_there(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.fail_when = fail_seq(("t", "m"), 2)  # type: ignore[assignment]
    config = make_config(tmp_path, flush_interval_ms=0)
    async with open_server(config, sink) as server:
        quiet = await RawClient.connect(config.socket)  # acks=none: told all the same
        other = await RawClient.connect(config.socket)
        await other.send({"type": "hello", "acks": "terminal"}, start("t", "o"))
        await quiet.send(start("t", "m"), text_delta("t", "m", "a"), text_delta("t", "m", "b"))
        (err,) = await quiet.read_replies(1)
        assert (err["seq"], err["code"]) == (3, "delivery_failed")
        assert "record 2" in err["message"]
        await sink.wait_for(lambda s: any(r.terminal_reason for _, _, r in s.records))
        assert delivered(sink, ("t", "m")) == [
            (0, "start", None),
            (1, "delta", None),
            (2, "done", "delivery_failed"),  # in the hole's place: no gap, one terminal
        ]
        terminal = sink.by_stream()[("t", "m")][-1]
        assert orjson.loads(terminal.value)["parent_task_message"]["task_id"] == "t"
        # Later frames of the stream: stream_closed, nothing produced.
        await quiet.send(text_delta("t", "m", "late"), done("t", "m"))
        late = await quiet.read_replies(3)
        assert [(r["seq"], r["code"]) for r in late[1:]] == [
            (4, "stream_closed"),
            (5, "stream_closed"),
        ]
        # Other streams are not disturbed.
        await other.send(done("t", "o"))
        assert (await other.read_replies(1))[0]["type"] == "ack"
        assert delivered(sink, ("t", "m"))[-1] == (2, "done", "delivery_failed")
        text = server.metrics.render().decode()
        assert 'sidecar_streams_ended_total{reason="delivery_failed"} 1.0' in text
        assert "sidecar_delivery_failures_total 1.0" in text
        await quiet.aclose()
        await other.aclose()


async def test_records_queued_behind_the_hole_are_withdrawn(tmp_path: Path) -> None:
    """The stream was complete when its second record expired: the rest (its normal
    terminal included) never reaches Kafka; a delivery_failed done takes the hole."""
    sink = MemorySink()
    sink.fail_when = fail_seq(("t", "m"), 1)  # type: ignore[assignment]
    sink.hold.set()  # Kafka away: everything queues
    config = make_config(tmp_path, flush_interval_ms=0)
    async with open_server(config, sink):
        c = await RawClient.connect(config.socket)
        await c.send({"type": "hello", "acks": "terminal"}, start("t", "m"))
        await c.send(text_delta("t", "m", "a"), text_delta("t", "m", "b"), done("t", "m"))
        await c.send(start("t", "n"), done("t", "n"))
        await sink.wait_for(lambda s: s.pending_records == 6)
        sink.release()
        replies = await c.read_replies(3)
        by_seq = {r["seq"]: (r["type"], r.get("code")) for r in replies}
        assert by_seq == {
            3: ("error", "delivery_failed"),  # the writer, told at the hole
            5: ("error", "delivery_failed"),  # its terminal's ack: withdrawn
            7: ("ack", None),  # stream n is fine
        }
        await sink.wait_for(lambda s: s.pending_records == 0)
        assert delivered(sink, ("t", "m")) == [(0, "start", None), (1, "done", "delivery_failed")]
        assert delivered(sink, ("t", "n")) == [(0, "start", None), (1, "done", "client")]
        await c.aclose()


async def test_acks_all_hears_of_every_line_that_was_not_delivered(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.fail_when = fail_seq(("t", "m"), 1)  # type: ignore[assignment]
    sink.hold.set()
    config = make_config(tmp_path, flush_interval_ms=0)
    async with open_server(config, sink):
        c = await RawClient.connect(config.socket)
        await c.send({"type": "hello", "acks": "all"}, start("t", "m"))
        await c.send(text_delta("t", "m", "a"), text_delta("t", "m", "b"), done("t", "m"))
        await sink.wait_for(lambda s: s.pending_records == 4)
        sink.release()
        replies = await c.read_replies(4)
        assert sorted((r["seq"], r["type"], r.get("code")) for r in replies) == [
            (2, "ack", None),
            (3, "error", "delivery_failed"),
            (4, "error", "delivery_failed"),
            (5, "error", "delivery_failed"),
        ]
        await c.aclose()


async def test_a_restart_is_told_by_the_sidecar_instance_header(tmp_path: Path) -> None:
    """Failure 10: after a restart a continuing stream's seq starts again at 0 and its
    records follow its shutdown terminal; the instance header tells the two apart."""
    config = make_config(tmp_path)
    runs = []
    records: list[list[Record]] = []
    for body in (
        [start("t", "m"), text_delta("t", "m", "before ")],
        [text_delta("t", "m", "after"), done("t", "m")],
    ):
        sink = MemorySink()
        async with open_server(config, sink) as server:
            c = await RawClient.connect(config.socket)
            await c.send({"type": "hello", "acks": "all"}, *body)
            await c.read_replies(len(body))
            assert await server.shutdown() == 0
            await c.aclose()
        headers = [dict(r.headers(sink.instance)) for _, _, r in sink.records]
        runs.append((server.instance, headers))
        records.append([r for _, _, r in sink.records])
    (first, h1), (second, h2) = runs
    assert first != second and len(first) == 16
    assert [(h["type"], h["seq"], h.get("terminal_reason")) for h in h1] == [
        (b"start", b"0", None),
        (b"delta", b"1", None),
        (b"done", b"2", b"shutdown"),
    ]
    assert [(h["type"], h["seq"], h.get("terminal_reason")) for h in h2] == [
        (b"delta", b"0", None),
        (b"done", b"1", b"client"),
    ]
    assert {h["sidecar_instance"] for h in h1} == {first.encode()}
    assert {h["sidecar_instance"] for h in h2} == {second.encode()}
    # `tail --reassemble` (the reassembler) reads the two parts as one stream resumed
    # after a restart: no seq_gap, no record_after_terminal.
    topic = FakeTopic(
        [
            ConsumedRecord(0, offset, 0, b"t", r.value, dict(r.headers(sink_instance)))
            for offset, (r, sink_instance) in enumerate(
                [(r, first.encode()) for r in records[0]]
                + [(r, second.encode()) for r in records[1]]
            )
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    assert await run_tail(topic, reassemble=True, out=out, err=err) == 0, err.getvalue()
    parts = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert [(p["terminal_reason"], p["channels"], p.get("resumed")) for p in parts] == [
        ("shutdown", {"text": "before "}, None),
        ("client", {"text": "after"}, 1),
    ]
    # The same records after a normal terminal are a violation, restart or not.
    r = Reassembler()
    r.feed(
        done("t", "x"),
        {
            "type": "done",
            "message_id": "x",
            "seq": "0",
            "terminal_reason": "client",
            "sidecar_instance": "a",
        },
    )
    r.feed(
        text_delta("t", "x", "late"),
        {"type": "delta", "message_id": "x", "seq": "0", "sidecar_instance": "b"},
    )
    assert [v.kind for v in r.violations] == ["record_after_terminal"]
