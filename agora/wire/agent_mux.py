"""The multiplexed agent channel: the messages of many agents over one WebSocket.

Why: a master process can hold only as many sockets as its open-file limit allows
(20,000 on some hosts, and raising the hard limit is not always permitted), while one
master is meant to serve more agents than that; and a host that runs many agents
(a simulator, a test swarm, a proxy in front of a rack) should not need a socket each.

Opening: the upgrade of the plain channel (`agent_channel.PATH` with
`Agora-Agent-Protocol: 1`) plus the header `Agora-Agent-Mux: 1`.

Frames: each binary frame is a msgpack array of `[key, message]` pairs. `key` is an
unsigned integer below 2**32 that the client picks to name one agent on this
connection; `message` is exactly a message of the plain protocol (REGISTER,
REREGISTER, PONG, ... one way; REGISTERED, PING, RUN_TASK, ... the other). Either side
may batch pairs of many agents into one frame.

Attachment: the first message under a key attaches that agent: the master gives it a
connection of its own (its own connection id), so the master core cannot tell a
multiplexed agent from one with a socket of its own. `{"type": "DETACH", "message":
...}` under a key ends that agent's connection, from either side: the master sends it
wherever it would close an agent's own socket (the agent was refused or told to shut
down, or it sent a message the master cannot read), and an agent sends it to
disconnect. A later message under the same key attaches a new connection. Closing the
WebSocket detaches every agent on it; a frame that is not an array of pairs closes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from agora.wire.mesos_json import Json, WireError

MUX_HEADER = "Agora-Agent-Mux"
MUX_VERSION = "1"
DETACH = "DETACH"
MAX_KEY = 2**32 - 1

Pair = tuple[int, Mapping[str, Any]]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_mux_frame(pairs: Sequence[tuple[int, Json | msgspec.Raw]]) -> bytes:
    """One frame of `[key, message]` pairs; a message may be given already encoded
    (`msgspec.Raw` of its msgpack bytes), as a sender that repeats it can do."""
    return _encoder.encode([[key, message] for key, message in pairs])


def decode_mux_frame(data: bytes) -> list[Pair]:
    try:
        items = _decoder.decode(data)
    except msgspec.DecodeError as error:
        raise WireError(f"multiplexed agent frame is not msgpack: {error}") from None
    if not isinstance(items, list):
        raise WireError("multiplexed agent frame must be a list of [key, message] pairs")
    pairs: list[Pair] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2):
            raise WireError("multiplexed agent frame must be a list of [key, message] pairs")
        key, message = item
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= MAX_KEY:
            raise WireError(f"multiplexed agent key must be an integer in [0, {MAX_KEY}]")
        if not isinstance(message, dict):
            raise WireError("multiplexed agent message must be a map")
        pairs.append((key, message))
    return pairs


_pairs_decoder = msgspec.msgpack.Decoder(list[tuple[int, msgspec.Raw]])


def decode_mux_pairs(data: bytes) -> list[tuple[int, msgspec.Raw]]:
    """`decode_mux_frame` with each message left encoded, for a receiver that decodes
    messages by their type (the master: agent_channel.master_event)."""
    try:
        pairs = _pairs_decoder.decode(data)
    except msgspec.ValidationError:
        raise WireError("multiplexed agent frame must be a list of [key, message] pairs") from None
    except msgspec.DecodeError as error:
        raise WireError(f"multiplexed agent frame is not msgpack: {error}") from None
    for key, _ in pairs:
        if not 0 <= key <= MAX_KEY:
            raise WireError(f"multiplexed agent key must be an integer in [0, {MAX_KEY}]")
    return pairs


def detach(message: str, refused: bool = False) -> Json:
    """End one agent's connection on a multiplexed socket (either direction)."""
    out: Json = {"type": DETACH, "message": message}
    if refused:
        out["refused"] = True
    return out


def is_detach(message: Mapping[str, Any]) -> bool:
    return message.get("type") == DETACH
