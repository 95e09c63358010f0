"""The payload codec: whatever a sender accepts, a receiver decodes; whatever bytes do not
match their layout, a receiver refuses before building anything from them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pinflow.errors import DescriptorError, PayloadError
from pinflow.protocol.messages import ArrowLayout, Layout, TensorLayout
from pinflow.transport import codec


@pytest.mark.parametrize(("layout", "payload"), [
    (TensorLayout("<f16", [4]), bytes(64)),
    (TensorLayout("g", [4]), bytes(64)),
    (TensorLayout(">i4", [1]), bytes(4)),
    (TensorLayout("|u1", [2**32, 2**32]), b""),
    (TensorLayout("|u1", [5]), bytes(4)),
    (TensorLayout("|u1", []), bytes(4)),
    (ArrowLayout(), b"garbage"),
    (None, bytes(4)),
])
def test_layouts_no_receiver_could_decode_are_refused(layout: Layout | None,
                                                       payload: bytes) -> None:
    """What the header's types cannot tell (tests/protocol/test_messages.py pins those): the
    dtype, and whether the bytes that came are the bytes the layout needs."""
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
            codec.check_layout(ArrowLayout(), sink.getvalue().to_pybytes())


@pytest.mark.parametrize("data", [
    np.arange(6, dtype=np.float16).reshape(2, 3), np.array([True, False]),
    np.arange(3, dtype=np.uint64), np.array([1, 2], dtype=">i4"), b"bytes",
    pa.array(["a", None, "bc"]), pa.array([{"x": 1}]), pa.array([1, None]),
    pa.array([1.5, 2.5]), np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2],
    np.zeros((2, 0, 3)), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    bytearray(b"abc"), memoryview(np.arange(4, dtype=np.int32)),
    np.arange(4, dtype=np.int32)[:, None],
])
def test_whatever_the_sender_accepts_a_receiver_decodes(data: object) -> None:
    encoded = codec.encode(data)
    assert (encoded.data.format, encoded.data.ndim) == ("B", 1), "a flat byte view"
    holder = np.zeros(encoded.nbytes, dtype=np.uint8)
    memoryview(holder)[:] = encoded.data  # how send_output copies it into a slot
    codec.check_layout(encoded.layout, holder)
    value = codec.decode_value(encoded.layout, holder)
    if isinstance(data, pa.Array):
        assert value.equals(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        assert holder.tobytes() == bytes(data)
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


def test_a_loaned_buffer_s_layout_is_the_tensor_s() -> None:
    layout, nbytes = codec.tensor_layout(np.float32, (2, 3))
    assert (layout, nbytes) == (TensorLayout(np.dtype(np.float32).str, [2, 3], "numpy"), 24)
    holder = np.zeros(24, np.uint8)
    codec.check_layout(layout, holder)
    assert codec.decode_numpy(layout, holder, codec.decode_value(layout, holder)).shape == (2, 3)


