"""Turn user data into (layout header, flat bytes) and back, without copies on the way in.

The layout header is a small JSON-able dict that travels with every message:

``{"k": "nd", "dt": "<f4", "sh": [1080, 1920, 4], "src": "numpy"}``
    a C-contiguous numeric tensor; the bytes are its raw memory. Received as a flat pyarrow
    array of that type (zero-copy over the received bytes); ``to_numpy()`` restores the shape.
``{"k": "arrow", "src": "arrow"}``
    any other pyarrow array (strings, structs, nullable, ...) as an Arrow IPC stream.

``src`` records what the sender passed (numpy, arrow, bytes or torch) so receivers can
offer the same kind back. The receiving side always builds values over a single *holder*
(a 1-D uint8 numpy array over the bytes, or over a shared-memory slot) so that every view
handed to the user keeps that holder alive; the shared-memory plane releases a slot when
the holder is garbage collected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pinflow.errors import DescriptorError, PayloadError

# numpy kinds carried raw: bool, signed/unsigned ints, floats.
_RAW_KINDS = frozenset("biuf")
_MAX_DIMS = 32


@dataclass(frozen=True)
class Encoded:
    """What ``encode`` produced: the layout header and a flat byte view to transmit."""

    layout: dict[str, Any]
    data: memoryview

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


def _is_torch_tensor(data: object) -> bool:
    return type(data).__module__.split(".")[0] == "torch" and hasattr(data, "detach")


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in _RAW_KINDS or dtype.fields is not None:
        raise PayloadError(
            f"cannot send numpy dtype {dtype}: supported are bool, integer and float "
            "dtypes (convert the array, or send a pyarrow array)"
        )


def tensor_layout(dtype: Any, shape: tuple[int, ...]) -> tuple[dict[str, Any], int]:
    """Layout header and byte size of a C-contiguous tensor (for loaned buffers)."""
    dt = np.dtype(dtype).newbyteorder("=")
    _check_dtype(dt)
    if any(d < 0 for d in shape):
        raise PayloadError(f"negative dimension in shape {shape}")
    nbytes = dt.itemsize * int(np.prod(shape, dtype=np.int64))
    return {"k": "nd", "dt": dt.str, "sh": list(shape), "src": "numpy"}, nbytes


def _numpy_layout(array: np.ndarray, src: str) -> Encoded:
    _check_dtype(array.dtype)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    array = np.ascontiguousarray(array)
    layout = {"k": "nd", "dt": array.dtype.str, "sh": list(array.shape), "src": src}
    return Encoded(layout, memoryview(array.reshape(-1)).cast("B"))


def _arrow_layout(array: pa.Array) -> Encoded:
    typ = array.type
    if (
        (pa.types.is_integer(typ) or pa.types.is_floating(typ))
        and array.null_count == 0
        and len(array) > 0
    ):
        flat = array.to_numpy(zero_copy_only=True)
        layout = {"k": "nd", "dt": flat.dtype.str, "sh": [len(array)], "src": "arrow"}
        return Encoded(layout, memoryview(flat).cast("B"))
    batch = pa.record_batch([array], names=["v"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return Encoded({"k": "arrow", "src": "arrow"}, memoryview(sink.getvalue()))


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
        return Encoded({"k": "nd", "dt": "|u1", "sh": [raw.nbytes], "src": "bytes"}, raw)
    if _is_torch_tensor(data):
        tensor = data.detach()
        if str(tensor.dtype) == "torch.bfloat16":
            raise PayloadError("cannot send torch.bfloat16 tensors yet: convert to float16/32")
        return _numpy_layout(tensor.cpu().contiguous().numpy(), "torch")
    raise PayloadError(
        f"cannot send {type(data).__name__}: send_output accepts pyarrow arrays, numpy arrays, "
        "bytes/bytearray/memoryview and torch tensors"
    )


def check_layout(layout: object, nbytes: int) -> dict[str, Any]:
    """Validate a received layout header against the number of bytes that came with it."""
    if not isinstance(layout, dict) or layout.get("k") not in ("nd", "arrow"):
        raise DescriptorError(f"unknown payload layout {layout!r}")
    if layout["k"] == "arrow":
        return layout
    try:
        dtype = np.dtype(layout["dt"])
        shape = [int(d) for d in layout["sh"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DescriptorError(f"malformed tensor layout {layout!r}: {exc}") from None
    if dtype.kind not in _RAW_KINDS or len(shape) > _MAX_DIMS or any(d < 0 for d in shape):
        raise DescriptorError(f"refused tensor layout {layout!r}")
    expected = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if expected != nbytes:
        raise DescriptorError(f"layout {layout!r} needs {expected} bytes but {nbytes} arrived")
    return layout


def decode_value(layout: dict[str, Any], holder: np.ndarray) -> pa.Array:
    """Build the pyarrow value over ``holder`` (a 1-D uint8 array); zero-copy for tensors."""
    if layout["k"] == "arrow":
        reader = pa.ipc.open_stream(pa.py_buffer(holder))
        return reader.read_next_batch().column(0)
    dtype = np.dtype(layout["dt"])
    if dtype.kind == "b":
        return pa.array(holder.view(dtype))
    arrow_type = pa.from_numpy_dtype(dtype)
    length = holder.nbytes // dtype.itemsize
    return pa.Array.from_buffers(arrow_type, length, [None, pa.py_buffer(holder)])


def decode_numpy(layout: dict[str, Any], holder: np.ndarray, value: pa.Array) -> np.ndarray:
    """numpy view with the sender's dtype and shape (a copy only for non-tensor Arrow data)."""
    if layout["k"] == "arrow":
        return value.to_numpy(zero_copy_only=False)
    return holder.view(np.dtype(layout["dt"])).reshape(layout["sh"])
