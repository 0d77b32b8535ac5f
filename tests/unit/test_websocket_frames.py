"""RFC 6455 framing (agora/wire/websocket.py): the handshake token, masking, frame
lengths at their encoding boundaries, and the incremental reader's rules."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.wire import websocket as wsf

KEY = b"\x01\x02\x03\x04"


def naive_mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_accept_token_is_the_rfcs_example():
    assert wsf.accept_token(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert wsf.valid_key(b"dGhlIHNhbXBsZSBub25jZQ==")
    assert not wsf.valid_key(b"dGhlIHNhbXBsZQ==")  # 11 bytes
    assert not wsf.valid_key(b"not base64 at all!")


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
def test_masking_is_the_xor_of_the_repeated_key(payload: bytes, key: bytes):
    assert wsf.mask(payload, key) == naive_mask(payload, key)
    assert wsf._mask_by_integers(payload, key) == naive_mask(payload, key)
    assert wsf.mask(wsf.mask(payload, key), key) == payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_frames_round_trip_at_every_length_encoding(size: int):
    payload = os.urandom(size)
    masked = wsf.FrameReader(masked=True, max_size=1 << 20)
    assert masked.feed(wsf.frame(wsf.OP_BINARY, payload, KEY)) == [(wsf.OP_BINARY, payload)]
    plain = wsf.FrameReader(masked=False, max_size=1 << 20)
    assert plain.feed(wsf.frame(wsf.OP_TEXT, payload)) == [(wsf.OP_TEXT, payload)]


def test_bytes_may_arrive_one_at_a_time():
    data = wsf.frame(wsf.OP_BINARY, b"hello", KEY) + wsf.frame(wsf.OP_PING, b"p", KEY)
    reader = wsf.FrameReader(masked=True, max_size=100)
    got = [message for byte in data for message in reader.feed(bytes([byte]))]
    assert got == [(wsf.OP_BINARY, b"hello"), (wsf.OP_PING, b"p")]


def _fragment(opcode: int, payload: bytes, fin: bool) -> bytes:
    whole = bytearray(wsf.frame(opcode, payload, KEY))
    if not fin:
        whole[0] &= 0x7F
    return bytes(whole)


def test_fragments_are_joined_and_control_frames_may_come_between():
    reader = wsf.FrameReader(masked=True, max_size=100)
    data = (
        _fragment(wsf.OP_BINARY, b"ab", fin=False)
        + _fragment(wsf.OP_PING, b"", fin=True)
        + _fragment(wsf.OP_CONTINUATION, b"cd", fin=False)
        + _fragment(wsf.OP_CONTINUATION, b"e", fin=True)
    )
    assert reader.feed(data) == [(wsf.OP_PING, b""), (wsf.OP_BINARY, b"abcde")]


@pytest.mark.parametrize(
    ("data", "masked", "code"),
    [
        (wsf.frame(wsf.OP_BINARY, b"x"), True, wsf.CLOSE_PROTOCOL_ERROR),  # unmasked
        (wsf.frame(wsf.OP_BINARY, b"x", KEY), False, wsf.CLOSE_PROTOCOL_ERROR),  # masked
        (bytes([0xC2, 0x80]) + KEY, True, wsf.CLOSE_PROTOCOL_ERROR),  # RSV1 (compression)
        (wsf.frame(0x3, b"", KEY), True, wsf.CLOSE_PROTOCOL_ERROR),  # reserved opcode
        (wsf.frame(wsf.OP_CONTINUATION, b"x", KEY), True, wsf.CLOSE_PROTOCOL_ERROR),
        (_fragment(wsf.OP_PING, b"", fin=False), True, wsf.CLOSE_PROTOCOL_ERROR),
        (wsf.frame(wsf.OP_PING, b"p" * 126, KEY), True, wsf.CLOSE_PROTOCOL_ERROR),
        (wsf.frame(wsf.OP_BINARY, b"x" * 101, KEY), True, wsf.CLOSE_TOO_BIG),
        (
            _fragment(wsf.OP_BINARY, b"x" * 60, False)
            + _fragment(wsf.OP_CONTINUATION, b"x" * 60, True),
            True,
            wsf.CLOSE_TOO_BIG,
        ),
        (
            _fragment(wsf.OP_BINARY, b"x", False) + _fragment(wsf.OP_BINARY, b"y", True),
            True,
            wsf.CLOSE_PROTOCOL_ERROR,
        ),
    ],
)
def test_broken_frames_are_refused_with_the_close_code_to_answer(
    data: bytes, masked: bool, code: int
):
    reader = wsf.FrameReader(masked=masked, max_size=100)
    with pytest.raises(wsf.FrameError) as raised:
        reader.feed(data)
    assert raised.value.code == code


def test_close_payload_carries_code_and_a_short_reason():
    payload = wsf.close_payload(wsf.CLOSE_NORMAL, "bye" * 100)
    assert payload[:2] == b"\x03\xe8" and len(payload) == wsf.MAX_CONTROL_PAYLOAD
    assert wsf.close_reason(wsf.close_payload(1000, "bye")) == "bye"
    assert wsf.close_reason(b"") == ""
