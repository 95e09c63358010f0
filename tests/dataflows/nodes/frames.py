"""Frame pattern shared by the shared-memory test nodes: every byte of frame i is i % 251,
and the first 8 bytes hold i, so a torn or recycled frame is detected by its reader."""

from __future__ import annotations

import os

import numpy as np

from pinflow.transport.segment import shm_dir

SHAPE = (1080, 1920, 4)  # 8,294,400 bytes


def shape_from_env() -> tuple[int, ...]:
    raw = os.environ.get("SHAPE")
    return tuple(int(x) for x in raw.split("x")) if raw else SHAPE


def fill(frame: np.ndarray, index: int) -> None:
    flat = frame.reshape(-1).view(np.uint8)
    flat.fill(index % 251)
    flat[:8] = np.frombuffer(np.int64(index).tobytes(), dtype=np.uint8)


def check(frame: np.ndarray) -> int | None:
    """The frame's index if it is intact, else None."""
    flat = frame.reshape(-1).view(np.uint8)
    index = int(np.frombuffer(flat[:8].tobytes(), dtype=np.int64)[0])
    body = flat[8:]
    if body.size and not (body[0] == index % 251 and np.all(body == body[0])):
        return None
    return index


def shm_ranges() -> list[tuple[int, int, str]]:
    """(start, end, path) of every pinflow shared-memory mapping of this process."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith(f"{shm_dir()}/pinflow-"):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((start, end, parts[5]))
    return ranges


def segment_of(array: np.ndarray) -> str | None:
    """Path of the pinflow segment that holds ``array``, or None (not shared memory)."""
    address = array.__array_interface__["data"][0]
    return next((path for start, end, path in shm_ranges()
                 if start <= address and address + array.nbytes <= end), None)


def inside_shared_memory(array: np.ndarray) -> bool:
    return segment_of(array) is not None
