"""What travels on a same-host link (``transport/links.py``): compact binary frames, each
message defined once here and decoded strictly.

A link is a unix stream connection from a producer's output to one consumer; a frame is a
16-byte prefix (header length, payload length, the link's frame number), a msgpack header
and, for an inline message, its payload. Headers are msgspec structs encoded as arrays
(``array_like``, tagged with a small int), so a data header is about 120 bytes and decodes
in about a microsecond, where the JSON header of the zenoh path (``messages.Header``) takes
five. Metadata travels as the same JSON as on the zenoh path (``messages.check_metadata``'s
rules), so it arrives as JSON types only, whichever path it took.

Producer to consumer: :class:`Hello` (first frame: who is speaking, proven with the key the
pair shares), :class:`Pool` (map this segment now, before its first frame), :class:`Data`
(an inline payload, or the slot that holds it) and :class:`End` (the output closed).
Consumer to producer: :class:`Welcome` (first frame back: the consumer's proof) and
:class:`Release` (slots it is done with). Anything else, or any field out of range, is a
``DescriptorError`` naming the message.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any

import msgspec

from pinflow.errors import DescriptorError
from pinflow.protocol import messages
from pinflow.protocol.messages import Count, Layout, NodeId

VERSION = 1
PREFIX = struct.Struct("<IIQ")
"""Header length, payload length, and the frame's number on its link (counting every frame
the producer wrote or dropped: a gap is what it dropped)."""
NONCE_BYTES = 16
MAC_BYTES = 16
MAX_FIRST_HEADER_BYTES = 1024
"""Largest first frame a consumer reads before it knows who is speaking (a Hello)."""
MAX_HEADER_BYTES = messages.MAX_HEADER_BYTES
MAX_PAYLOAD_BYTES = 1 << 30
"""Largest inline payload on a link (inline payloads are below the output's threshold)."""

_Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE_BYTES, max_length=NONCE_BYTES)]
_Mac = Annotated[bytes, msgspec.Meta(min_length=MAC_BYTES, max_length=MAC_BYTES)]
_Index = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class Hello(msgspec.Struct, array_like=True, frozen=True, tag=1, forbid_unknown_fields=True):
    """First frame of a link: the producer's output and the consumer it means, with a MAC
    (``transport/auth.py``) that only the producer can make for this consumer."""

    version: int
    producer: NodeId
    output: NodeId
    consumer: NodeId
    nonce: _Nonce
    mac: _Mac


class Welcome(msgspec.Struct, array_like=True, frozen=True, tag=2, forbid_unknown_fields=True):
    """First frame back: the consumer's MAC over the producer's nonce, so the producer takes
    releases only from the consumer it meant to reach."""

    mac: _Mac


class Pool(msgspec.Struct, array_like=True, frozen=True, tag=3, forbid_unknown_fields=True):
    """The producer made (or uses) this segment: map it now, not with the first frame."""

    segment: str


class Slot(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """Where a shared-memory payload is: checked against the segment's header before any
    byte of it is read (``transport/pool.py`` ``SlotReader``)."""

    segment: str
    index: _Index
    offset: Count
    length: Count
    generation: Count

    def ref(self, lent_to: frozenset[str]) -> messages.SlotRef:
        return messages.SlotRef(self.segment, self.index, self.offset, self.length,
                                self.generation, lent_to)


class Data(msgspec.Struct, array_like=True, frozen=True, tag=4, forbid_unknown_fields=True):
    """One message: inline (``slot`` is None, the payload follows the header) or in a slot
    lent to this consumer (a link carries only the slots lent to its consumer)."""

    seq: Count
    sent_ns: Count
    layout: Layout
    metadata: bytes = b""
    """JSON of the sender's metadata (``messages.metadata_json``; ``b""``: none)."""
    slot: Slot | None = None


class End(msgspec.Struct, array_like=True, frozen=True, tag=5, forbid_unknown_fields=True):
    """The producer closed the output: nothing follows."""

    seq: Count
    run_stopping: bool = False
    """It closed because the run is stopping (the producer saw the launcher's stop): the
    consumer stops now too, as it soon would anyway, instead of taking its inputs' end for
    the end of its own stream (ALL_INPUTS_CLOSED) because the link outran zenoh's STOP."""


class Release(msgspec.Struct, array_like=True, frozen=True, tag=6, forbid_unknown_fields=True):
    """Slots of one segment the consumer is done with, as (index, generation)."""

    segment: str
    slots: Annotated[list[tuple[_Index, Count]], msgspec.Meta(max_length=messages.MAX_RELEASES)]


ToConsumer = Hello | Pool | Data | End
ToProducer = Welcome | Release

encode = msgspec.msgpack.Encoder().encode
"""The bytes of one frame header (any message above)."""
_TO_CONSUMER = msgspec.msgpack.Decoder(ToConsumer).decode
_TO_PRODUCER = msgspec.msgpack.Decoder(ToProducer).decode
_METADATA = msgspec.json.Decoder(dict[str, Any]).decode
_UNDECODABLE = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


def _refusal(what: str, exc: Exception) -> DescriptorError:
    if isinstance(exc, msgspec.ValidationError):
        return DescriptorError(f"{what} is invalid: {exc}")
    if isinstance(exc, msgspec.DecodeError):
        return DescriptorError(f"{what} is not a frame header: {exc}")
    return DescriptorError(f"{what} is nested too deep to decode")


def decode_to_consumer(raw: bytes) -> Hello | Pool | Data | End:
    """A header a producer sent; ``DescriptorError`` for anything that is not one."""
    try:
        return _TO_CONSUMER(raw)  # type: ignore[no-any-return]
    except _UNDECODABLE as exc:
        raise _refusal("link frame", exc) from None


def decode_to_producer(raw: bytes) -> Welcome | Release:
    """A header a consumer sent back; ``DescriptorError`` for anything that is not one."""
    try:
        return _TO_PRODUCER(raw)  # type: ignore[no-any-return]
    except _UNDECODABLE as exc:
        raise _refusal("link frame from a consumer", exc) from None


def decode_metadata(raw: bytes) -> dict[str, Any]:
    """A data frame's metadata, under the zenoh path's rules (JSON, at most
    ``MAX_METADATA_DEPTH`` levels deep)."""
    if not raw:
        return {}
    if len(raw) > MAX_HEADER_BYTES:
        raise DescriptorError(f"message metadata of {len(raw)} bytes is too large")
    try:
        metadata: dict[str, Any] = _METADATA(raw)
    except msgspec.ValidationError as exc:
        raise DescriptorError(f"message metadata is invalid: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DescriptorError(f"message metadata is not JSON: {exc}") from None
    except RecursionError:
        raise DescriptorError("message metadata is nested too deep to decode") from None
    for value in metadata.values():
        if type(value) in (dict, list):
            messages.check_depth(metadata)
            break
    return metadata
