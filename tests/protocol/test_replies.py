"""Replies (PROTOCOL §3) and the client's hello: exact bytes, and decoding them back."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar_client.protocol import (
    ERROR_CODES,
    ErrorCode,
    decode_frame,
    decode_reply,
    encode_ack,
    encode_error,
    encode_hello,
)
from sidecar_client.protocol.model import Hello


def test_error_codes_are_those_of_the_contract() -> None:
    assert set(ERROR_CODES) == {
        "invalid_json",
        "invalid_frame",
        "frame_too_large",
        "stream_exists",
        "stream_closed",
        "delivery_failed",
        "stream_owned",  # PROTOCOL v1.1 §2.2
        "shutting_down",
    }
    assert str(ErrorCode.FRAME_TOO_LARGE) == "frame_too_large"


def test_replies_are_exactly_the_contract() -> None:
    assert encode_ack(12, 3, 1845) == b'{"type":"ack","seq":12,"partition":3,"offset":1845}\n'
    assert (
        encode_error(7, "invalid_json", "bad")
        == b'{"type":"error","seq":7,"code":"invalid_json","message":"bad"}\n'
    )
    # An enum member is written as its plain value.
    assert encode_error(1, ErrorCode.SHUTTING_DOWN, "x") == encode_error(1, "shutting_down", "x")


def test_a_reply_is_one_line_whatever_the_message() -> None:
    err = encode_error(7, "invalid_frame", 'a "quoted"\nmulti-line message \u00e9')
    assert err.count(b"\n") == 1
    assert err.endswith(b"\n")
    assert orjson.loads(err)["message"] == 'a "quoted"\nmulti-line message \u00e9'


def test_an_unencodable_message_still_gives_an_error_line() -> None:
    err = encode_error(1, "invalid_frame", "lone \ud800 surrogate")
    assert decode_reply(err)["message"] == "lone \\ud800 surrogate"


@pytest.mark.parametrize(
    ("client", "acks", "line", "hello"),
    [
        (None, "none", b'{"type":"hello","acks":"none"}\n', Hello(None, "none")),
        ("a/1", "all", b'{"type":"hello","acks":"all","client":"a/1"}\n', Hello("a/1", "all")),
        ("b", "terminal", None, Hello("b", "terminal")),
    ],
)
def test_hello_is_what_the_sidecar_decodes(
    client: str | None, acks: str, line: bytes | None, hello: Hello
) -> None:
    encoded = encode_hello(client, acks)
    if line is not None:
        assert encoded == line
    assert encoded.endswith(b"\n")
    assert decode_frame(encoded[:-1]) == hello


def test_decode_reply() -> None:
    assert decode_reply(encode_ack(1, 0, 5)) == {
        "type": "ack",
        "seq": 1,
        "partition": 0,
        "offset": 5,
    }
    err = decode_reply(b'{"type":"error","seq":2,"code":"stream_closed","message":"m","x":1}')
    assert err == {"type": "error", "seq": 2, "code": "stream_closed", "message": "m", "x": 1}


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"[1]\n",
        b'{"type":"delta"}\n',
        b'{"type":["ack"],"seq":1}\n',
        b'{"type":"ack","seq":1,"partition":0}\n',
        b'{"type":"ack","seq":true,"partition":0,"offset":0}\n',
        b'{"type":"ack","seq":"1","partition":0,"offset":0}\n',
        b'{"type":"error","seq":1,"code":"x"}\n',
        b'{"type":"error","seq":1,"code":null,"message":"m"}\n',
    ],
)
def test_decode_reply_rejects_what_is_not_a_reply(line: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (orjson's decode error is a ValueError too)
        decode_reply(line)


u64 = st.integers(0, 2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(u64, u64, u64, st.sampled_from(sorted(ERROR_CODES)), st.text())
def test_fuzz_replies_round_trip(
    seq: int, partition: int, offset: int, code: str, message: str
) -> None:
    ack = decode_reply(encode_ack(seq, partition, offset))
    assert ack == {"type": "ack", "seq": seq, "partition": partition, "offset": offset}
    err = decode_reply(encode_error(seq, code, message))
    assert err == {"type": "error", "seq": seq, "code": code, "message": message}
