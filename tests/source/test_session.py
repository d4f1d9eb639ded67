"""The sans-IO session driven directly: bytes in, replies and records out, the peer's
identity as an input (issue 10 failures 3 and 4, and the h11-style split)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.metrics import Metrics
from sidecar.model import Record
from sidecar.source.peer import Admission, Peer
from sidecar.source.session import Intake, Session
from sidecar.transform.table import StreamTable
from sidecar_client.protocol import MAX_REPLY_LINE
from tests.helpers import done, line, start, text_delta
from tests.transform.clock import FakeClock


class Recorder:
    """A session's outlet: what it wrote, and whether it closed."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.lines.append(data)

    def close(self) -> None:
        self.closed = True

    def replies(self) -> list[dict[str, Any]]:
        return [orjson.loads(x) for x in self.lines]


class Pod:
    """A stream table and the sessions of several peers, on a fake clock."""

    def __init__(self, *, flush_interval: float = 0.0) -> None:
        self.clock = FakeClock()
        self.records: list[Record] = []
        self.table = StreamTable(
            clock=self.clock,
            emit=self.records.append,
            flush_interval=flush_interval,
            max_buffered_chars=128,
            closed_ttl=600,
            idle_timeout=300,
        )
        self.intake = Intake(self.table, Metrics(), max_frame_bytes=1 << 20)

    def connect(self, uid: int, pid: int = 100) -> tuple[Session, Recorder]:
        out = Recorder()
        return Session(Peer(uid=uid, gid=uid, pid=pid), self.intake, out), out

    def kinds(self, msg: str) -> list[str]:
        return [r.kind for r in self.records if r.message_id == msg]


# -- failure 3: streams belong to a uid ---------------------------------------------------


def test_another_uid_can_neither_write_into_nor_end_nor_cut_a_stream() -> None:
    pod = Pod()
    victim, _ = pod.connect(uid=1000)
    attacker, out = pod.connect(uid=2000)
    victim.receive_data(line(start("t", "m")) + line(text_delta("t", "m", "mine")))
    before = list(pod.records)
    attacker.receive_data(
        line(text_delta("t", "m", "forged"))
        + line(done("t", "m"))
        + line(start("t", "m"))
        + line({**done("t", "m"), "type": "full", "content": {}})
    )
    assert [(r["seq"], r["code"]) for r in out.replies()] == [
        (1, "stream_owned"),
        (2, "stream_owned"),
        (3, "stream_owned"),
        (4, "stream_owned"),
    ]
    assert all(len(x) <= MAX_REPLY_LINE for x in out.lines)
    attacker.connection_lost()  # disconnecting ends only the attacker's own streams
    assert pod.records == before
    assert pod.table.open_count == 1
    victim.receive_data(line(done("t", "m")))
    assert pod.kinds("m") == ["start", "delta", "done"]
    assert {r.writer_uid for r in pod.records} == {1000}
    assert pod.records[-1].terminal_reason == "client"


def test_a_reconnecting_agent_of_the_same_uid_takes_its_stream_over() -> None:
    pod = Pod()
    pod.intake.end_on_disconnect = False  # --on-disconnect keep
    first, _ = pod.connect(uid=1000, pid=1)
    first.receive_data(line(start("t", "m")))
    first.connection_lost()
    second, out = pod.connect(uid=1000, pid=2)
    second.receive_data(line(text_delta("t", "m", "again")))
    assert out.lines == []
    pod.intake.end_on_disconnect = True
    second.connection_lost()
    assert pod.kinds("m") == ["start", "delta", "done"]
    assert pod.records[-1].terminal_reason == "disconnect"


def test_writer_uid_is_stamped_on_every_record_and_header() -> None:
    pod = Pod()
    a, _ = pod.connect(uid=1000)
    b, _ = pod.connect(uid=0)
    a.receive_data(line(start("t", "a")) + line(text_delta("t", "a", "x")))
    b.receive_data(line(text_delta("t", "b", "y")))
    b.connection_lost()  # a synthesized terminal is stamped too
    a.receive_data(line(done("t", "a")))
    got = {(r.message_id, r.kind): dict(r.headers(b"i")) for r in pod.records}
    assert {k: h["writer_uid"] for k, h in got.items()} == {
        ("a", "start"): b"1000",
        ("a", "delta"): b"1000",
        ("a", "done"): b"1000",
        ("b", "delta"): b"0",
        ("b", "done"): b"0",
    }
    assert all(h["sidecar_instance"] == b"i" for h in got.values())


@st.composite
def pod_scripts(draw: st.DrawFn) -> list[tuple[int, str, str]]:
    """Frames from three connections of two uids (0 and 1 share uid 1000) over a few
    streams: (connection, kind, message id)."""
    step = st.tuples(
        st.integers(0, 2),
        st.sampled_from(["start", "delta", "done", "disconnect"]),
        st.sampled_from(["m1", "m2", "m3"]),
    )
    return draw(st.lists(step, max_size=40))


@settings(max_examples=300, deadline=None)
@given(pod_scripts())
def test_ownership_never_leaves_the_uid_that_opened_a_stream(
    script: list[tuple[int, str, str]],
) -> None:
    pod = Pod()
    pod.intake.end_on_disconnect = True
    uids = [1000, 1000, 2000]
    sessions: list[tuple[Session, Recorder] | None] = [
        pod.connect(u, pid=i) for i, u in enumerate(uids)
    ]
    opener: dict[str, int] = {}  # stream -> uid that opened it
    closed: set[str] = set()
    for conn, kind, msg in script:
        pair = sessions[conn]
        if pair is None:
            pair = sessions[conn] = pod.connect(uids[conn], pid=conn)
        session, out = pair
        if kind == "disconnect":
            emitted = len(pod.records)
            session.connection_lost()
            sessions[conn] = None
            for r in pod.records[emitted:]:
                assert r.terminal_reason == "disconnect"
                assert r.writer_uid == uids[conn] == opener[r.message_id]
                closed.add(r.message_id)
            continue
        frame: dict[str, Callable[[str, str], dict[str, Any]]] = {
            "start": start,
            "delta": lambda t, m: text_delta(t, m, "x"),
            "done": done,
        }
        emitted = len(pod.records)
        replied = len(out.lines)
        session.receive_data(line(frame[kind]("t", msg)))
        owner = opener.get(msg)
        if msg in closed:
            assert out.replies()[-1]["code"] == "stream_closed"
            assert len(pod.records) == emitted
        elif owner is not None and owner != uids[conn]:
            assert out.replies()[-1]["code"] == "stream_owned"
            assert len(pod.records) == emitted  # nothing changed
        elif len(out.lines) == replied:
            opener.setdefault(msg, uids[conn])
        # Whatever happened, every record says which uid opened its stream.
        for r in pod.records[emitted:]:
            assert r.writer_uid == opener[r.message_id]
            if r.terminal_reason is not None:
                closed.add(r.message_id)
    # Streams a uid-2000 connection never opened carry no uid-2000 records, and v.v.
    per_stream: dict[str, set[int]] = {}
    seq_of: dict[str, list[int]] = {}
    for r in pod.records:
        per_stream.setdefault(r.message_id, set()).add(r.writer_uid)
        seq_of.setdefault(r.message_id, []).append(r.stream_seq)
    for msg, seqs in seq_of.items():
        # A stream reopened after its terminal is impossible (stream_closed), so one uid.
        assert len(per_stream[msg]) == 1, msg
        assert seqs == list(range(len(seqs)))


def test_admission_by_uid_and_gid() -> None:
    anyone = Admission.of((), ())
    assert anyone.admits(Peer(uid=5, gid=5, pid=1))
    only = Admission.of((1000,), (2000,))
    assert only.admits(Peer(uid=1000, gid=1, pid=1))
    assert only.admits(Peer(uid=7, gid=2000, pid=1))
    assert only.admits(Peer(uid=7, gid=7, pid=1, groups=(3, 2000)))
    assert not only.admits(Peer(uid=7, gid=7, pid=1, groups=(3,)))
    assert not only.admits(Peer(uid=0, gid=0, pid=1))  # root too must be listed


# -- failure 4: bounded, escaped echo -----------------------------------------------------


def test_replies_quote_a_bounded_escaped_prefix_of_client_ids() -> None:
    pod = Pod()
    s, out = pod.connect(uid=1)
    tid = "x" * 250 + "\u00e9"  # 251 chars, within the id limit
    s.receive_data(line(start(tid, "m")) + line(start(tid, "m")))
    (err,) = out.replies()
    assert err["code"] == "stream_exists"
    assert len(err["message"]) < 200
    assert "x" * 65 not in err["message"]
    # A 600 KB task id (failure 4's echo) is refused as invalid, quoted just as briefly.
    s.receive_data(line(start("y" * 600_000, "m")))
    big = out.lines[-1]
    assert len(big) <= MAX_REPLY_LINE
    assert orjson.loads(big)["code"] == "invalid_frame"


def test_a_newline_in_an_id_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    pod = Pod()
    s, out = pod.connect(uid=1)
    forged = 'x\n2026-01-01 CRITICAL sidecar: forged","level":"CRITICAL'
    s.receive_data(
        line({"type": "hello", "client": forged, "acks": "none"})
        + line(start(forged, "m"))
        + line(start("t", forged))
    )
    assert [r["code"] for r in out.replies()] == ["invalid_frame", "invalid_frame"]
    assert "control characters" in out.replies()[0]["message"]
    with caplog.at_level(logging.DEBUG, logger="sidecar"):
        s.receive_data(b'{"type":"start"')  # a partial line, logged at disconnect
        s.connection_lost()
    assert caplog.records, "the disconnect with a partial line is logged"
    for rec in caplog.records:
        text = rec.getMessage()
        assert "\n" not in text and '"level"' not in text, text
        assert len(text) < 400


@given(st.binary(max_size=2000), st.integers(1, 64))
@settings(max_examples=300, deadline=None)
def test_any_input_yields_bounded_single_line_replies(data: bytes, cut: int) -> None:
    pod = Pod()
    s, out = pod.connect(uid=1)
    for i in range(0, len(data), cut):
        s.receive_data(data[i : i + cut])
    s.receive_data(b"\n")
    for reply in out.lines:
        assert len(reply) <= MAX_REPLY_LINE
        assert reply.endswith(b"\n") and reply.count(b"\n") == 1
        assert orjson.loads(reply)["type"] in ("error", "ack")
