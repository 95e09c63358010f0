"""The data messages between hosts: each message of a forwarded output crosses the wire as
consecutive parts of at most :data:`PART_BYTES`, so that both gateways work on one part while
the link carries the next (the sender copies part k+1 out of the slot while part k is on the
wire; the receiver copies part k into its slot while part k+1 arrives) instead of each
handling the whole frame before or after the link did.

Every part carries a :class:`Part` as its zenoh attachment: the message's sequence number,
where the part's bytes go and the message's size. The first part also carries the message's
own :class:`~pinflow.protocol.messages.Header` (kind ``inline``, or ``eos`` with no bytes),
kept as raw JSON here and decoded with :func:`pinflow.protocol.messages.decode`, so it gets
every check a header gets on a host's own mesh. The sender is a pinflow gateway: unknown
fields are refused.
"""

from __future__ import annotations

import msgspec

from pinflow.errors import DescriptorError
from pinflow.protocol import messages
from pinflow.protocol.messages import Count, Header
from pinflow.protocol.strict import StrictCodec

PART_BYTES = 1 << 20
"""Largest part: 1 MiB measured fastest end to end for 8 MB frames over a veth (smaller
parts cost more per-message work than they win in overlap; the whole frame overlaps
nothing; see README "Several machines")."""


_NO_HEADER = msgspec.Raw(b"null")


class Part(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The attachment of one part of a message on the wire."""

    seq: Count = msgspec.field(name="s")
    """The message's sequence number at its producer."""
    offset: Count = msgspec.field(name="o")
    """Where this part's bytes start in the message."""
    total: Count = msgspec.field(name="n")
    """The message's size in bytes."""
    header: msgspec.Raw = msgspec.field(default=_NO_HEADER, name="h")
    """First part only (offset 0): the message's header, as the producer's gateway encoded it
    (JSON ``null``, left out, on later parts)."""

    def decode_header(self) -> Header | None:
        """The message's header (first part), checked like any header; None on later parts."""
        if self.header == _NO_HEADER:
            return None
        return messages.decode(bytes(self.header))


PART: StrictCodec[Part] = StrictCodec(Part, "wire part",
                                      max_bytes=messages.MAX_HEADER_BYTES + 256)


def first(header: Header, total: int) -> bytes:
    """The attachment of a message's first part (also its only one, for ``eos`` and for
    messages of at most :data:`PART_BYTES`)."""
    return PART.encode(Part(header.seq, 0, total, msgspec.Raw(header.encode())))


def later(seq: int, offset: int, total: int) -> bytes:
    """The attachment of a part after the first."""
    return PART.encode(Part(seq, offset, total))


def decode(raw: bytes) -> tuple[Part, Header | None]:
    """A received part and, on a first part, its message's header; ``DescriptorError`` for
    anything that is not a well-formed part (a first part without a header, a part outside
    its message, a header whose sequence number is not the part's)."""
    part = PART.decode(raw)
    header = part.decode_header()
    if (part.offset == 0) != (header is not None):
        raise DescriptorError("wire part: the first part of a message, and only it, carries "
                              "the message's header")
    if part.offset > part.total or (part.offset == part.total and part.total):
        raise DescriptorError(f"wire part at offset {part.offset} lies outside its "
                              f"{part.total}-byte message")
    if header is not None and header.seq != part.seq:
        raise DescriptorError(f"wire part of message {part.seq} carries the header of message "
                              f"{header.seq}")
    return part, header
