"""What a peer may send and what a sender may not: headers, layouts, metadata, releases, MACs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from pinflow.errors import DescriptorError, PayloadError
from pinflow.protocol import messages
from pinflow.transport import auth, codec


def _header(**fields: object) -> bytes:
    body = {"v": 1, "k": "inline", "s": 1, "t": 2, "l": {"k": "nd", "dt": "|u1", "sh": [4]}}
    body.update(fields)
    return json.dumps(body).encode()


def test_a_header_round_trips_and_omits_what_it_does_not_carry() -> None:
    header = messages.Header.new("shm", 3, 4, layout={"k": "nd", "dt": "<f4", "sh": [2]},
                                metadata=None, slot={"seg": "x"})
    raw = header.encode()
    assert b'"m"' not in raw and b'"a"' not in raw
    assert messages.decode(raw) == header


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


@pytest.mark.parametrize(("layout", "payload"), [
    ({"k": "nd", "dt": "<f16", "sh": [4]}, bytes(64)),
    ({"k": "nd", "dt": "g", "sh": [4]}, bytes(64)),
    ({"k": "nd", "dt": ">i4", "sh": [1]}, bytes(4)),
    ({"k": "nd", "dt": "|u1", "sh": [2**32, 2**32]}, b""),
    ({"k": "nd", "dt": "|u1", "sh": "12"}, bytes(12)),
    ({"k": "nd", "dt": "|u1", "sh": [True]}, bytes(1)),
    ({"k": "nd", "dt": "|u1", "sh": [1] * 33}, bytes(1)),
    ({"k": "nd", "dt": "|u1", "sh": [4], "src": "matlab"}, bytes(4)),
    ({"k": "nd", "dt": "|u1", "sh": [5]}, bytes(4)),
    ({"k": "arrow", "src": "arrow"}, b"garbage"),
    ({"k": "video"}, b""),
    ("nd", b""),
])
def test_layouts_no_receiver_could_decode_are_refused(layout: object, payload: bytes) -> None:
    with pytest.raises(DescriptorError):
        codec.check_layout(layout, payload)


def test_an_arrow_stream_with_two_batches_or_another_column_is_refused() -> None:
    batch = pa.record_batch([pa.array(["a"])], names=["v"])
    for batches, schema in (([batch, batch], batch.schema),
                            ([batch.rename_columns(["w"])], batch.rename_columns(["w"]).schema)):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            for b in batches:
                writer.write_batch(b)
        with pytest.raises(DescriptorError):
            codec.check_layout({"k": "arrow", "src": "arrow"}, sink.getvalue().to_pybytes())


@pytest.mark.parametrize("data", [
    np.arange(6, dtype=np.float16).reshape(2, 3), np.array([True, False]),
    np.arange(3, dtype=np.uint64), np.array([1, 2], dtype=">i4"), b"bytes",
    pa.array(["a", None, "bc"]), pa.array([{"x": 1}]), pa.array([1, None]),
])
def test_whatever_the_sender_accepts_a_receiver_decodes(data: object) -> None:
    encoded = codec.encode(data)
    holder = np.frombuffer(encoded.data, dtype=np.uint8).copy()
    codec.check_layout(encoded.layout, holder)
    value = codec.decode_value(encoded.layout, holder)
    if isinstance(data, pa.Array):
        assert value.equals(data)
    elif isinstance(data, bytes):
        assert holder.tobytes() == data
    else:
        np.testing.assert_array_equal(codec.decode_numpy(encoded.layout, holder, value), data)


@pytest.mark.parametrize("data", [np.zeros(2, np.longdouble), np.zeros(2, np.clongdouble),
                                  np.zeros(2, np.complex64), np.zeros(2, "M8[s]"),
                                  np.zeros(2, [("a", "i4")])])
def test_dtypes_without_an_arrow_type_are_refused_at_the_sender(data: np.ndarray) -> None:
    with pytest.raises(PayloadError, match="no receiver could decode it"):
        codec.encode(data)


@pytest.mark.parametrize(("dtype", "shape", "match"), [
    (np.longdouble, (4,), "longdouble"), (np.uint8, (2**32, 2**32), "more than any pool"),
    (np.uint8, (-1,), "non-negative"), (np.uint8, (2.0,), "non-negative"),
    (">i4", (2,), "byte order"),
])
def test_loaned_buffers_refuse_what_a_receiver_could_not_decode(dtype, shape, match) -> None:
    with pytest.raises(PayloadError, match=match):
        codec.tensor_layout(dtype, shape)


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


def test_only_the_consumer_s_own_key_signs_its_releases_and_its_end_of_stream() -> None:
    keyring = auth.Keyring(["victim", "forger"])
    producer = keyring.producer("cam", ["victim", "forger"])
    victim, forger = keyring.consumer("victim"), keyring.consumer("forger")
    key, body = "pinflow/r/release/cam/out/victim", b'{"seg":"s","r":[[0,1]]}'
    assert producer.release_is_genuine("victim", key, body, victim.sign_release("cam", key, body))
    assert not producer.release_is_genuine("victim", key, body,
                                           forger.sign_release("cam", key, body))
    assert not producer.release_is_genuine("victim", key, b'{"seg":"s","r":[[1,1]]}',
                                           victim.sign_release("cam", key, body))
    assert not producer.release_is_genuine("nobody", key, body, b"\0" * auth.MAC_BYTES)
    # A key shared with another producer signs nothing for this one.
    assert not producer.release_is_genuine("victim", key, body,
                                           victim.sign_release("mic", key, body))
    macs = producer.sign_eos("pinflow/r/data/cam/out", 7)
    assert victim.eos_is_genuine("cam", "pinflow/r/data/cam/out", 7, macs)
    assert not victim.eos_is_genuine("cam", "pinflow/r/data/cam/out", 8, macs)
    assert not victim.eos_is_genuine("cam", "pinflow/r/data/cam/out", 7,
                                     {"victim": macs["forger"]})
