"""Turn user data into (layout, flat bytes) and back, without copies on the way in.

The layout travels in every message's header (``pinflow.protocol.messages``):

``TensorLayout`` (``{"k": "nd", "dt": "<f4", "sh": [1080, 1920, 4], "src": "numpy"}``)
    a C-contiguous numeric tensor; the bytes are its raw memory. Received as a flat pyarrow
    array of that type (zero-copy over the received bytes); ``to_numpy()`` restores the shape.
``ArrowLayout`` (``{"k": "arrow", "src": "arrow"}``)
    any other pyarrow array (strings, structs, nullable, ...) as an Arrow IPC stream.

``src`` records what the sender passed (numpy, arrow, bytes or torch) so receivers can
offer the same kind back. The receiving side always builds values over a single *holder*
(a 1-D uint8 numpy array over the bytes, or over a shared-memory slot) so that every view
handed to the user keeps that holder alive; the shared-memory plane releases a slot when
the holder is garbage collected.

Both ends hold the same line: the sender refuses what a receiver could not decode (a dtype
with no Arrow type, such as ``np.longdouble``), and a receiver checks every layout against
the bytes that came with it (:func:`check_layout`) before anything is built from them.
The header's decoder already checked its types; what is left is what only the bytes tell.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pinflow.errors import DescriptorError, PayloadError
from pinflow.protocol.messages import INT64_MAX, MAX_DIMS, ArrowLayout, Layout, TensorLayout

ALLOWED_DTYPES = frozenset(np.dtype(name).str for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64"))
"""Tensor dtypes carried raw, in the machine's byte order: each has an Arrow type and a torch
dtype, so every receiver can decode it."""
ARROW = ArrowLayout()
_ITEMSIZE = {dt: np.dtype(dt).itemsize for dt in ALLOWED_DTYPES}


@dataclass(frozen=True)
class Encoded:
    """What ``encode`` produced: the layout header and a flat byte view to transmit (1-D,
    format ``B``: a slot's view takes it in one memoryview assignment)."""

    layout: Layout
    data: memoryview

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


def _is_torch_tensor(data: object) -> bool:
    return type(data).__module__.split(".")[0] == "torch" and hasattr(data, "detach")


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.fields is not None or dtype.newbyteorder("=").str not in ALLOWED_DTYPES:
        raise PayloadError(
            f"cannot send numpy dtype {dtype} ({dtype.type.__name__}): no receiver could "
            "decode it; supported are bool, int8-int64, uint8-uint64 and float16/32/64 "
            "(convert the array, e.g. .astype(np.float64), or send a pyarrow array)"
        )


def tensor_layout(dtype: Any, shape: tuple[int, ...]) -> tuple[TensorLayout, int]:
    """Layout and byte size of a C-contiguous tensor (for loaned buffers)."""
    dt = np.dtype(dtype)
    _check_dtype(dt)
    if not dt.isnative:
        raise PayloadError(
            f"a loaned buffer must use this machine's byte order, not {dt.str}: ask for "
            f"{dt.newbyteorder('=').str} (numpy converts values when you assign them)"
        )
    dims = list(shape)
    if len(dims) > MAX_DIMS or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims
    ):
        raise PayloadError(
            f"shape {tuple(shape)} must be at most {MAX_DIMS} non-negative integers")
    dims = [int(d) for d in dims]
    nbytes = dt.itemsize * math.prod(dims)
    if nbytes > INT64_MAX:
        raise PayloadError(
            f"shape {tuple(dims)} of {dt} is {nbytes} bytes: more than any pool can hold")
    return TensorLayout(dt.str, dims), nbytes


@functools.lru_cache(maxsize=64)
def _sendable(dtype: np.dtype) -> tuple[np.dtype, str]:
    """The dtype a tensor of ``dtype`` travels as (this machine's byte order) and its
    string; ``PayloadError`` if no receiver could decode it. Cached: numpy calls cost tens
    of microseconds each on a message's cold path, so a message makes as few as it can."""
    _check_dtype(dtype)
    native = dtype if dtype.isnative else dtype.newbyteorder("=")
    return native, native.str


def _numpy_layout(array: np.ndarray, src: str) -> Encoded:
    native, dt = _sendable(array.dtype)
    if native is not array.dtype:
        array = array.astype(native)
    raw = memoryview(array)
    if not raw.c_contiguous:
        array = np.ascontiguousarray(array)
        raw = memoryview(array)
    layout = TensorLayout(dt, list(array.shape), src)  # type: ignore[arg-type]
    try:
        return Encoded(layout, raw.cast("B"))
    except TypeError:  # a zero in the shape or strides (an empty array; a length-1 axis
        # numpy gave stride 0): memoryview will not cast it, the flat view will
        return Encoded(layout, memoryview(array.reshape(-1)).cast("B"))


def _arrow_layout(array: pa.Array) -> Encoded:
    typ = array.type
    if (
        (pa.types.is_integer(typ) or pa.types.is_floating(typ))
        and array.null_count == 0
        and len(array) > 0
    ):
        flat = array.to_numpy(zero_copy_only=True)
        return Encoded(TensorLayout(flat.dtype.str, [len(array)], "arrow"),
                       memoryview(flat).cast("B"))
    batch = pa.record_batch([array], names=["v"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return Encoded(ARROW, memoryview(sink.getvalue()).cast("B"))  # pyarrow says "b"


def encode(data: Any) -> Encoded:
    """Lay out ``data`` (pyarrow array, numpy array, bytes-like or torch tensor) for sending.

    No copy is made for contiguous numpy/numeric Arrow input; the returned view borrows the
    caller's memory, so it must be consumed before the caller mutates the data.
    """
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks()
    if isinstance(data, pa.Array):
        return _arrow_layout(data)
    if isinstance(data, np.ndarray):
        return _numpy_layout(data, "numpy")
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = memoryview(data).cast("B")
        return Encoded(TensorLayout("|u1", [raw.nbytes], "bytes"), raw)
    if _is_torch_tensor(data):
        tensor = data.detach()
        if str(tensor.dtype) == "torch.bfloat16":
            raise PayloadError("cannot send torch.bfloat16 tensors yet: convert to float16/32")
        return _numpy_layout(tensor.cpu().contiguous().numpy(), "torch")
    raise PayloadError(
        f"cannot send {type(data).__name__}: send_output accepts pyarrow arrays, numpy arrays, "
        "bytes/bytearray/memoryview and torch tensors"
    )


def check_layout(layout: Layout | None, payload: np.ndarray | bytes) -> None:
    """Check a received layout against the bytes that came with it: ``DescriptorError``
    unless every value built from them later will decode. An Arrow IPC stream is opened and
    fully validated here, so check private bytes (not a slot another process may rewrite)."""
    if type(layout) is TensorLayout:
        itemsize = _ITEMSIZE.get(layout.dt)
        if itemsize is not None and itemsize * math.prod(layout.sh) == len(payload):
            return  # the usual case: a tensor whose bytes all arrived
    if layout is None:
        raise DescriptorError("message carries a payload but no layout")
    if isinstance(layout, ArrowLayout):
        _check_arrow(payload)
        return
    if layout.dt not in ALLOWED_DTYPES:
        raise DescriptorError(
            f"payload dtype {layout.dt!r} is not one a receiver decodes "
            f"({', '.join(sorted(ALLOWED_DTYPES))})")
    nbytes = payload.nbytes if isinstance(payload, np.ndarray) else len(payload)
    expected = _dtype(layout.dt).itemsize * math.prod(layout.sh)
    if expected != nbytes:
        raise DescriptorError(
            f"layout {_short(layout)} needs {expected} bytes but {nbytes} arrived")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _check_arrow(payload: np.ndarray | bytes) -> None:
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(payload))
        if reader.schema.names != ["v"]:
            raise DescriptorError(
                f"Arrow payload has columns {reader.schema.names[:8]}, expected one 'v'")
        batch = reader.read_next_batch()
        batch.validate(full=True)
        try:
            reader.read_next_batch()
        except StopIteration:
            return
        raise DescriptorError("Arrow payload holds more than one record batch")
    except (pa.ArrowException, ValueError, OSError, EOFError, StopIteration) as exc:
        raise DescriptorError(f"Arrow payload is not a valid IPC stream: {exc}") from None


def decode_value(layout: Layout, holder: np.ndarray) -> pa.Array:
    """Build the pyarrow value over ``holder`` (a 1-D uint8 array); zero-copy for tensors."""
    if isinstance(layout, ArrowLayout):
        reader = pa.ipc.open_stream(pa.py_buffer(holder))
        return reader.read_next_batch().column(0)
    dtype = _dtype(layout.dt)
    if dtype.kind == "b":
        return pa.array(holder.view(dtype))
    length = holder.nbytes // dtype.itemsize
    return pa.Array.from_buffers(_arrow_type(layout.dt), length, [None, pa.py_buffer(holder)])


def decode_numpy(layout: Layout, holder: np.ndarray, value: pa.Array) -> np.ndarray:
    """numpy view with the sender's dtype and shape (a copy only for non-tensor Arrow data)."""
    if isinstance(layout, ArrowLayout):
        return value.to_numpy(zero_copy_only=False)
    return tensor_view(layout, holder)


def tensor_view(layout: TensorLayout, holder: np.ndarray) -> np.ndarray:
    """``holder`` (a 1-D uint8 array of the layout's size: a received payload, a loaned
    slot) in the layout's dtype and shape: a new array over it, whose base is ``holder``
    (one numpy call, not a view and a reshape)."""
    return np.ndarray(layout.sh, _dtype(layout.dt), holder)


@functools.cache
def _dtype(dt: str) -> np.dtype:
    """The numpy dtype of a layout's dtype string (one of ``ALLOWED_DTYPES``: checked first)."""
    return np.dtype(dt)


@functools.cache
def _arrow_type(dt: str) -> pa.DataType:
    return pa.from_numpy_dtype(_dtype(dt))
