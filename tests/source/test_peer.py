"""A second user on a real socket (SO_PEERCRED): it cannot touch another agent's streams,
and `--allowed-uids` keeps it out altogether (issue 10 failure 3)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from sidecar.sink.memory import MemorySink
from tests.helpers import RawClient, done, line, make_config, open_server, start, text_delta
from tests.users import User

# The attacker's side: stdlib only, runs as the other user. Sends its lines, half-closes,
# prints every reply it gets until the sidecar closes the connection.
ATTACK = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(sys.argv[2].encode())
    s.shutdown(socket.SHUT_WR)
except (BrokenPipeError, ConnectionResetError):  # refused before (or while) we wrote
    pass
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except ConnectionResetError:  # refused: closed with our lines unread
        break
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned 0755 folder other users can reach (pytest's tmp_path is private)."""
    d = Path(tempfile.mkdtemp(prefix="sidecar-peer-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def test_another_users_frames_for_my_stream_are_stream_owned(
    shared_dir: Path, other_user: User
) -> None:
    sink = MemorySink()
    config = make_config(shared_dir, socket_mode=0o666)
    async with open_server(config, sink) as server:
        me = await RawClient.connect(config.socket)
        await me.send({"type": "hello", "acks": "all"}, start("task", "mine"))
        await me.send(text_delta("task", "mine", "real "))
        assert [r["type"] for r in await me.read_replies(2)] == ["ack", "ack"]
        forged = b"".join(
            line(x)
            for x in (
                text_delta("task", "mine", "FORGED"),
                done("task", "mine"),
                start("task", "theirs"),
                done("task", "theirs"),
            )
        )
        out = await other_user.run(ATTACK, str(config.socket), forged.decode())
        replies = [orjson.loads(x) for x in out.splitlines()]
        assert [(r["seq"], r.get("code")) for r in replies] == [
            (1, "stream_owned"),
            (2, "stream_owned"),
        ]
        # The attacker's own stream is its own, stamped with its uid; my stream is open,
        # untouched, even though the attacker disconnected.
        assert server.table.open_count == 1
        await me.send(text_delta("task", "mine", "end"), done("task", "mine"))
        await me.read_replies(4)
        streams = sink.by_stream()
        mine = streams[("task", "mine")]
        assert [r.kind for r in mine] == ["start", "delta", "delta", "done"]
        assert mine[-1].terminal_reason == "client"
        assert b"FORGED" not in b"".join(r.value for r in mine)
        assert {dict(r.headers())["writer_uid"] for r in mine} == {str(os.getuid()).encode()}
        theirs = streams[("task", "theirs")]
        assert [r.kind for r in theirs] == ["start", "done"]
        assert {r.writer_uid for r in theirs} == {other_user.uid}
        await me.aclose()


async def test_allowed_uids_shut_out_other_users(shared_dir: Path, other_user: User) -> None:
    sink = MemorySink()
    config = make_config(shared_dir, socket_mode=0o666, allowed_uids=(os.getuid(),))
    async with open_server(config, sink) as server:
        out = await other_user.run(ATTACK, str(config.socket), line(start("t", "x")).decode())
        assert out == ""  # closed at once: no reply, nothing produced
        assert server.metrics.sample("sidecar_connections_refused_total") == 1
        me = await RawClient.connect(config.socket)
        await me.send({"type": "hello", "acks": "terminal"}, start("t", "y"), done("t", "y"))
        assert (await me.read_replies(1))[0]["type"] == "ack"
        assert set(sink.by_stream()) == {("t", "y")}
        await me.aclose()


async def test_allowed_gids_admit_a_listed_group(shared_dir: Path, other_user: User) -> None:
    sink = MemorySink()
    config = make_config(shared_dir, socket_mode=0o666, allowed_gids=(other_user.gid,))
    async with open_server(config, sink):
        msgs = line(start("t", "g")) + line(done("t", "g"))
        assert await other_user.run(ATTACK, str(config.socket), msgs.decode()) == ""
        await sink.wait_for(lambda s: ("t", "g") in s.by_stream() and len(s.records) == 2)
        me = await RawClient.connect(config.socket)  # root's gid 0 is not listed
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await me.send(start("t", "root"))  # may race the refusal
            assert await me.reader.read() == b""
        assert ("t", "root") not in sink.by_stream()
        await me.aclose()
