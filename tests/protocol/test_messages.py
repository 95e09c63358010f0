"""What a peer may send on the data plane and what a sender may not: headers (with their
layouts and slot descriptors), metadata, releases, held-slots queries and answers."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from pinflow.errors import DescriptorError, PayloadError
from pinflow.protocol import messages
from pinflow.protocol.messages import ArrowLayout, SlotRef, TensorLayout

SLOT = {"seg": "pinflow-r.n.o.0a", "idx": 1, "off": 8192, "len": 10, "gen": 3, "to": ["gpu"]}


def _header(**fields: object) -> bytes:
    body = {"v": 1, "k": "inline", "s": 1, "t": 2, "l": {"k": "nd", "dt": "|u1", "sh": [4]}}
    body.update(fields)
    return json.dumps(body).encode()


def test_a_header_round_trips_and_omits_what_it_does_not_carry() -> None:
    header = messages.Header.new("shm", 3, 4, layout=TensorLayout("<f4", [2]),
                                metadata=None, slot=SlotRef("pinflow-r.n.o.0a", 1, 8192, 8, 2,
                                                           frozenset({"gpu"})))
    raw = header.encode()
    assert b'"m"' not in raw and b'"a"' not in raw
    assert messages.decode(raw) == header


def test_the_wire_format_of_layouts_and_slot_descriptors_is_the_one_peers_know() -> None:
    header = messages.Header.new("shm", 3, 4, layout=TensorLayout("<f4", [2, 3], "torch"),
                                slot=SlotRef("pinflow-r.n.o.0a", 1, 8192, 24, 2,
                                             frozenset({"gpu"})))
    assert json.loads(header.encode()) == {
        "v": 1, "k": "shm", "s": 3, "t": 4,
        "l": {"k": "nd", "dt": "<f4", "sh": [2, 3], "src": "torch"},
        "d": {"seg": "pinflow-r.n.o.0a", "idx": 1, "off": 8192, "len": 24, "gen": 2,
              "to": ["gpu"]}}
    arrow = messages.Header.new("inline", 1, 2, layout=ArrowLayout(), metadata={"a": 1})
    assert json.loads(arrow.encode())["l"] == {"k": "arrow", "src": "arrow"}
    decoded = messages.decode(_header(l={"k": "nd", "dt": "<f8", "sh": [5]}))
    assert decoded.layout == TensorLayout("<f8", [5], "numpy")


@pytest.mark.parametrize("raw", [
    _header(t=10**400), _header(s=-1), _header(s=True), _header(s=1.0), _header(v=2),
    _header(v=None), _header(k="teleport"), _header(l=None), _header(k="shm"),
    _header(m=[1]), _header(m=None), _header(a={"c": 1}),
    json.dumps({"k": "inline", "s": 1, "t": 2, "l": {}}).encode(),
    _header()[:-1] + b',"m":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}",
    _header()[:-1] + b',"m":{"a":' + b"[" * 40 + b"]" * 40 + b"}}",
    _header(m={"x": "y" * messages.MAX_HEADER_BYTES}),
    b"\xff", b"[]", b"",
])
def test_malformed_headers_are_descriptor_errors(raw: bytes) -> None:
    with pytest.raises(DescriptorError):
        messages.decode(raw)


@pytest.mark.parametrize("layout", [
    {"k": "nd", "dt": "|u1", "sh": [2**63]},
    {"k": "nd", "dt": "|u1", "sh": "12"},
    {"k": "nd", "dt": "|u1", "sh": [True]},
    {"k": "nd", "dt": "|u1", "sh": [-1]},
    {"k": "nd", "dt": "|u1", "sh": [1] * 33},
    {"k": "nd", "dt": "|u1", "sh": [4], "src": "matlab"},
    {"k": "nd", "dt": 4, "sh": [4]},
    {"k": "nd", "sh": [4]},
    {"k": "nd", "dt": "|u1", "sh": [4], "extra": 1},
    {"k": "arrow", "src": "numpy"},
    {"k": "video"}, {}, "nd", [1],
])
def test_layouts_of_the_wrong_shape_fail_the_header(layout: object) -> None:
    with pytest.raises(DescriptorError, match="message header is invalid"):
        messages.decode(_header(l=layout))


@pytest.mark.parametrize("change", [
    {"seg": 5}, {"idx": True}, {"off": -1}, {"len": 1.0}, {"gen": "3"}, {"gen": 2**63},
    {"extra": 1}, {"to": None}, {"to": "gpu"}, {"to": ["gpu", 3]}, {"to": ["../gpu"]},
    {"to": ["gpu\n"]}, {"to": [f"n{i}" for i in range(1025)]},
])
def test_slot_descriptors_refuse_missing_extra_or_mistyped_fields(change: dict) -> None:
    with pytest.raises(DescriptorError, match="message header is invalid"):
        messages.decode(_header(k="shm", d={**SLOT, **change}))
    for missing in SLOT:
        with pytest.raises(DescriptorError, match="message header is invalid"):
            messages.decode(_header(k="shm", d={k: v for k, v in SLOT.items() if k != missing}))


def test_slot_descriptors_decode_to_slot_refs() -> None:
    header = messages.decode(_header(k="shm", d=SLOT))
    assert header.slot == SlotRef("pinflow-r.n.o.0a", 1, 8192, 10, 3, frozenset({"gpu"}))
    assert msgspec.to_builtins(header.slot) == SLOT


def _deep(depth: int) -> dict:
    root: dict = {}
    level = root
    for _ in range(depth - 1):
        level["a"] = {}
        level = level["a"]
    return root


@pytest.mark.parametrize(("metadata", "match"), [
    (_deep(5000), "nested deeper than 32 levels"), ({1: "a"}, "keys must be strings"),
    ({"a": [{2: "b"}]}, r"metadata\['a'\]\[0\] has the key 2"),
    ({"x": "y" * (64 << 20)}, "limit is 65536 bytes"),
    ({"x": ["y" * 1000] * 70}, "limit is 65536 bytes"),
    ({"x": float("nan")}, "NaN"), ({"x": 2**64}, "64 bits"), ({"x": object()}, "type object"),
    ({"x": np.int64(1)}, "type int64"), ([1], "must be a dict"),
])
def test_metadata_that_would_arrive_changed_or_not_at_all_is_refused(metadata, match) -> None:
    with pytest.raises(PayloadError, match=match):
        messages.check_metadata(metadata)


def test_metadata_at_the_limits_is_accepted_and_arrives_unchanged() -> None:
    metadata = {"deep": _deep(31), "text": "é" * 1000, "n": [-(2**63), 2**64 - 1, 1.5, None],
                "t": (1, 2)}
    messages.check_metadata(metadata)
    raw = messages.Header.new("eos", 1, 2, metadata=metadata).encode()
    assert messages.decode(raw).metadata == {**metadata, "t": [1, 2]}


def test_releases_decode_strictly() -> None:
    release = messages.Release("seg", [(1, 2)])
    assert messages.decode_release(release.encode()) == release
    for raw in (b'{"seg":"s","r":[[1,-2]]}', b'{"seg":"s","r":[[1]]}',
                b'{"c":"x","seg":"s","r":[]}',
                b'{"seg":"s","r":' + b"[" * 5000 + b"]" * 5000 + b"}",
                b'{"seg":"s","r":[' + b"[1,1]," * 20000 + b"[1,1]]}"):
        with pytest.raises(DescriptorError):
            messages.decode_release(raw)


def test_held_queries_and_answers_decode_strictly() -> None:
    ask = messages.HeldQuery("cam", "ab" * messages.NONCE_BYTES)
    assert messages.decode_held_query(ask.encode()) == ask
    for raw in (messages.HeldQuery("cam", "ab").encode(),
                messages.HeldQuery("cam", "zz" * messages.NONCE_BYTES).encode(),
                b'{"p":"cam"}', b"[" * 5000 + b"]" * 5000, b"x" * 2000):
        with pytest.raises(DescriptorError):
            messages.decode_held_query(raw)
    reply = messages.HeldReply("gpu", [("seg", 1, 2)])
    assert messages.decode_held_reply(reply.encode()) == reply
    too_many = messages.HeldReply("gpu", [("seg", 1, 2)] * (messages.MAX_HELD + 1))
    for raw in (too_many.encode(), b'{"c":"gpu","held":[["seg",-1,2]]}',
                b'{"c":"gpu","held":[],"x":1}'):
        with pytest.raises(DescriptorError):
            messages.decode_held_reply(raw)
