"""The wire protocol, sans-IO: framing, frame decoding, replies (PROTOCOL §2-3)."""

from sidecar.protocol.frames import DELTA_TYPES, FrameError, decode_frame
from sidecar.protocol.framing import Line, LineFramer, Oversize
from sidecar.protocol.replies import (
    ErrorCode,
    decode_reply,
    encode_ack,
    encode_error,
    encode_hello,
)

__all__ = [
    "DELTA_TYPES",
    "ErrorCode",
    "FrameError",
    "Line",
    "LineFramer",
    "Oversize",
    "decode_frame",
    "decode_reply",
    "encode_ack",
    "encode_error",
    "encode_hello",
]
