"""StandinCuda: a CUDA device simulated on the CPU that keeps CUDA's ordering rules.

It implements pinflow's runtime interface (``transport/gpu_runtime.py``), so pinflow's own
copier runs on it unchanged, and it makes ordering mistakes visible instead of hiding them:

- **Streams** run their queue on a worker thread, in order, with injectable delays
  (``delay_s`` per stream, ``copy_delay_s`` per copy), so work really is asynchronous.
- **Events** complete when their stream reaches them; ``wait_event`` makes a stream wait
  for the event's latest record at the time of the call (later re-records do not count).
- **Registration table**: overlapping registrations fail with 712, unregistering an unknown
  or interior address with 713 / 1; a read-only mapping needs the ReadOnly flag, and the
  ReadOnly flag needs device support. A copy from registered memory is a DMA that reads the
  source when the stream executes it; any other copy is pageable: staged at call time and
  counted. Unregistering a range while a copy from it is still queued, copying from a range
  while it is being registered, or unregistering after unmapping is recorded in
  :attr:`StandinCuda.violations`.
- **Device memory** are host buffers from a caching allocator like torch's: a freed block
  goes back at once to the pool of the stream it was allocated on, and is handed out again
  at once; a block ``record_stream``-ed on other streams is reusable only after the work
  those streams had queued when it was freed has run. A tensor used on a stream it was
  neither allocated on nor recorded on can therefore be overwritten while still being read.
  Freeing a tensor allocated or recorded on a stream destroyed meanwhile is a violation.
- **Per-thread current device**: calls that bind to the current device (register,
  unregister, event synchronize) mark that device's context as created (``contexts``).
- **Kernels**: :meth:`StandinCuda.launch` queues a Python function over device buffers on a
  stream, as a consumer's asynchronous loop queues kernels; ``tensor.cpu()`` is a
  device-to-host copy on the current stream that waits for it, as in torch.

It is not a GPU and not torch: device buffers are :class:`StandinTensor` objects, not
``torch.Tensor``, and no torch kernel runs on them.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pinflow.errors import CudaError
from pinflow.transport.gpu_runtime import (
    HOST_REGISTER_READ_ONLY,
    Probe,
    error_name,
)

_FRESH = 0xA5
"""What unwritten device memory holds (a fresh block is never zero by accident)."""


def _error(call: str, code: int, detail: str) -> CudaError:
    return CudaError(call, error_name(code), code, f"stand-in: {detail}")


class Handle:
    """An opaque handle like cuda-bindings' ``cudaStream_t``: ``int()`` is the handle,
    ``getPtr()`` the address of this Python object's storage, which is something else."""

    _values = itertools.count(0x1000, 0x10)

    def __init__(self) -> None:
        self._value = next(self._values)

    def __int__(self) -> int:
        return self._value

    def getPtr(self) -> int:
        return id(self) + 16

    def __repr__(self) -> str:
        return f"<Handle 0x{self._value:x}>"


@dataclass
class _Op:
    fn: Callable[[], None]
    delay_s: float
    label: str


class StandinStream:
    """A stream: its queue runs in order on a worker thread."""

    def __init__(self, runtime: StandinCuda, device: int, label: str, *,
                 delay_s: float = 0.0, pooled: bool = False) -> None:
        self.runtime, self.device, self.label = runtime, device, label
        self.delay_s = delay_s
        """Slept before every operation of this stream (a slow consumer)."""
        self.pooled = pooled
        self.handle = Handle()
        self.cuda_stream = int(self.handle)
        self.destroyed = False
        self._ops: collections.deque[_Op] = collections.deque()
        self._cond = threading.Condition()
        self._issued = 0
        self._done = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"standin-stream-{label}")
        self._thread.start()

    def enqueue(self, fn: Callable[[], None], *, delay_s: float = 0.0, label: str = "op"
                ) -> int:
        """Queue ``fn``; returns its ticket (see :meth:`wait_ticket`)."""
        if self.destroyed:
            self.runtime.violation(f"{label} queued on destroyed stream {self.label}")
        with self._cond:
            self._ops.append(_Op(fn, delay_s, label))
            self._issued += 1
            self._cond.notify_all()
            return self._issued

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ops and not self._stopped:
                    self._cond.wait()
                if not self._ops:
                    return
                op = self._ops.popleft()
            pause = self.delay_s + op.delay_s
            if pause > 0:
                time.sleep(pause)
            try:
                op.fn()
            except Exception as exc:
                self.runtime.violation(f"{op.label} on stream {self.label} failed: {exc!r}")
            del op  # what the operation referenced (buffers, events) is not kept by the queue
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def wait_ticket(self, ticket: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._done >= ticket)

    def synchronize(self) -> None:
        """Block until everything queued so far ran."""
        with self._cond:
            target = self._issued
        self.wait_ticket(target)

    def query(self) -> bool:
        with self._cond:
            return self._done >= self._issued

    def wait_event(self, event: StandinEvent) -> None:
        self.runtime.wait_event(self, event)

    def _stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    def __repr__(self) -> str:
        return f"<StandinStream {self.label} cuda:{self.device}>"


class StandinEvent:
    """An event: complete once its stream ran past its latest record (or never recorded)."""

    def __init__(self, *, blocking: bool = True) -> None:
        self.blocking = blocking
        self.handle = Handle()
        self._cond = threading.Condition()
        self._recorded = 0
        self._completed = 0

    def _record_on(self, stream: StandinStream) -> None:
        with self._cond:
            self._recorded += 1
            generation = self._recorded
        stream.enqueue(lambda: self._complete(generation), label="event record")

    def _complete(self, generation: int) -> None:
        with self._cond:
            self._completed = max(self._completed, generation)
            self._cond.notify_all()

    def _latest(self) -> int:
        with self._cond:
            return self._recorded

    def _wait_for(self, generation: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._completed >= generation)

    def query(self) -> bool:
        with self._cond:
            return self._completed >= self._recorded

    def synchronize(self) -> None:
        self._wait_for(self._latest())


@dataclass(eq=False)
class _Block:
    serial: int
    data: np.ndarray
    device: int
    stream: StandinStream
    recorded: set[StandinStream] = field(default_factory=set)

    @property
    def address(self) -> int:
        return int(self.data.__array_interface__["data"][0])


class _Allocator:
    """torch's caching-allocator rules, on host buffers: per-stream pools, immediate reuse,
    reuse after ``record_stream``-ed streams caught up."""

    def __init__(self, runtime: StandinCuda) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._free: dict[tuple[int, int, int], list[_Block]] = collections.defaultdict(list)
        self._serials = itertools.count(1)
        self.allocated = 0
        self.reused = 0
        self.live = 0

    def allocate(self, nbytes: int, device: int, stream: StandinStream) -> _Block:
        with self._lock:
            self.live += 1
            pool = self._free.get((device, id(stream), nbytes))
            if pool:
                self.reused += 1
                return pool.pop()
            self.allocated += 1
            data = np.full(nbytes, _FRESH, dtype=np.uint8)
            return _Block(next(self._serials), data, device, stream)

    def release(self, block: _Block) -> None:
        """The block's tensor was freed (runs in a finalizer, on any thread)."""
        if block.stream.destroyed:  # torch's cudaMallocAsync backend frees on that stream
            self.runtime.violation(f"a tensor allocated on destroyed stream {block.stream.label} "
                                   f"was freed")
        others = [s for s in block.recorded if s is not block.stream]
        block.recorded = set()
        if not others:
            self._give_back(block)
            return
        left = [len(others)]
        lock = threading.Lock()

        def caught_up() -> None:
            with lock:
                left[0] -= 1
                done = left[0] == 0
            if done:
                self._give_back(block)

        for stream in others:
            if stream.destroyed:
                self.runtime.violation(f"a tensor recorded on destroyed stream {stream.label} "
                                       f"was freed (the allocator records an event there)")
            stream.enqueue(caught_up, label="free after recorded use")

    def _give_back(self, block: _Block) -> None:
        with self._lock:
            self.live -= 1
            self._free[(block.device, id(block.stream), block.data.nbytes)].append(block)


class StandinTensor:
    """Device memory of the stand-in: shape, dtype and device like a tensor, no kernels.

    Read it with :meth:`cpu` (a copy on the current stream, like ``tensor.cpu()``) or inside a
    kernel queued with :meth:`StandinCuda.launch`.
    """

    is_cuda = True

    def __init__(self, runtime: StandinCuda, block: _Block, shape: tuple[int, ...],
                 dtype: np.dtype) -> None:
        self._runtime = runtime
        self._block = block
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.device = f"cuda:{block.device}"
        weakref.finalize(self, runtime._allocator.release, block)

    @property
    def nbytes(self) -> int:
        return int(self._block.data.nbytes)

    def data_ptr(self) -> int:
        return self._block.address

    def device_array(self) -> np.ndarray:
        """The device memory itself as an array (what a kernel sees; no ordering)."""
        return self._block.data.view(self.dtype).reshape(self.shape)

    def record_stream(self, stream: StandinStream) -> None:
        self._runtime.record_stream(self, stream)

    def cpu(self, stream: StandinStream | None = None) -> np.ndarray:
        """Copy to the host on ``stream`` (default: current) and wait for that copy."""
        runtime = self._runtime
        stream = stream or runtime.current_stream(self._block.device)
        data = self._block.data
        out = np.empty(data.nbytes, dtype=np.uint8)
        ticket = stream.enqueue(lambda: np.copyto(out, data), label="device-to-host copy")
        stream.wait_ticket(ticket)
        return out.view(self.dtype).reshape(self.shape)

    def __repr__(self) -> str:
        return f"StandinTensor(shape={self.shape}, dtype={self.dtype}, device={self.device})"


def _maps(address: int, size: int) -> str | None:
    """Permissions of ``[address, address+size)`` if it is mapped throughout, else None."""
    end, covered, perms = address + size, address, "rw"
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, stop = (int(x, 16) for x in fields[0].split("-"))
            if stop <= covered:
                continue
            if start > covered:
                return None  # a hole: the maps are sorted, nothing later covers it
            perms = "".join(p for p in perms if p in fields[1])
            covered = stop
            if covered >= end:
                return perms
    return None


def _owner(host: np.ndarray) -> Any:
    """What keeps ``host``'s memory mapped, without keeping ``host`` (a slot view whose
    collection releases the slot) alive: an export of the underlying buffer."""
    obj: Any = host
    while isinstance(obj, np.ndarray) and obj.base is not None:
        obj = obj.base
    if isinstance(obj, np.ndarray):
        return obj
    try:
        return memoryview(obj)
    except TypeError:
        return obj


class StandinCuda:
    """A simulated CUDA runtime with ``devices`` devices; see the module docstring.

    ``copy_delay_s``: time each host-to-device copy takes on its stream.
    ``register_delay_s``: time each ``cudaHostRegister`` takes (registration in progress).
    ``read_only_register`` / ``host_register``: what the device supports.
    ``unregister_error``: make every ``cudaHostUnregister`` fail with this code.
    """

    name = "stand-in"

    def __init__(self, devices: int = 1, *, copy_delay_s: float = 0.0,
                 register_delay_s: float = 0.0, read_only_register: bool = True,
                 host_register: bool = True, unregister_error: int = 0) -> None:
        self.devices = devices
        self.copy_delay_s = copy_delay_s
        self.register_delay_s = register_delay_s
        self.read_only_register = read_only_register
        self.host_register_supported = host_register
        self.unregister_error = unregister_error
        self.violations: list[str] = []
        """Broken CUDA rules seen so far; :meth:`check` fails if there are any."""
        self.calls: collections.Counter[str] = collections.Counter()
        self.contexts: set[int] = set()
        """Devices whose context some thread created (by a call bound to its device)."""
        self.registered: dict[int, tuple[int, int]] = {}
        """Registered ranges: base address -> (size, flags)."""
        self.registrations = 0
        self.unregistrations = 0
        self.pinned_copies = 0
        self.pageable_copies = 0
        self.events_created = 0
        self.events_destroyed = 0
        self.streams_created = 0
        self._lock = threading.RLock()
        self._registering: dict[int, int] = {}
        self._queued_dma: dict[int, tuple[int, int]] = {}
        self._tickets = itertools.count(1)
        self._local = threading.local()
        self._default_streams: dict[int, StandinStream] = {}
        self._copy_streams: dict[int, StandinStream] = {}
        self._streams: list[StandinStream] = []
        self._allocator = _Allocator(self)

    # -- bookkeeping --------------------------------------------------------------------------
    def violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def check(self) -> None:
        """Raise ``AssertionError`` listing every broken rule seen so far."""
        if self.violations:
            raise AssertionError("CUDA rules broken on the stand-in:\n  "
                                 + "\n  ".join(self.violations))

    @property
    def allocator(self) -> _Allocator:
        return self._allocator

    def probe(self) -> Probe:
        return Probe(True, None, self.devices, "stand-in (CPU simulation, not a GPU)")

    def _thread_device(self) -> int:
        return int(getattr(self._local, "device", 0))

    def _bind_context(self) -> None:
        with self._lock:
            self.contexts.add(self._thread_device())

    def _check_stream(self, stream: Any) -> StandinStream:
        if not isinstance(stream, StandinStream):
            raise TypeError(f"expected a stand-in stream object, got {stream!r} (pass the "
                            f"stream, not a handle or an int)")
        with self._lock:
            self.contexts.add(stream.device)
        return stream

    def _check_device(self, device: int) -> None:
        if not 0 <= device < self.devices:
            raise _error("cudaSetDevice", 101, f"no device {device} ({self.devices} here)")

    # -- devices and streams ------------------------------------------------------------------
    def set_device(self, device: int) -> None:
        self.calls["cudaSetDevice"] += 1
        self._check_device(device)
        self._local.device = device
        self._bind_context()

    def new_stream(self, device: int | None = None, *, delay_s: float = 0.0,
                   label: str = "user") -> StandinStream:
        """A stream of your own (``torch.cuda.Stream()``), e.g. a slow consumer stream."""
        device = self._thread_device() if device is None else device
        self._check_device(device)
        stream = StandinStream(self, device, f"{label}-{device}", delay_s=delay_s)
        with self._lock:
            self._streams.append(stream)
            self.streams_created += 1
        return stream

    def destroy_stream(self, stream: StandinStream) -> None:
        if stream.pooled:
            raise ValueError(f"{stream.label} belongs to the pool and is never destroyed")
        stream.synchronize()
        stream.destroyed = True

    def copy_stream(self, device: int) -> StandinStream:
        self._check_device(device)
        with self._lock:
            stream = self._copy_streams.get(device)
            if stream is None:
                stream = StandinStream(self, device, f"pool-{device}", pooled=True)
                self._copy_streams[device] = stream
                self._streams.append(stream)
                self.streams_created += 1
            return stream

    def default_stream(self, device: int) -> StandinStream:
        self._check_device(device)
        with self._lock:
            stream = self._default_streams.get(device)
            if stream is None:
                stream = StandinStream(self, device, f"default-{device}", pooled=True)
                self._default_streams[device] = stream
                self._streams.append(stream)
            return stream

    def current_stream(self, device: int) -> StandinStream:
        current: dict[int, StandinStream] = getattr(self._local, "streams", {})
        return current.get(device) or self.default_stream(device)

    @contextlib.contextmanager
    def use_stream(self, stream: StandinStream) -> Iterator[StandinStream]:
        """Make ``stream`` this thread's current stream on its device (``torch.cuda.stream``)."""
        current: dict[int, StandinStream] = getattr(self._local, "streams", None) or {}
        self._local.streams = current
        before = current.get(stream.device)
        current[stream.device] = stream
        try:
            yield stream
        finally:
            if before is None:
                current.pop(stream.device, None)
            else:
                current[stream.device] = before

    def stream_device(self, stream: Any) -> int:
        return self._check_stream(stream).device

    def launch(self, stream: StandinStream, kernel: Callable[..., None], *tensors: Any,
               delay_s: float = 0.0) -> None:
        """Queue ``kernel(*arrays)`` on ``stream``; each tensor argument arrives as its device
        memory (an array). Like a CUDA launch, it does not keep the tensors alive."""
        self._check_stream(stream)
        arrays = [t.device_array() if isinstance(t, StandinTensor) else t for t in tensors]
        stream.enqueue(lambda: kernel(*arrays), delay_s=delay_s, label="kernel")

    def synchronize(self) -> None:
        """Wait for every stream (``torch.cuda.synchronize()``)."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.synchronize()

    def close(self) -> None:
        """Stop every stream's worker thread (after its queue ran)."""
        with self._lock:
            streams, self._streams = list(self._streams), []
            self._default_streams.clear()
            self._copy_streams.clear()
        for stream in streams:
            stream._stop()

    # -- registration -------------------------------------------------------------------------
    def host_register(self, address: int, size: int, flags: int) -> None:
        self.calls["cudaHostRegister"] += 1
        self._bind_context()
        if not self.host_register_supported:
            raise _error("cudaHostRegister", 801, "this device cannot register host memory")
        if flags & HOST_REGISTER_READ_ONLY and not self.read_only_register:
            raise _error("cudaHostRegister", 801, "this device cannot register read-only")
        perms = _maps(address, size)
        if perms is None:
            raise _error("cudaHostRegister", 1, f"0x{address:x}+{size} is not mapped")
        if "w" not in perms and not flags & HOST_REGISTER_READ_ONLY:
            raise _error("cudaHostRegister", 1, "a read-only mapping needs "
                                                "cudaHostRegisterReadOnly")
        with self._lock:
            for base, (length, _flags) in {**self.registered,
                                           **{b: (n, 0) for b, n in self._registering.items()}
                                           }.items():
                if address < base + length and base < address + size:
                    raise _error("cudaHostRegister", 712, "range overlaps a registration")
            self._registering[address] = size
        if self.register_delay_s:
            time.sleep(self.register_delay_s)
        with self._lock:
            del self._registering[address]
            self.registered[address] = (size, flags)
            self.registrations += 1

    def host_unregister(self, address: int) -> None:
        self.calls["cudaHostUnregister"] += 1
        self._bind_context()
        with self._lock:
            found = self.registered.get(address)
            if found is None:
                inside = any(b <= address < b + n for b, (n, _f) in self.registered.items())
                code = 1 if inside else 713
                raise _error("cudaHostUnregister", code, f"0x{address:x} is not a registered "
                                                         f"base")
            size = found[0]
            for start, end in self._queued_dma.values():
                if start < address + size and address < end:
                    self.violation(f"cudaHostUnregister(0x{address:x}) while a copy from "
                                   f"0x{start:x} was still queued")
            if _maps(address, size) is None:
                self.violation(f"cudaHostUnregister(0x{address:x}) after the memory was "
                               f"unmapped")
            if self.unregister_error:
                raise _error("cudaHostUnregister", self.unregister_error, "injected failure")
            del self.registered[address]
            self.unregistrations += 1

    def is_registered(self, host: np.ndarray) -> bool:
        flat = host.reshape(-1).view(np.uint8)
        start = int(flat.__array_interface__["data"][0])
        end = start + flat.nbytes
        with self._lock:
            return flat.nbytes > 0 and any(
                b <= start and end <= b + n for b, (n, _f) in self.registered.items())

    # -- memory and copies --------------------------------------------------------------------
    def empty(self, shape: tuple[int, ...], dtype: np.dtype, device: int,
              stream: Any) -> StandinTensor:
        stream = self._check_stream(stream)
        if stream.device != device:
            self.violation(f"allocation on cuda:{device} with a stream of cuda:{stream.device}")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        return StandinTensor(self, self._allocator.allocate(nbytes, device, stream), shape,
                             np.dtype(dtype))

    def record_stream(self, buffer: StandinTensor, stream: Any) -> None:
        buffer._block.recorded.add(self._check_stream(stream))

    def copy_from_host(self, buffer: StandinTensor, host: np.ndarray, stream: Any) -> None:
        stream = self._check_stream(stream)
        block = buffer._block
        if block.device != stream.device:
            self.violation(f"copy into cuda:{block.device} memory on a stream of "
                           f"cuda:{stream.device}")
        source = host.reshape(-1).view(np.uint8)
        count = source.nbytes
        if count != block.data.nbytes:
            raise ValueError(f"copy of {count} bytes into a {block.data.nbytes}-byte buffer")
        start = int(source.__array_interface__["data"][0])
        end = start + count
        with self._lock:
            for base, size in self._registering.items():
                if start < base + size and base < end:
                    self.violation(f"copy from 0x{start:x} while that memory was being "
                                   f"registered")
            inside = [b for b, (n, _f) in self.registered.items() if b <= start and end <= b + n]
            partly = [b for b, (n, _f) in self.registered.items() if start < b + n and b < end]
            if partly and not inside:
                raise _error("cudaMemcpyAsync", 1, "the source spans registered and "
                                                   "unregistered memory")
            ticket = next(self._tickets)
            if inside and count:
                self.pinned_copies += 1
                self._queued_dma[ticket] = (start, end)
            else:
                self.pageable_copies += 1
        target = block.data
        if inside and count:
            keep = [_owner(host)]  # keeps the mapping mapped, not the slot view alive

            def dma() -> None:
                ctypes.memmove(target.__array_interface__["data"][0], start, count)
                with self._lock:
                    self._queued_dma.pop(ticket, None)
                keep.clear()

            stream.enqueue(dma, delay_s=self.copy_delay_s, label="host-to-device copy")
        else:
            staged = source.copy()  # the driver stages pageable memory before returning
            stream.enqueue(lambda: np.copyto(target, staged), delay_s=self.copy_delay_s,
                           label="pageable host-to-device copy")

    # -- events ---------------------------------------------------------------------------------
    def _event_destroyed(self) -> None:
        with self._lock:
            self.events_destroyed += 1

    def new_event(self) -> StandinEvent:
        event = StandinEvent(blocking=True)
        with self._lock:
            self.events_created += 1
        weakref.finalize(event, self._event_destroyed)
        return event

    def record_event(self, event: StandinEvent, stream: Any) -> None:
        event._record_on(self._check_stream(stream))

    def wait_event(self, stream: Any, event: StandinEvent) -> None:
        generation = event._latest()
        self._check_stream(stream).enqueue(lambda: event._wait_for(generation),
                                           label="wait for event")

    def synchronize_event(self, event: StandinEvent) -> None:
        self.calls["cudaEventSynchronize"] += 1
        self._bind_context()
        if not event.blocking:
            self.violation("cudaEventSynchronize on an event without cudaEventBlockingSync "
                           "(spins a core)")
        event.synchronize()


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def runtime_from_spec(spec: str) -> StandinCuda:
    """A stand-in from ``$PINFLOW_GPU_RUNTIME`` =
    ``standin[:devices=N,copy_delay_ms=X,register_delay_ms=Y,read_only=0|1,register=0|1]``."""
    options: dict[str, Any] = {}
    _, _, rest = spec.partition(":")
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, _, value = item.partition("=")
        if key == "devices":
            options["devices"] = int(value)
        elif key == "copy_delay_ms":
            options["copy_delay_s"] = float(value) / 1000
        elif key == "register_delay_ms":
            options["register_delay_s"] = float(value) / 1000
        elif key == "read_only":
            options["read_only_register"] = _flag(value)
        elif key == "register":
            options["host_register"] = _flag(value)
        else:
            raise ValueError(f"unknown stand-in option {key!r} in {spec!r} (devices, "
                             f"copy_delay_ms, register_delay_ms, read_only, register)")
    return StandinCuda(**options)
