"""Device copies from slots: the ordering rules of the GPU path, shared by every runtime.

This module holds all the decisions and calls only the small runtime interface
(:class:`~pinflow.transport.gpu_runtime.GpuRuntime`), so the code that runs on a GPU (torch
adapter) is the code the CPU tests run (stand-in, :mod:`pinflow.testing`).

One copy, for a consumer stream S (the caller's current stream, or ``stream=``):

1. the destination is allocated on pinflow's copy stream P (torch's pool: never destroyed),
   so the allocator only hands P a block whose previous users finished;
2. the DMA from the slot is queued on P, then event E is recorded on P;
3. S waits for E on the GPU (no host wait) and the tensor is ``record_stream``-ed on S, so
   its memory is not reused before S's work on it ran, whichever stream S is;
4. the slot's holder is dropped by the reaper thread once E completed (blocking event: the
   thread sleeps), which hands the slot back to the producer.

Copies and ``forget`` (a segment about to be unmapped) take one lock, and a copy is in the
pending list before the lock is released, so a segment is unregistered only after its last
copy completed. A frame whose segment was already forgotten (queued while the producer
replaced its pool) is copied as pageable memory: its view keeps the mapping alive; counted,
never re-registered.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from pinflow.errors import CudaUnavailable
from pinflow.protocol.stats import CopyStats
from pinflow.transport.gpu_runtime import GpuRuntime
from pinflow.transport.registrar import RegisterSupport, Registrar, Registration, State
from pinflow.transport.segment import Segment

log = logging.getLogger("pinflow.cuda")

EVENTS = 64
"""Copies in flight per device before a new copy waits for the oldest to complete."""


@dataclass
class _Pending:
    event: Any
    holder: Any  # keeps the slot (and thus its memory) alive until the copy completed
    segment: str | None


class DeviceCopier:
    """Copies host memory to one device; thread-safe.

    Threads: callers issue copies; the registrar registers and unregisters; the reaper waits
    on copy events in issue order and drops slot holders.
    """

    def __init__(self, runtime: GpuRuntime, device: int, *, events: int = EVENTS) -> None:
        self.runtime, self.device = runtime, device
        self.stream = runtime.copy_stream(device)
        self.registrar = Registrar(runtime, device)
        self._lock = threading.Lock()  # copies vs forget/close; taken before _cond
        self._cond = threading.Condition()  # pending copies, free events
        self._registrations: dict[str, Registration] = {}
        self._forgotten: set[str] = set()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._free_events: list[Any] = []
        self._events_made = 0
        self._max_events = events
        self._closed = False
        self._stopping = False
        self._warned: set[str] = set()
        self._counts = CopyStats()
        self._reaper = threading.Thread(target=self._reap, daemon=True,
                                        name=f"pinflow-cuda-reaper-{device}")
        self._reaper.start()

    @property
    def support(self) -> RegisterSupport:
        """What the driver registers on this device (decides read-only consumer mappings)."""
        return self.registrar.support

    @property
    def stats(self) -> CopyStats:
        with self._cond:
            snapshot = msgspec.structs.replace(self._counts)
            snapshot.in_flight = len(self._pending)
        counts = self.registrar.counts
        snapshot.registrations = counts.registrations
        snapshot.registration_failures = counts.registration_failures
        snapshot.unregistrations = counts.unregistrations
        snapshot.unregistration_failures = counts.unregistration_failures
        return snapshot

    # -- registration -----------------------------------------------------------------------
    def prepare(self, segment: Segment, *, pinned: bool) -> None:
        """A segment was just mapped: start registering it (pinned pools only), don't wait."""
        if pinned:
            with self._lock:
                self._registration(segment)

    def _registration(self, segment: Segment) -> Registration | None:
        """The segment's registration, started on first use (caller holds ``_lock``)."""
        if segment.name in self._forgotten or self._closed:
            return None
        reg = self._registrations.get(segment.name)
        if reg is None and not segment.closed:
            reg = self.registrar.register(segment, on_done=self._registered)
            self._registrations[segment.name] = reg
        return reg

    def _registered(self, reg: Registration) -> None:
        if reg.state is State.FAILED:  # said once per segment, or once if never possible
            self._warn_once("register:unsupported" if reg.unsupported else f"register:{reg.name}",
                            "cannot register %s (%d bytes) with CUDA, copying it as pageable "
                            "memory instead: %s", reg.name, reg.size, reg.reason)

    def forget(self, segment: Segment) -> None:
        """The segment is about to be unmapped: finish its copies, then unregister it.

        Never raises: an unregister failure is logged and counted (the pins then go with the
        process), so a closing node or a regrowing producer is never interrupted by it.
        """
        with self._lock:
            self._forgotten.add(segment.name)
            reg = self._registrations.pop(segment.name, None)
            self._wait_for(lambda p: p.segment == segment.name)
            if reg is not None:
                self._unregister(reg)

    def _unregister(self, reg: Registration) -> None:
        reg.done.wait()
        error = self.registrar.unregister(reg)
        if error is not None:
            log.error("cuda:%d: cannot unregister %s; its pages stay pinned until this "
                      "process exits: %s", self.device, reg.name, error)

    # -- copies -----------------------------------------------------------------------------
    def copy(self, host: np.ndarray, holder: Any, shape: tuple[int, ...], dtype: np.dtype, *,
             segment: Segment | None, pinned: bool, consumer_stream: Any = None) -> Any:
        """Queue the copy of ``host`` (a view of a slot, or inline bytes) and return the device
        buffer, ordered on ``consumer_stream`` (default: the caller's current stream).

        ``holder`` is kept until the copy completed, so the slot cannot go back to the
        producer while the DMA engine may still read it.
        """
        if consumer_stream is None:
            consumer_stream = self.runtime.current_stream(self.device)
        elif self.runtime.stream_device(consumer_stream) != self.device:
            raise ValueError(f"stream is on cuda:{self.runtime.stream_device(consumer_stream)}"
                             f", not on cuda:{self.device} where this payload is delivered")
        reg = None
        if segment is not None and pinned:
            with self._lock:
                reg = self._registration(segment)
        if reg is not None and not reg.done.is_set():
            # Outside every lock: the receive thread (forget) and the registrar stay free.
            with self._cond:
                self._counts.registration_waits += 1
            reg.done.wait()
        with self._lock:
            if self._closed:
                raise CudaUnavailable(f"device delivery to cuda:{self.device} is closed")
            from_pinned = self._classify(segment, reg)
            event = self._take_event()
            buffer = self.runtime.empty(shape, dtype, self.device, self.stream)
            self.runtime.copy_from_host(buffer, host, self.stream)
            self.runtime.record_event(event, self.stream)
            self.runtime.wait_event(consumer_stream, event)
            self.runtime.record_stream(buffer, consumer_stream)
            with self._cond:
                self._pending.append(_Pending(event, holder,
                                              None if segment is None else segment.name))
                counts = self._counts
                counts.copies += from_pinned
                counts.pageable_copies += not from_pinned
                counts.bytes_copied += int(host.nbytes)
                self._cond.notify_all()
        return buffer

    def _classify(self, segment: Segment | None, reg: Registration | None) -> bool:
        """Is this copy's source registered? Warns once per kind of pageable copy."""
        if segment is not None and (segment.name in self._forgotten or segment.closed):
            with self._cond:
                self._counts.forgotten_copies += 1
            return False
        if reg is not None and reg.state is State.REGISTERED:
            return True
        if reg is None and segment is not None:
            self._warn_once("unpinned", "copying to cuda:%d from an output that is not "
                            "`pinned: true`: pageable, slower, counted in stats", self.device)
        return False

    def _warn_once(self, key: str, text: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(text, *args)

    def _take_event(self) -> Any:
        with self._cond:
            while not self._free_events and self._events_made >= self._max_events:
                self._cond.wait()  # every event is in flight: the oldest copy completes first
            if self._free_events:
                return self._free_events.pop()
            self._events_made += 1
        return self.runtime.new_event()

    def _reap(self) -> None:
        """Wait on copy events in issue order; drop each holder once its copy is done."""
        try:
            self.runtime.set_device(self.device)  # the runtime binds devices per thread
        except Exception as exc:
            log.error("cuda:%d: the copy reaper cannot select its device: %s", self.device, exc)
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                head = self._pending[0]
            try:
                self.runtime.synchronize_event(head.event)
            except Exception as exc:  # the device failed; keep handing slots back
                log.error("waiting for a copy to cuda:%d failed: %s", self.device, exc)
            with self._cond:
                self._pending.popleft()
                self._free_events.append(head.event)
                self._cond.notify_all()
            del head  # drops the holder: the slot goes back to the producer

    def _wait_for(self, match: Any) -> None:
        with self._cond:
            while any(match(p) for p in self._pending):
                self._cond.wait()

    def close(self) -> None:
        """Finish all copies and unregister every segment. Tensors already delivered stay
        valid: they are recorded only on streams that are never destroyed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wait_for(lambda p: True)
            for reg in list(self._registrations.values()):
                self._unregister(reg)
            self._registrations.clear()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._reaper.join(timeout=5.0)
        self.registrar.close()
        with self._cond:
            self._free_events.clear()
