"""The typed definitions of the data plane's messages: the header every data message carries,
and the release a consumer sends back. Each is defined once, here, and decoded strictly.

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
_UINT64_MAX = 2**64 - 1

Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
"""A sequence number, time, index or size: a non-negative int that fits in an int64."""


class Header(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The header of one data message (wire names in ``field(name=...)``)."""

    version: Literal[1] = msgspec.field(name="v")
    kind: Literal["inline", "shm", "eos"] = msgspec.field(name="k")
    seq: Count = msgspec.field(name="s")
    sent_ns: Count = msgspec.field(name="t")
    layout: dict[str, Any] | None = msgspec.field(default=None, name="l")
    """The payload's layout (``transport/codec.py`` checks it against the payload)."""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict, name="m")
    slot: dict[str, Any] | None = msgspec.field(default=None, name="d")
    """For ``shm``: {"seg": name, "idx": segment index, "off": int, "len": int, "gen": int,
    "to": [consumers the slot is lent to]} (``transport/pool.py`` ``SlotRef`` checks it)."""
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
    def new(cls, kind: str, seq: int, sent_ns: int, *, layout: dict[str, Any] | None = None,
            metadata: dict[str, Any] | None = None, slot: dict[str, Any] | None = None,
            auth: dict[str, str] | None = None) -> Header:
        return cls(version=VERSION, kind=kind, seq=seq, sent_ns=sent_ns,  # type: ignore[arg-type]
                   layout=layout, metadata=metadata or {}, slot=slot, auth=auth or {})

    def encode(self) -> bytes:
        try:
            return _ENCODER.encode(self)
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
        return _ENCODER.encode(self)


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
        return _ENCODER.encode(self)


class HeldReply(msgspec.Struct, forbid_unknown_fields=True):
    """A consumer's answer: the (segment, slot index, generation) of the asker's slots it
    still holds; proven by the MAC in the attachment."""

    consumer: str = msgspec.field(name="c")
    held: Annotated[list[tuple[str, Count, Count]], msgspec.Meta(max_length=MAX_HELD)]

    def encode(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder()
_HEADER = msgspec.json.Decoder(Header)
_RELEASE = msgspec.json.Decoder(Release)
_HELD_QUERY = msgspec.json.Decoder(HeldQuery)
_HELD_REPLY = msgspec.json.Decoder(HeldReply)


def decode_held_query(raw: bytes) -> HeldQuery:
    ask: HeldQuery = _decode(_HELD_QUERY, raw, "held-slots query", 1024)
    try:
        nonce = bytes.fromhex(ask.nonce)
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_BYTES:
        raise DescriptorError(f"held-slots query nonce must be {NONCE_BYTES} bytes of hex")
    return ask


def decode_held_reply(raw: bytes) -> HeldReply:
    reply: HeldReply = _decode(_HELD_REPLY, raw, "held-slots answer", MAX_HELD_BYTES)
    return reply


def _decode(decoder: msgspec.json.Decoder, raw: bytes, what: str, limit: int) -> Any:
    if len(raw) > limit:
        raise DescriptorError(f"{what} of {len(raw)} bytes is larger than the {limit}-byte limit")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise DescriptorError(f"{what} is invalid: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DescriptorError(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise DescriptorError(f"{what} is nested too deep to decode") from None


def decode(raw: bytes) -> Header:
    """Decode and check a received header; ``DescriptorError`` on anything unexpected."""
    header: Header = _decode(_HEADER, raw, "message header", MAX_HEADER_BYTES)
    depth = _depth(header.metadata)
    if depth > MAX_METADATA_DEPTH:
        raise DescriptorError(f"message metadata is nested deeper than {MAX_METADATA_DEPTH} "
                              "levels")
    return header


def decode_release(raw: bytes) -> Release:
    """Decode a received release body; ``DescriptorError`` on anything unexpected."""
    release: Release = _decode(_RELEASE, raw, "release", MAX_RELEASE_BYTES)
    return release


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


def check_metadata(metadata: dict[str, Any] | None) -> None:
    """Raise ``PayloadError`` unless ``metadata`` can travel in a header.

    Metadata is a dict with string keys whose values are str, int (64-bit), finite float,
    bool, None, or lists/tuples and dicts of those; at most ``MAX_METADATA_DEPTH`` levels
    deep and ``MAX_METADATA_BYTES`` as JSON. Anything else would arrive changed (``{1: "a"}``
    as ``{"1": "a"}``) or not at all, so it is refused here, at the sender.
    """
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise PayloadError(f"metadata must be a dict, got {type(metadata).__name__}")
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
        encoded = len(_ENCODER.encode(metadata))
        size = f"is {encoded} bytes as JSON"
        if encoded <= MAX_METADATA_BYTES:
            return
    raise PayloadError(
        f"metadata {size}; the limit is {MAX_METADATA_BYTES} bytes (MAX_METADATA_BYTES): send "
        "large data as the payload, or on an output of its own")
