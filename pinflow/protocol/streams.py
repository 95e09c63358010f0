"""Direct streams between two hosts' gateways: what goes on the TCP connection.

A stream carries one output's messages from the gateway of its producer's host to the
gateway of one host that consumes it (``transport/streams.py`` moves the bytes). The
connecting side speaks first with a :class:`Hello` naming the run and the output; then each
frame is :data:`PREFIX` (header length, payload length), the message's header (a
:class:`~pinflow.protocol.messages.Header` of kind ``inline`` or ``eos``, checked on arrival
like any header) and the payload, which the receiver reads straight into a slot.
"""

from __future__ import annotations

import struct

import msgspec

from pinflow.protocol import messages
from pinflow.protocol.messages import NodeId
from pinflow.protocol.strict import StrictCodec

VERSION = 1
PREFIX = struct.Struct("<IQ")
"""(header bytes, payload bytes) before each frame."""
MAX_HELLO_BYTES = 1024


class Hello(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The first frame of a stream: which run and output the frames after it belong to."""

    version: int
    run_id: NodeId
    node: NodeId
    output: NodeId


HELLO: StrictCodec[Hello] = StrictCodec(Hello, "stream hello", max_bytes=MAX_HELLO_BYTES)


def hello(run_id: str, node: str, output: str) -> bytes:
    """The first bytes a connecting gateway writes: prefix and :class:`Hello`."""
    body = HELLO.encode(Hello(VERSION, run_id, node, output))
    return PREFIX.pack(len(body), 0) + body


def frame_head(header: messages.Header, payload_bytes: int) -> bytes:
    """What goes before a message's payload: prefix and header."""
    body = header.encode()
    return PREFIX.pack(len(body), payload_bytes) + body


def address_part(host: str, port: int) -> str:
    """A listening address as one key component (hex: any host name or IP fits)."""
    return f"{host}|{port}".encode().hex()


def parse_address_part(part: str) -> tuple[str, int] | None:
    """The ``(host, port)`` of :func:`address_part`; None if ``part`` is not one."""
    try:
        host, _, port = bytes.fromhex(part).decode().rpartition("|")
        number = int(port)
    except ValueError:
        return None
    return (host, number) if host and 0 < number < 65536 else None
