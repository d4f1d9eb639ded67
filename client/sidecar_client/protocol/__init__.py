"""The wire protocol, sans-IO: framing, frame decoding, replies (PROTOCOL §2-3).

Plain synchronous code with no I/O, shared by the server, the client library and the
fuzzer: bytes go in, events and reply bytes come out.
"""

from sidecar_client.protocol.frames import (
    ACK_MODES,
    DELTA_TYPES,
    UPDATE_KINDS,
    DeltaSpec,
    FrameError,
    decode_frame,
)
from sidecar_client.protocol.framing import Event, Line, LineFramer, Oversize
from sidecar_client.protocol.replies import (
    ERROR_CODES,
    MAX_REPLY_LINE,
    ErrorCode,
    Rejection,
    decode_reply,
    encode_ack,
    encode_error,
    encode_hello,
)
from sidecar_client.protocol.templates import FrameDecoder

__all__ = [
    "ACK_MODES",
    "DELTA_TYPES",
    "ERROR_CODES",
    "MAX_REPLY_LINE",
    "UPDATE_KINDS",
    "DeltaSpec",
    "ErrorCode",
    "Event",
    "FrameDecoder",
    "FrameError",
    "Line",
    "LineFramer",
    "Oversize",
    "Rejection",
    "decode_frame",
    "decode_reply",
    "encode_ack",
    "encode_error",
    "encode_hello",
]
