"""The typed definitions of the data plane's messages: the header every data message carries
(with the payload's layout and, for shared memory, the slot it names), the release a consumer
sends back, and the held-slots query and answer. Each is defined once, here, and decoded
strictly (:mod:`pinflow.protocol.strict`).

A header is JSON, small and versioned, carried as the zenoh attachment. ``kind`` says where
the payload is: ``inline`` (the zenoh payload itself), ``shm`` (a slot descriptor: the bytes
are in a shared-memory segment) or ``eos`` (the producer closed the output; no payload; one
MAC per consumer proves it comes from the producer, see ``transport/auth.py``).

Whatever a peer sends is decoded against these types before any of it is used: wrong or
missing fields, numbers outside 0..2^63-1, oversized headers and JSON nested too deep are a
``DescriptorError``, never an exception from deeper down. Metadata follows the rules of
:func:`check_metadata` on the way out.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec

from pinflow.errors import DescriptorError, PayloadError
from pinflow.protocol.strict import StrictCodec, encode

VERSION = 1
KINDS = ("inline", "shm", "eos")
INT64_MAX = 2**63 - 1
MAX_METADATA_BYTES = 64 * 1024
"""Largest metadata a message may carry, as encoded JSON: metadata travels in every
message's header, so large data belongs in the payload."""
MAX_METADATA_DEPTH = 32
"""Deepest nesting of dicts and lists in metadata."""
MAX_HEADER_BYTES = 2 * MAX_METADATA_BYTES
"""Largest header a receiver decodes at all (metadata plus everything else)."""
MAX_RELEASES = 1024
"""Most (slot, generation) pairs in one release message."""
MAX_RELEASE_BYTES = 64 * 1024
MAX_DIMS = 32
"""Most dimensions a tensor payload may have."""
_UINT64_MAX = 2**64 - 1

Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
"""A sequence number, time, index or size: a non-negative int that fits in an int64."""
NodeId = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_-]+\Z")]
"""A node id (the rule of ``pinflow.spec.units``) as it may appear in a message."""
MAX_LENT_TO = 1024
"""Most consumers one slot descriptor may name (an output has far fewer)."""


class TensorLayout(msgspec.Struct, frozen=True, tag="nd", tag_field="k",
                   forbid_unknown_fields=True):
    """A C-contiguous tensor: the payload is its raw memory. Received as a flat pyarrow
    array of ``dt`` (zero-copy); ``to_numpy()`` restores the shape ``sh``."""

    dt: str
    """numpy dtype string in the sender's byte order, e.g. ``<f4`` (``transport/codec.py``
    accepts only the dtypes every receiver decodes)."""
    sh: Annotated[list[Count], msgspec.Meta(max_length=MAX_DIMS)]
    src: Literal["numpy", "arrow", "bytes", "torch"] = "numpy"
    """What the sender passed, so receivers can offer the same kind back."""


class ArrowLayout(msgspec.Struct, frozen=True, tag="arrow", tag_field="k",
                  forbid_unknown_fields=True):
    """Any other Arrow array, as an IPC stream with one batch of one column ``v``."""

    src: Literal["arrow"] = "arrow"


Layout = TensorLayout | ArrowLayout
"""The payload's layout, in every data message that carries one (``"l"``)."""


class SlotRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a descriptor names: enough for a consumer to find and verify the bytes
    (``transport/pool.py`` ``SlotReader`` checks it against the segment's header)."""

    segment: str = msgspec.field(name="seg")
    index: Count = msgspec.field(name="idx")
    offset: Count = msgspec.field(name="off")
    length: Count = msgspec.field(name="len")
    generation: Count = msgspec.field(name="gen")
    lent_to: Annotated[frozenset[NodeId], msgspec.Meta(max_length=MAX_LENT_TO)] = (
        msgspec.field(name="to"))
    """The consumers this generation of the slot is lent to, each owing one release. No
    other may read it: the producer writes the slot again once these are done."""


class Header(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The header of one data message (wire names in ``field(name=...)``)."""

    version: Literal[1] = msgspec.field(name="v")
    kind: Literal["inline", "shm", "eos"] = msgspec.field(name="k")
    seq: Count = msgspec.field(name="s")
    sent_ns: Count = msgspec.field(name="t")
    layout: Layout | None = msgspec.field(default=None, name="l")
    metadata: dict[str, Any] = msgspec.field(default_factory=dict, name="m")
    slot: SlotRef | None = msgspec.field(default=None, name="d")
    """For ``shm``: the slot that holds the payload."""
    auth: dict[str, str] = msgspec.field(default_factory=dict, name="a")
    """For ``eos``: consumer id -> MAC with the key that consumer shares with the producer."""

    def __post_init__(self) -> None:
        if self.metadata is None:
            self.metadata = {}
        if self.kind != "eos" and self.layout is None:
            raise ValueError(f"a {self.kind!r} message needs a layout ('l')")
        if self.kind == "shm" and self.slot is None:
            raise ValueError("an 'shm' message needs a slot descriptor ('d')")

    @classmethod
    def new(cls, kind: str, seq: int, sent_ns: int, *, layout: Layout | None = None,
            metadata: dict[str, Any] | None = None, slot: SlotRef | None = None,
            auth: dict[str, str] | None = None) -> Header:
        return cls(version=VERSION, kind=kind, seq=seq, sent_ns=sent_ns,  # type: ignore[arg-type]
                   layout=layout, metadata=metadata or {}, slot=slot, auth=auth or {})

    def encode(self) -> bytes:
        try:
            return HEADER.encode(self)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise PayloadError(f"message header cannot be encoded: {exc}") from None


class Release(msgspec.Struct, forbid_unknown_fields=True):
    """Slots of one segment a consumer is done with. The consumer is named by the key it is
    published on and proven by the MAC in the attachment, never by the body."""

    segment: str = msgspec.field(name="seg")
    slots: Annotated[list[tuple[Count, Count]], msgspec.Meta(max_length=MAX_RELEASES)] = (
        msgspec.field(name="r"))
    """(slot index, generation) pairs."""

    def encode(self) -> bytes:
        return RELEASE.encode(self)


NONCE_BYTES = 16
MAX_HELD = 4 * 250
"""Most slots one held-slots answer may name (a few pools of at most 250 slots)."""
MAX_HELD_BYTES = 256 * 1024


class HeldQuery(msgspec.Struct, forbid_unknown_fields=True):
    """A producer asks a consumer which of its slots it still holds (after a lost link).
    The nonce makes the signed answer good for this question only."""

    producer: str = msgspec.field(name="p")
    nonce: str = msgspec.field(name="n")
    """Hex, ``NONCE_BYTES`` random bytes."""

    def encode(self) -> bytes:
        return HELD_QUERY.encode(self)


class HeldReply(msgspec.Struct, forbid_unknown_fields=True):
    """A consumer's answer: the (segment, slot index, generation) of the asker's slots it
    still holds; proven by the MAC in the attachment."""

    consumer: str = msgspec.field(name="c")
    held: Annotated[list[tuple[str, Count, Count]], msgspec.Meta(max_length=MAX_HELD)]

    def encode(self) -> bytes:
        return HELD_REPLY.encode(self)


HEADER: StrictCodec[Header] = StrictCodec(Header, "message header", max_bytes=MAX_HEADER_BYTES)
RELEASE: StrictCodec[Release] = StrictCodec(Release, "release", max_bytes=MAX_RELEASE_BYTES)
HELD_QUERY: StrictCodec[HeldQuery] = StrictCodec(HeldQuery, "held-slots query", max_bytes=1024)
HELD_REPLY: StrictCodec[HeldReply] = StrictCodec(HeldReply, "held-slots answer",
                                                 max_bytes=MAX_HELD_BYTES)


def decode_held_query(raw: bytes) -> HeldQuery:
    ask = HELD_QUERY.decode(raw)
    try:
        nonce = bytes.fromhex(ask.nonce)
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_BYTES:
        raise DescriptorError(f"held-slots query nonce must be {NONCE_BYTES} bytes of hex")
    return ask


def decode_held_reply(raw: bytes) -> HeldReply:
    return HELD_REPLY.decode(raw)


def decode(raw: bytes) -> Header:
    """Decode and check a received header; ``DescriptorError`` on anything unexpected."""
    header = HEADER.decode(raw)
    check_depth(header.metadata)
    return header


def check_depth(metadata: dict[str, Any]) -> None:
    """``DescriptorError`` if received metadata is nested deeper than the sender allows."""
    for value in metadata.values():
        if type(value) in (dict, list):
            break
    else:
        return  # flat, the usual case
    if _depth(metadata) > MAX_METADATA_DEPTH:
        raise DescriptorError(f"message metadata is nested deeper than {MAX_METADATA_DEPTH} "
                              "levels")



def decode_release(raw: bytes) -> Release:
    """Decode a received release body; ``DescriptorError`` on anything unexpected."""
    return RELEASE.decode(raw)


def _depth(value: object) -> int:
    """Nesting depth of dicts and lists (without recursion: the input may be hostile)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_METADATA_DEPTH:
            stack.extend((child, depth + 1) for child in children)
    return deepest


_PLAIN = frozenset({str, bool, type(None)})


def flat_json(metadata: dict[str, Any]) -> bytes | None:
    """The JSON of metadata that is one level of plain values (the usual case, checked in
    one pass), or None: then :func:`metadata_json` checks it in full. Such metadata needs
    no conversion either (``pinflow.nodes.metadata.to_wire`` would return it unchanged)."""
    for key, value in metadata.items():
        kind = type(value)
        if type(key) is not str or not (
                kind in _PLAIN
                or (kind is int and -INT64_MAX - 1 <= value <= _UINT64_MAX)
                or (kind is float and math.isfinite(value))):
            return None
    if not metadata:
        return b""
    raw = encode(metadata)
    return raw if len(raw) <= MAX_METADATA_BYTES else None


def check_metadata(metadata: dict[str, Any] | None) -> None:
    """Raise ``PayloadError`` unless ``metadata`` can travel in a header (see
    :func:`metadata_json`)."""
    metadata_json(metadata)


def metadata_json(metadata: dict[str, Any] | None) -> bytes:
    """The JSON of ``metadata`` (``b""`` for none), or ``PayloadError`` unless it can travel
    in a header.

    Metadata is a dict with string keys whose values are str, int (64-bit), finite float,
    bool, None, or lists/tuples and dicts of those; at most ``MAX_METADATA_DEPTH`` levels
    deep and ``MAX_METADATA_BYTES`` as JSON. Anything else would arrive changed (``{1: "a"}``
    as ``{"1": "a"}``) or not at all, so it is refused here, at the sender.
    """
    if metadata is None:
        return b""
    if not isinstance(metadata, dict):
        raise PayloadError(f"metadata must be a dict, got {type(metadata).__name__}")
    flat = flat_json(metadata)
    if flat is not None:
        return flat
    text_bytes = 0
    stack: list[tuple[object, int, str]] = [(metadata, 1, "metadata")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, (dict, list, tuple)):
            if depth > MAX_METADATA_DEPTH:
                raise PayloadError(
                    f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels (at {where}); "
                    "flatten it")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise PayloadError(
                            f"metadata keys must be strings: {where} has the key {key!r} "
                            f"({type(key).__name__}); JSON would turn it into {str(key)!r}, "
                            "so convert it yourself")
                    text_bytes += len(key)
                    stack.append((item, depth + 1, f"{where}[{key!r}]"))
            else:
                stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            text_bytes += len(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise PayloadError(f"{where} is {value}: JSON has no NaN or infinity")
        elif isinstance(value, int) and not isinstance(value, bool):
            if not -INT64_MAX - 1 <= value <= _UINT64_MAX:
                raise PayloadError(f"{where} = {value} does not fit in 64 bits")
        elif value is not None and not isinstance(value, bool):
            raise PayloadError(
                f"{where} has type {type(value).__name__}: metadata values must be str, "
                "int, float, bool, None, or lists and dicts of them")
        if text_bytes > MAX_METADATA_BYTES:
            break
    if text_bytes > MAX_METADATA_BYTES:
        size = f"holds at least {text_bytes} bytes of text"
    else:
        encoded = encode(metadata)
        size = f"is {len(encoded)} bytes as JSON"
        if len(encoded) <= MAX_METADATA_BYTES:
            return encoded if metadata else b""
    raise PayloadError(
        f"metadata {size}; the limit is {MAX_METADATA_BYTES} bytes (MAX_METADATA_BYTES): send "
        "large data as the payload, or on an output of its own")
