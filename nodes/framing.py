"""The camera's test pattern: frames whose content and integrity a consumer can check.

A frame is an (H, W, 4) uint8 RGBA image: a fixed gradient background (kept darker than
``BACKGROUND_MAX``) with a bright square whose position follows the frame index, so a
detector has something real to find. Row 0 starts with a 16-byte stamp: the index (int64
little endian) and a crc32 :func:`checksum` of a sample of the frame. Sampling every
``SAMPLE_EVERY``-th row keeps the check far below a millisecond at 1080p, and because the
square is ``SQUARE`` rows tall, some sampled row always crosses it: a frame whose square
comes from another frame (torn, recycled too early) fails :func:`verify`.
"""

from __future__ import annotations

import mmap
import time
import zlib

import numpy as np

SQUARE = 64
"""Side of the bright square in pixels (smaller only when the frame is too small)."""
SAMPLE_EVERY = 64
"""Row spacing of the checksum sample; not larger than ``SQUARE`` so it always hits it."""
STAMP_BYTES = 16
"""Bytes 0-8 of row 0: frame index; bytes 8-16: checksum (uint64 holding a crc32)."""
BACKGROUND_MAX = 160
"""No background channel exceeds this, so the square (255) stands out by brightness."""
SQUARE_VALUE = 255
_STEP_X, _STEP_Y = 24, 14  # pixels the square moves per frame; different so it zig-zags
_INDEX = slice(0, 8)
_CHECK = slice(8, 16)


def make_background(height: int, width: int) -> np.ndarray:
    """The static gradient every frame starts from; build it once and reuse it."""
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    frame = np.empty((height, width, 4), dtype=np.uint8)
    x = np.linspace(0, BACKGROUND_MAX, width, dtype=np.float32)
    y = np.linspace(0, BACKGROUND_MAX, height, dtype=np.float32)
    frame[:, :, 0] = x.astype(np.uint8)[None, :]
    frame[:, :, 1] = y.astype(np.uint8)[:, None]
    frame[:, :, 2] = ((x[None, :] + y[:, None]) / 2).astype(np.uint8)
    frame[:, :, 3] = 255
    return frame


def square_size(height: int, width: int) -> int:
    """``SQUARE``, shrunk to half the smaller side for tiny frames."""
    return max(1, min(SQUARE, height // 2, width // 2))


def expected_box(index: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Where frame ``index`` draws its square: ``(x0, y0, x1, y1)``, end exclusive.

    The square bounces diagonally: a triangle wave per axis keeps it fully inside the
    frame and makes consecutive positions differ, deterministically for any index.
    """
    size = square_size(height, width)
    x0 = _bounce(index, _STEP_X, width - size)
    y0 = _bounce(index, _STEP_Y, height - size)
    return x0, y0, x0 + size, y0 + size


def _bounce(index: int, step: int, span: int) -> int:
    """Offset along one axis after ``index`` steps, reflecting at both ends of ``span``."""
    if span <= 0:
        return 0
    travel = (index * step) % (2 * span)
    return travel if travel <= span else 2 * span - travel


def render(index: int, frame: np.ndarray, background: np.ndarray) -> None:
    """Draw frame ``index`` into ``frame`` in place: background, square, then the stamp."""
    np.copyto(frame, background)
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = expected_box(index, height, width)
    frame[y0:y1, x0:x1, :3] = SQUARE_VALUE
    stamp(frame, index)


def stamp(frame: np.ndarray, index: int) -> int:
    """Write ``index`` and the checksum of everything else into row 0; returns the checksum."""
    head = _stamp_view(frame)
    head[_INDEX] = np.frombuffer(np.int64(index).astype("<i8").tobytes(), dtype=np.uint8)
    value = checksum(frame)
    head[_CHECK] = np.frombuffer(np.uint64(value).astype("<u8").tobytes(), dtype=np.uint8)
    return value


def checksum(frame: np.ndarray) -> int:
    """crc32 of a deterministic sample: row 0 without the checksum field, and every
    ``SAMPLE_EVERY``-th row after it. Works on any (H, W, C) uint8 frame, stamped or not."""
    if frame.dtype != np.uint8 or frame.ndim != 3:
        raise ValueError(f"expected an (H, W, C) uint8 frame, got {frame.dtype} {frame.shape}")
    row0 = np.ascontiguousarray(frame[0]).reshape(-1)
    crc = zlib.crc32(row0[_INDEX].tobytes())
    crc = zlib.crc32(row0[_CHECK.stop:], crc)
    for row in range(SAMPLE_EVERY, frame.shape[0], SAMPLE_EVERY):
        crc = zlib.crc32(np.ascontiguousarray(frame[row]), crc)
    return crc


def read_stamp(frame: np.ndarray) -> tuple[int, int]:
    """The ``(index, checksum)`` written by :func:`stamp`."""
    head = _stamp_view(frame)
    index = int(np.frombuffer(head[_INDEX].tobytes(), dtype="<i8")[0])
    value = int(np.frombuffer(head[_CHECK].tobytes(), dtype="<u8")[0])
    return index, value


def verify(frame: np.ndarray) -> tuple[int, bool]:
    """``(index, ok)``: the stamped index, and whether the frame still matches its stamp."""
    index, value = read_stamp(frame)
    return index, value == checksum(frame)


def _stamp_view(frame: np.ndarray) -> np.ndarray:
    row0 = frame[0].reshape(-1)
    if row0.size < STAMP_BYTES:
        raise ValueError(f"frame row 0 has {row0.size} bytes, the stamp needs {STAMP_BYTES}")
    return row0[:STAMP_BYTES]


def touch_pages(array: np.ndarray) -> int:
    """Read one byte of every page ``array`` spans: a consumer that really looks at the
    frame, not only at its descriptor. Returns their sum (a value nobody can skip)."""
    flat = array.reshape(-1)
    return int(flat[::mmap.PAGESIZE].sum(dtype=np.uint64))


def timed_touch_pages(array: np.ndarray) -> int:
    """:func:`touch_pages`, timed: the ns it took (the ``read_ns`` of latency records)."""
    start = time.perf_counter_ns()
    touch_pages(array)
    return time.perf_counter_ns() - start
