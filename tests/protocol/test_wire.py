"""The attachment of each part of a message between hosts: well-formed parts decode, and
anything else is one DescriptorError that the importer counts as malformed."""

from __future__ import annotations

import msgspec
import pytest

from pinflow.errors import DescriptorError
from pinflow.protocol import messages, wire
from pinflow.protocol.messages import TensorLayout

TOTAL = 2 * wire.PART_BYTES + 10


def _header(seq: int = 7, kind: str = "inline") -> messages.Header:
    layout = TensorLayout("|u1", [TOTAL]) if kind == "inline" else None
    return messages.Header.new(kind, seq, 123, layout=layout, metadata={"i": seq})


def test_a_first_part_carries_the_header_and_later_parts_only_where_they_go():
    part, header = wire.decode(wire.first(_header(), TOTAL))
    assert (part.seq, part.offset, part.total) == (7, 0, TOTAL)
    assert header == _header()
    part, header = wire.decode(wire.later(7, wire.PART_BYTES, TOTAL))
    assert (part.seq, part.offset, part.total, header) == (7, wire.PART_BYTES, TOTAL, None)
    assert b'"h"' not in wire.later(7, wire.PART_BYTES, TOTAL), "later parts stay small"


def test_the_end_of_a_stream_is_a_first_part_of_no_bytes():
    part, header = wire.decode(wire.first(_header(3, "eos"), 0))
    assert header is not None and header.kind == "eos" and part.total == 0


def _raw(**fields: object) -> bytes:
    return msgspec.json.encode(fields)


@pytest.mark.parametrize(("raw", "why"), [
    (b"", "not JSON"),
    (_header().encode(), "invalid"),  # a bare header, as a gateway before parts sent it
    (_raw(s=7, o=0, n=TOTAL), "only it, carries"),  # a first part without its header
    (_raw(s=7, o=5, n=TOTAL, h=msgspec.Raw(_header().encode())), "only it, carries"),
    (_raw(s=7, o=TOTAL + 1, n=TOTAL), "lies outside"),
    (_raw(s=7, o=TOTAL, n=TOTAL), "lies outside"),
    (_raw(s=8, o=0, n=TOTAL, h=msgspec.Raw(_header(7).encode())), "header of message 7"),
    (_raw(s=7, o=0, n=TOTAL, h=msgspec.Raw(b'{"kind": "inline"}')), "header"),
    (_raw(s=-1, o=0, n=0), "invalid"),
    (_raw(s=7, o=1, n=TOTAL, x=1), "invalid"),  # unknown field: the sender is a pinflow gateway
])
def test_anything_else_is_refused_as_malformed(raw: bytes, why: str):
    with pytest.raises(DescriptorError, match=why):
        wire.decode(raw)
