"""Who is on the other end of a connection (SO_PEERCRED), and whether it may connect.

The kernel records the peer's uid, gid and pid when it connects; nothing the client
sends can change them, so they are what stream ownership and `--allowed-uids` /
`--allowed-gids` rest on (PROTOCOL §1).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection
from dataclasses import dataclass

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# SO_PEERGROUPS (Linux 4.13+): the peer's supplementary groups. Python names it only
# on some builds; its value is fixed by the kernel ABI.
_SO_PEERGROUPS: int = getattr(socket, "SO_PEERGROUPS", 59)
_MAX_GROUPS = 256


@dataclass(frozen=True, slots=True)
class Peer:
    uid: int
    gid: int
    pid: int
    groups: tuple[int, ...] = ()  # supplementary groups, when the kernel tells them

    def __str__(self) -> str:
        return f"uid {self.uid} gid {self.gid} pid {self.pid}"


def peer_of(sock: socket.socket) -> Peer:
    """The credentials the kernel recorded when the peer connected."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    groups: tuple[int, ...] = ()
    try:
        buf = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * _MAX_GROUPS)
    except OSError:
        pass  # older kernel, or more groups than we asked room for: primary gid only
    else:
        groups = struct.unpack(f"{len(buf) // 4}I", buf[: len(buf) // 4 * 4])
    return Peer(uid=uid, gid=gid, pid=pid, groups=groups)


@dataclass(frozen=True, slots=True)
class Admission:
    """`--allowed-uids` / `--allowed-gids`: both empty admits anyone who can open the
    socket; otherwise a peer is admitted if its uid is listed, or its gid or one of its
    supplementary groups is."""

    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, uids: Collection[int], gids: Collection[int]) -> Admission:
        return cls(frozenset(uids), frozenset(gids))

    def admits(self, peer: Peer) -> bool:
        if not self.uids and not self.gids:
            return True
        if peer.uid in self.uids or peer.gid in self.gids:
            return True
        return not self.gids.isdisjoint(peer.groups)
