"""The frames every arm sends and the one read every consumer makes, written once so that
all arms time the same thing.

A frame is an (H, W, 4) uint8 RGBA test pattern (:mod:`pinflow.nodes.framing`): 1080p for
the main table, ``(N / 4096, 1024, 4)`` for a size of the sweep. Producers render a few
distinct frames before timing starts and cycle through them, so a latency never includes
drawing a frame: it runs from just before the producer hands a ready frame over to the
transport until the consumer holds a view of it and has read one byte of every page
(:func:`touch_pages`), which is also what the memcpy floor does to its copy.
"""

from __future__ import annotations

import struct
import time

import numpy as np

from pinflow.nodes import framing
from pinflow.spec import units

FULL_HD = (1080, 1920, 4)
FRAME_BYTES = FULL_HD[0] * FULL_HD[1] * FULL_HD[2]
"""1080p RGBA: 8,294,400 bytes."""
SWEEP_ROW_BYTES = 4096
"""A sweep frame is rows of 1024 RGBA pixels, so its size must be a multiple of this."""
DEFAULT_SIZES = "4KiB,64KiB,1MiB,8MiB,32MiB"
"""What ``--sizes`` is usually given (README)."""
DISTINCT = 4
"""Distinct frames a producer cycles through: enough for a consumer to tell a frame from its
neighbours, few enough to stay cheap at 32 MiB."""


def shape_for(nbytes: int) -> tuple[int, int, int]:
    """The frame shape of ``nbytes``: 1080p for :data:`FRAME_BYTES`, else 1024-pixel rows."""
    if nbytes == FRAME_BYTES:
        return FULL_HD
    if nbytes < SWEEP_ROW_BYTES or nbytes % SWEEP_ROW_BYTES:
        raise ValueError(f"a frame of {nbytes} bytes is not a whole number of "
                         f"{SWEEP_ROW_BYTES}-byte rows (1024 RGBA pixels); use a multiple of "
                         "4 KiB")
    return (nbytes // SWEEP_ROW_BYTES, SWEEP_ROW_BYTES // 4, 4)


def parse_sizes(text: str) -> list[int]:
    """``--sizes``: comma-separated byte counts (``4KiB,64KiB,1MiB``), each a frame size
    :func:`shape_for` accepts; ValueError naming the first that is not."""
    sizes = []
    for part in text.split(","):
        size = units.parse_size(part.strip())
        shape_for(size)
        sizes.append(size)
    return list(dict.fromkeys(sizes))


def prepared(shape: tuple[int, int, int], count: int = DISTINCT) -> list[np.ndarray]:
    """``count`` stamped pattern frames (indices 0..count-1), rendered now, not while timed."""
    background = framing.make_background(shape[0], shape[1])
    frames = []
    for index in range(count):
        frame = np.empty(shape, dtype=np.uint8)
        framing.render(index, frame, background)
        frames.append(frame)
    return frames


_STAMP = struct.Struct("<qq")


def stamp_only(frame: np.ndarray, index: int) -> None:
    """Write the frame's 16 stamp bytes and nothing else (the in-place loan arm): the index,
    and no checksum, so the rest of the slot is whatever an earlier frame left there. One
    buffer write: the arm times what a message costs beyond its bytes, and the numpy calls
    this took before (reshape, frombuffer, a slice assignment) added ~20 us to its path at
    30 Hz (A/B on the 2-vCPU VM, 4 rounds of 500 frames: send-to-wake 251 -> 231 us)."""
    memoryview(frame).cast("B")[:framing.STAMP_BYTES] = _STAMP.pack(index, 0)


VERIFY_EVERY = 30
"""Every consumer of the bench checks the integrity of every 30th frame, after timing it."""

touch_pages = framing.touch_pages
"""Re-exported: the probe node and the baselines read frames the same way."""


def prepare_device(device: str) -> None:
    """Start CUDA in a baseline's consumer before it takes its first frame, as pinflow's nodes
    do before the dataflow starts: else the first frames would wait for CUDA's start-up."""
    if not device.startswith("cuda"):
        return
    import torch

    torch.empty(1, device=device)
    torch.cuda.synchronize(device)


def make_usable(host: np.ndarray, device: str) -> tuple[int | None, str, int | None]:
    """What the baselines' consumers do with a received frame, as the probe does: on a CUDA
    ``device``, copy it there and wait for the copy; on the CPU, read one byte per page.
    Returns (the copy's ns, the device, the page read's ns)."""
    if not device.startswith("cuda"):
        return None, "cpu", framing.timed_touch_pages(host)
    import torch

    start = time.perf_counter_ns()
    tensor = torch.from_numpy(host).to(device)
    torch.cuda.current_stream(tensor.device).synchronize()
    return time.perf_counter_ns() - start, str(tensor.device), None
