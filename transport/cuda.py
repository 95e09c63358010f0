"""CUDA for GPU consumers: register each pinned segment once, DMA slots to the device, and
give a slot back only after its copy completed.

This is the only module that imports ``cuda.bindings`` and it does so inside functions:
importing pinflow never loads CUDA, and nothing here runs unless a consumer asks for
device delivery. Every runtime call goes through :meth:`Cuda.call`, which turns the
``(err, value...)`` tuples of cuda-python into values or a :class:`CudaError`. Tests drive
the same code with a recording stand-in of the runtime that has the same call forms.

Lifecycle (see RFC.md): ``register`` once per segment (whole mapping) -> per message one
``cudaMemcpyAsync`` on a dedicated non-blocking stream + an event -> the slot's holder is
dropped when the event completed -> ``forget`` a segment: wait for its copies, then
``cudaHostUnregister``, and only then may the mapping be closed.
"""

from __future__ import annotations

import collections
import fcntl
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pinflow.errors import CudaError, CudaUnavailable
from pinflow.transport.segment import Segment

log = logging.getLogger("pinflow.cuda")

_SUCCESS = 0
_NOT_READY = 600
_HOST_REGISTER_DEFAULT = 0
_STREAM_NON_BLOCKING = 1
_EVENT_DISABLE_TIMING = 2
_MEMCPY_HOST_TO_DEVICE = 1
_ATTR_HOST_REGISTER_SUPPORTED = 99


def load_runtime() -> Any:
    """``cuda.bindings.runtime``, or ``CudaUnavailable`` naming the package to install."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        raise CudaUnavailable(
            "cuda-python is not installed: pip install cuda-python"
        ) from None
    return runtime


@dataclass(frozen=True)
class Probe:
    """What this machine offers, for the fallback decision and ``pinflow doctor``."""

    available: bool
    reason: str | None
    runtime_version: int | None = None
    driver_version: int | None = None
    device_count: int = 0
    host_register_supported: list[bool] = field(default_factory=list)


def probe(runtime: Any | None = None) -> Probe:
    """Never raises. ``cudaGetDeviceCount`` is ``(35, None)`` without a driver, not 0."""
    try:
        rt = runtime or load_runtime()
    except CudaUnavailable as exc:
        return Probe(False, str(exc))
    cuda = Cuda(rt)
    runtime_version = cuda.try_call("cudaRuntimeGetVersion")
    driver_version = cuda.try_call("cudaDriverGetVersion")
    try:
        count = cuda.call("cudaGetDeviceCount")
    except CudaError as exc:
        return Probe(False, f"no usable CUDA driver: {exc}", runtime_version, driver_version)
    if not count:
        return Probe(False, "the CUDA driver sees no device", runtime_version, driver_version)
    supported = [
        cuda.try_call("cudaDeviceGetAttribute", _attr(rt), index) == 1 for index in range(count)
    ]
    return Probe(True, None, runtime_version, driver_version, count, supported)


@functools.cache
def default_probe() -> Probe:
    return probe()


def is_available() -> bool:
    """True when cuda-python, a driver and at least one device are present. Never raises."""
    return default_probe().available


def unavailable_reason() -> str | None:
    return default_probe().reason


def _attr(rt: Any) -> Any:
    enum = getattr(rt, "cudaDeviceAttr", None)
    return enum.cudaDevAttrHostRegisterSupported if enum else _ATTR_HOST_REGISTER_SUPPORTED


class Cuda:
    """A CUDA runtime (cuda.bindings.runtime or a stand-in) behind one error check."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime

    def call(self, name: str, *args: Any) -> Any:
        result = getattr(self.rt, name)(*args)
        err = result[0]
        if int(err) != _SUCCESS:
            # A failed call leaves the error pending; clear it so it is not blamed on a
            # later, unrelated call (torch would report it against its next kernel).
            self.rt.cudaGetLastError()
            detail = self.rt.cudaGetErrorString(err)
            text = detail[1].decode() if isinstance(detail, tuple) and len(detail) > 1 else ""
            raise CudaError(name, getattr(err, "name", str(err)), int(err), text)
        values = result[1:]
        return values[0] if len(values) == 1 else (values or None)

    def try_call(self, name: str, *args: Any) -> Any:
        try:
            return self.call(name, *args)
        except CudaError:
            return None

    def event_done(self, event: Any) -> bool:
        err = self.rt.cudaEventQuery(event)[0]
        if int(err) == _NOT_READY:
            return False
        if int(err) != _SUCCESS:
            self.call("cudaEventQuery", event)  # raises with the name
        return True


class DeviceBuffers(Protocol):
    """Where copies land: torch's caching allocator in production, host memory in tests."""

    def empty(self, nbytes: int, layout: dict[str, Any]) -> tuple[Any, int]:
        """A device buffer for ``layout`` and its pointer as a plain int."""

    def after_copy(self, buffer: Any, stream: Any, event: Any, consumer_stream: Any) -> None:
        """Order ``consumer_stream``'s use of ``buffer`` after ``event`` (GPU-side, no host
        wait); ``None`` means the caller's current stream."""


@dataclass
class Registration:
    """One segment registered with CUDA (or why it could not be)."""

    segment: Segment
    address: int
    size: int
    registered: bool
    reason: str | None = None


@dataclass
class CopyStats:
    registrations: int = 0
    """cudaHostRegister calls that succeeded (one per pinned segment, never per message)."""
    unregistrations: int = 0
    """cudaHostUnregister calls (each after the segment's last copy completed)."""
    registration_failures: int = 0
    """Segments whose registration failed; their copies fall back to pageable ones."""
    copies: int = 0
    """Host-to-device copies issued from a registered (pinned) slot."""
    pageable_copies: int = 0
    """Copies from memory CUDA does not know as pinned (unpinned pools, failed
    registrations): correct, but staged by the driver and slower."""
    bytes_copied: int = 0
    in_flight: int = 0
    """Copies issued whose completion event has not been seen yet."""


@dataclass
class _Pending:
    event: Any
    holder: Any  # keeps the slot (and thus its memory) alive until the copy completed
    segment: str | None


class DeviceCopier:
    """Copies slots to one device on its own non-blocking stream.

    Not thread-safe for callers: one consumer thread issues copies. A reaper thread waits
    on copy events in order and then drops the slot holders, which hands the slots back.
    """

    def __init__(self, cuda: Cuda, device: int, buffers: DeviceBuffers,
                 *, events: int = 64) -> None:
        self.cuda, self.device, self.buffers = cuda, device, buffers
        cuda.call("cudaSetDevice", device)
        self.stream = cuda.call("cudaStreamCreateWithFlags", _STREAM_NON_BLOCKING)
        self._free_events = collections.deque(
            cuda.call("cudaEventCreateWithFlags", _EVENT_DISABLE_TIMING) for _ in range(events)
        )
        self._registrations: dict[str, Registration] = {}
        self._pending: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._warned_pageable = False
        self.stats = CopyStats()
        self._reaper = threading.Thread(target=self._reap, daemon=True,
                                        name=f"pinflow-cuda-reaper-{device}")
        self._reaper.start()

    # -- registration ---------------------------------------------------------------------
    def registration(self, segment: Segment, *, pinned: bool) -> Registration | None:
        """The segment's registration, made on first use (pinned segments only)."""
        reg = self._registrations.get(segment.name)
        if reg is None and pinned:
            reg = self._register(segment)
            self._registrations[segment.name] = reg
        return reg

    def _register(self, segment: Segment) -> Registration:
        address, size = segment.address(), segment.size
        try:
            # Serialise registrations of one segment across processes: concurrent pins
            # of the same pages can make the kernel's page migration fail (ENOMEM).
            with open(segment.path, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self.cuda.call("cudaHostRegister", address, size, _HOST_REGISTER_DEFAULT)
        except (CudaError, OSError) as exc:
            self.stats.registration_failures += 1
            self._warned_pageable = True  # this warning already says copies go pageable
            log.warning("cannot register %s (%d bytes) with CUDA, copying it as pageable "
                        "memory instead: %s", segment.name, size, exc)
            return Registration(segment, address, size, False, str(exc))
        self.stats.registrations += 1
        return Registration(segment, address, size, True)

    def forget(self, segment: Segment) -> None:
        """The segment is about to be unmapped: finish its copies, then unregister it."""
        reg = self._registrations.pop(segment.name, None)
        self._wait_for(lambda p: p.segment == segment.name)
        if reg is not None and reg.registered:
            self.cuda.call("cudaHostUnregister", reg.address)
            self.stats.unregistrations += 1

    # -- copies ---------------------------------------------------------------------------
    def copy(self, host: Any, holder: Any, layout: dict[str, Any], *,
             segment: Segment | None, pinned: bool, consumer_stream: Any = None) -> Any:
        """Issue the async copy of ``host`` (a numpy view) and return the device buffer.

        ``holder`` is kept until the copy's event completed, so the slot cannot return to
        the producer while the DMA engine still reads it.
        """
        if self._closed:
            raise CudaUnavailable("device copier is closed")
        nbytes = int(host.nbytes)
        source = int(host.__array_interface__["data"][0])
        reg = None if segment is None else self.registration(segment, pinned=pinned)
        if reg is not None and reg.registered:
            self.stats.copies += 1
        else:
            self.stats.pageable_copies += 1
            if not self._warned_pageable:
                self._warned_pageable = True
                log.warning("copying to cuda:%d from pageable memory (output not `pinned: "
                            "true`, or registration failed): slower, counted in stats",
                            self.device)
        buffer, target = self.buffers.empty(nbytes, layout)
        event = self._event()
        self.cuda.call("cudaMemcpyAsync", target, source, nbytes, _MEMCPY_HOST_TO_DEVICE,
                       self.stream)
        self.cuda.call("cudaEventRecord", event, self.stream)
        self.buffers.after_copy(buffer, self.stream, event, consumer_stream)
        with self._cond:
            self._pending.append(_Pending(event, holder, None if segment is None
                                          else segment.name))
            self.stats.bytes_copied += nbytes
            self.stats.in_flight = len(self._pending)
            self._cond.notify_all()
        return buffer

    def _event(self) -> Any:
        with self._cond:
            while not self._free_events:
                # every event is in flight: wait for the oldest copy to complete
                self._cond.wait(0.1)
            return self._free_events.popleft()

    def _reap(self) -> None:
        """Wait on copy events in issue order; drop each holder once its copy is done."""
        self.cuda.try_call("cudaSetDevice", self.device)  # the runtime binds per thread
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                head = self._pending[0]
            try:
                self.cuda.call("cudaEventSynchronize", head.event)
            except CudaError as exc:
                log.error("waiting for a copy to cuda:%d failed: %s", self.device, exc)
            with self._cond:
                self._pending.popleft()
                self._free_events.append(head.event)
                self.stats.in_flight = len(self._pending)
                self._cond.notify_all()
            del head  # drops the holder: the slot goes back to the producer

    def _wait_for(self, match: Callable[[_Pending], bool]) -> None:
        with self._cond:
            while any(match(p) for p in self._pending):
                self._cond.wait(0.1)

    def close(self) -> None:
        """Finish all copies, unregister every segment, release the stream and events."""
        if self._closed:
            return
        self._wait_for(lambda p: True)
        for reg in list(self._registrations.values()):
            self.forget(reg.segment)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._reaper.join(timeout=5.0)
        for event in self._free_events:
            self.cuda.try_call("cudaEventDestroy", event)
        self.cuda.try_call("cudaStreamDestroy", self.stream)


def device_index(device: str) -> int:
    """``cuda`` -> 0, ``cuda:1`` -> 1."""
    if device == "cuda":
        return 0
    prefix, _, index = device.partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise ValueError(f"not a CUDA device: {device!r} (use 'cuda' or 'cuda:N')")
    return int(index)
