"""Registration of pinned segments with CUDA, on one thread per device, off the delivery path.

Why a thread of its own: registering a pool costs tens of milliseconds per 100 MB, so it is
started when a segment is mapped (on the receive thread, which must not wait) and done here
while frames are still in flight; and a failed ``cudaHostRegister`` leaves its error pending on
the calling thread, where torch would report it against that thread's next kernel. This thread
launches no kernels, binds itself to its device first (``set_device``: otherwise the calls
would run in, and create, device 0's context), and makes every register and unregister call.

Flags: Portable, plus ReadOnly for read-only consumer mappings. Before anything else it learns
what the driver accepts by registering a scratch page read-only and read-write
(:class:`RegisterSupport`), which decides how consumers map segments.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from pinflow.errors import CudaError
from pinflow.transport.gpu_runtime import (
    HOST_REGISTER_PORTABLE,
    HOST_REGISTER_READ_ONLY,
    GpuRuntime,
)
from pinflow.transport.segment import Segment

log = logging.getLogger("pinflow.cuda")


@dataclass(frozen=True)
class RegisterSupport:
    """What the driver lets this device register, learnt from a scratch page."""

    read_only: bool
    """PROT_READ mappings can be registered (flag ReadOnly)."""
    read_write: bool
    """Read-write mappings can be registered."""
    detail: str = ""
    """The driver's answer when one of them failed."""


class State(enum.Enum):
    PENDING = "pending"
    REGISTERED = "registered"
    FAILED = "failed"
    UNREGISTERED = "unregistered"


@dataclass(eq=False)
class Registration:
    """One segment's registration; ``done`` is set once it is no longer pending."""

    name: str
    address: int
    size: int
    flags: int
    path: os.PathLike[str] | str
    state: State = State.PENDING
    reason: str | None = None
    unsupported: bool = False
    """Not attempted: the device cannot register this kind of mapping at all."""
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class RegistrarCounts:
    registrations: int = 0
    """cudaHostRegister calls that succeeded (one per pinned segment, never per message)."""
    registration_failures: int = 0
    """Segments whose registration failed; their copies are pageable."""
    unregistrations: int = 0
    """cudaHostUnregister calls that succeeded."""
    unregistration_failures: int = 0
    """cudaHostUnregister calls that failed (logged; the pins go when the process exits)."""


@contextlib.contextmanager
def _scratch_page(writable: bool) -> Iterator[int]:
    """One shared-memory page mapped like a consumer maps segments; yields its address."""
    fd = os.memfd_create("pinflow-register-probe", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, mmap.PAGESIZE)
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        mm = mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED | mmap.MAP_POPULATE, prot)
    finally:
        os.close(fd)
    view = np.frombuffer(mm, np.uint8)
    address = int(view.__array_interface__["data"][0])
    try:
        yield address
    finally:
        del view
        mm.close()


@contextlib.contextmanager
def _segment_lock(path: os.PathLike[str] | str) -> Iterator[None]:
    """Serialise registrations of one segment across processes: concurrent pins of the same
    pages can make the kernel's page migration fail (ENOMEM). A segment whose producer already
    unlinked it is registered without the lock (nobody else can open it any more)."""
    try:
        lock = open(path, "rb")  # noqa: SIM115 - held for the duration of the block
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _try_register(runtime: GpuRuntime, writable: bool) -> str | None:
    flags = HOST_REGISTER_PORTABLE | (0 if writable else HOST_REGISTER_READ_ONLY)
    with _scratch_page(writable) as address:
        try:
            runtime.host_register(address, mmap.PAGESIZE, flags)
        except CudaError as exc:
            return str(exc)
        try:
            runtime.host_unregister(address)
        except CudaError as exc:
            log.error("unregistering the registration probe page failed: %s", exc)
    return None


class Registrar:
    """The registration thread of one device: register segments, unregister them on request."""

    def __init__(self, runtime: GpuRuntime, device: int) -> None:
        self.runtime, self.device = runtime, device
        self.counts = RegistrarCounts()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._support: RegisterSupport | None = None
        self._support_known = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"pinflow-cuda-register-{device}")
        self._thread.start()

    @property
    def support(self) -> RegisterSupport:
        self._support_known.wait()
        assert self._support is not None
        return self._support

    def _run(self) -> None:
        try:
            self.runtime.set_device(self.device)
            read_only = _try_register(self.runtime, writable=False)
            read_write = _try_register(self.runtime, writable=True)
            self._support = RegisterSupport(read_only is None, read_write is None,
                                            read_only or read_write or "")
        except Exception as exc:  # a broken runtime: every copy goes pageable, said once
            log.error("cuda:%d: registration support could not be probed: %s", self.device, exc)
            self._support = RegisterSupport(False, False, str(exc))
        self._support_known.set()
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # keep serving: callers wait on this thread
                log.exception("cuda:%d: a registration job failed", self.device)

    # -- requests (any thread) ------------------------------------------------------------
    def register(self, segment: Segment, *, on_done: Callable[[Registration], None]
                 ) -> Registration:
        """Queue the registration of ``segment`` (still mapped now); returns at once."""
        read_only = not segment.writable
        flags = HOST_REGISTER_PORTABLE | (HOST_REGISTER_READ_ONLY if read_only else 0)
        reg = Registration(segment.name, segment.address(), segment.size, flags, segment.path)
        self._jobs.put(lambda: self._register(reg, read_only, on_done))
        return reg

    def unregister(self, reg: Registration) -> str | None:
        """Unregister ``reg`` (after its registration finished); returns the error, if any.

        The caller guarantees no copy from the range is queued and that the mapping stays
        until this returns.
        """
        result: list[str | None] = []
        finished = threading.Event()

        def job() -> None:
            try:
                result.append(self._unregister(reg))
            finally:
                finished.set()

        self._jobs.put(job)
        finished.wait()
        return result[0] if result else "the registration thread failed"

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the registration thread and wait; its exception is re-raised here."""
        errors: list[BaseException] = []
        finished = threading.Event()

        def job() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
            finished.set()

        self._jobs.put(job)
        finished.wait()
        if errors:
            raise errors[0]

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5.0)

    # -- on the registration thread ---------------------------------------------------------
    def _register(self, reg: Registration, read_only: bool,
                  on_done: Callable[[Registration], None]) -> None:
        support = self.support
        if not (support.read_only if read_only else support.read_write):
            kind = "read-only" if read_only else "read-write"
            reg.unsupported = True
            self._finish(reg, State.FAILED, f"this device cannot register {kind} host "
                                            f"mappings ({support.detail or 'not supported'})")
        else:
            try:
                with _segment_lock(reg.path):
                    self.runtime.host_register(reg.address, reg.size, reg.flags)
            except Exception as exc:  # CudaError, or the runtime failing otherwise
                self._finish(reg, State.FAILED, str(exc))
            else:
                self.counts.registrations += 1
                self._finish(reg, State.REGISTERED, None)
        if reg.state is State.FAILED:
            self.counts.registration_failures += 1
        on_done(reg)

    @staticmethod
    def _finish(reg: Registration, state: State, reason: str | None) -> None:
        reg.state, reg.reason = state, reason
        reg.done.set()

    def _unregister(self, reg: Registration) -> str | None:
        if reg.state is not State.REGISTERED:
            return None
        try:
            self.runtime.host_unregister(reg.address)
        except Exception as exc:  # CudaError, or the runtime failing otherwise
            self.counts.unregistration_failures += 1
            return str(exc)
        reg.state = State.UNREGISTERED
        self.counts.unregistrations += 1
        return None
