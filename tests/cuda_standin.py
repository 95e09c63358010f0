"""RecordingCudaRuntime: a TEST DOUBLE of ``cuda.bindings.runtime``, not CUDA.

It has the call forms pinflow uses (every call returns ``(err, value...)`` tuples with
IntEnum-like errors), records every call, enforces the registration rules the real driver
enforces (no overlap: 712; unregister only a registered base: 713 / 1), and simulates
asynchronous copies: ``cudaMemcpyAsync`` queues the copy, and the bytes move (memmove
into the "device" buffer, which is host memory here) only when its event completes, which
happens at once (``auto_complete``) or when the test calls :meth:`complete_all`. It also
checks that memory is still mapped when it is unregistered (unregister before unmap).
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorNotReady = 600
    cudaErrorHostMemoryAlreadyRegistered = 712
    cudaErrorHostMemoryNotRegistered = 713
    cudaErrorNotSupported = 801


def _mapped(address: int, size: int) -> bool:
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if start <= address and address + size <= end:
                return True
    return False


@dataclass
class _Event:
    handle: int
    done: threading.Event = field(default_factory=threading.Event)
    copies: list[tuple[int, int, int]] = field(default_factory=list)


class RecordingCudaRuntime:
    """Test double of the CUDA runtime; see the module docstring."""

    def __init__(self, *, auto_complete: bool = True, register_error: int = 0,
                 devices: int = 1) -> None:
        self.auto_complete = auto_complete
        self.register_error = register_error
        self.devices = devices
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.registered: dict[int, int] = {}
        self.copies: list[dict[str, Any]] = []
        self.unregistered_while_mapped: list[bool] = []
        self._handles = itertools.count(1)
        self._events: dict[int, _Event] = {}
        self._queued: list[tuple[int, int, int]] = []
        self._lock = threading.Lock()

    def _record(self, name: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((name, args))

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)

    # -- probing ---------------------------------------------------------------------------
    def cudaGetDeviceCount(self) -> tuple[Err, int]:
        self._record("cudaGetDeviceCount")
        return Err.cudaSuccess, self.devices

    def cudaRuntimeGetVersion(self) -> tuple[Err, int]:
        return Err.cudaSuccess, 13040

    def cudaDriverGetVersion(self) -> tuple[Err, int]:
        return Err.cudaSuccess, 13040

    def cudaDeviceGetAttribute(self, attr: Any, device: int) -> tuple[Err, int]:
        return Err.cudaSuccess, 1

    def cudaGetLastError(self) -> tuple[Err]:
        self._record("cudaGetLastError")
        return (Err.cudaSuccess,)

    def cudaGetErrorString(self, err: Any) -> tuple[Err, bytes]:
        return Err.cudaSuccess, f"stand-in error {int(err)}".encode()

    def cudaSetDevice(self, device: int) -> tuple[Err]:
        self._record("cudaSetDevice", device)
        return (Err.cudaSuccess,)

    # -- registration ----------------------------------------------------------------------
    def cudaHostRegister(self, ptr: int, size: int, flags: int) -> tuple[Err]:
        self._record("cudaHostRegister", ptr, size, flags)
        assert isinstance(ptr, int) and isinstance(size, int), "pointers must be plain ints"
        if self.register_error:
            return (Err(self.register_error),)
        for base, length in self.registered.items():
            if ptr < base + length and base < ptr + size:
                return (Err.cudaErrorHostMemoryAlreadyRegistered,)
        self.registered[ptr] = size
        return (Err.cudaSuccess,)

    def cudaHostUnregister(self, ptr: int) -> tuple[Err]:
        self._record("cudaHostUnregister", ptr)
        if ptr not in self.registered:
            inside = any(b <= ptr < b + n for b, n in self.registered.items())
            return (Err.cudaErrorInvalidValue if inside else Err.cudaErrorHostMemoryNotRegistered,)
        self.unregistered_while_mapped.append(_mapped(ptr, self.registered[ptr]))
        del self.registered[ptr]
        return (Err.cudaSuccess,)

    def is_registered(self, address: int, nbytes: int) -> bool:
        return any(b <= address and address + nbytes <= b + n for b, n in self.registered.items())

    # -- streams, events, copies -----------------------------------------------------------
    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[Err, int]:
        self._record("cudaStreamCreateWithFlags", flags)
        return Err.cudaSuccess, next(self._handles)

    def cudaStreamDestroy(self, stream: int) -> tuple[Err]:
        self._record("cudaStreamDestroy", stream)
        return (Err.cudaSuccess,)

    def cudaEventCreateWithFlags(self, flags: int) -> tuple[Err, int]:
        handle = next(self._handles)
        self._events[handle] = _Event(handle)
        return Err.cudaSuccess, handle

    def cudaEventDestroy(self, event: int) -> tuple[Err]:
        self._events.pop(event, None)
        return (Err.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: int,
                        stream: Any) -> tuple[Err]:
        self._record("cudaMemcpyAsync", dst, src, count, kind, stream)
        with self._lock:
            self.copies.append({"dst": dst, "src": src, "count": count,
                                "pinned": self.is_registered(src, count)})
            self._queued.append((dst, src, count))
        return (Err.cudaSuccess,)

    def cudaEventRecord(self, event: int, stream: Any) -> tuple[Err]:
        self._record("cudaEventRecord", event, stream)
        record = self._events[event]
        with self._lock:
            record.done.clear()
            record.copies, self._queued = self._queued, []
        if self.auto_complete:
            self._complete(record)
        return (Err.cudaSuccess,)

    def _complete(self, record: _Event) -> None:
        for dst, src, count in record.copies:
            ctypes.memmove(dst, src, count)
        record.copies = []
        record.done.set()

    def complete_all(self) -> None:
        """Let every recorded copy finish (moves the bytes, then signals the events)."""
        for record in list(self._events.values()):
            if record.copies:
                self._complete(record)

    def cudaEventQuery(self, event: int) -> tuple[Err]:
        done = self._events[event].done.is_set()
        return (Err.cudaSuccess if done else Err.cudaErrorNotReady,)

    def cudaEventSynchronize(self, event: int) -> tuple[Err]:
        self._record("cudaEventSynchronize", event)
        self._events[event].done.wait()
        return (Err.cudaSuccess,)

    def cudaStreamWaitEvent(self, stream: Any, event: int, flags: int) -> tuple[Err]:
        self._record("cudaStreamWaitEvent", stream, event, flags)
        return (Err.cudaSuccess,)


class HostBuffers:
    """"Device" buffers for the stand-in: numpy arrays the simulated copies land in."""

    def __init__(self) -> None:
        self.waited: list[tuple[Any, Any]] = []

    def empty(self, nbytes: int, layout: dict[str, Any]) -> tuple[np.ndarray, int]:
        buffer = np.zeros(nbytes, dtype=np.uint8)
        return buffer, int(buffer.__array_interface__["data"][0])

    def after_copy(self, buffer: Any, stream: Any, event: Any, consumer_stream: Any) -> None:
        self.waited.append((event, consumer_stream))
