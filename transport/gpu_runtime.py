"""The small runtime interface the GPU path is written against.

pinflow's ordering logic (:mod:`pinflow.transport.cuda`, :mod:`pinflow.transport.registrar`)
calls only the operations of :class:`GpuRuntime`. Two implementations exist: the thin adapter
over torch's own CUDA runtime (:mod:`pinflow.transport.torch_cuda`, real GPUs) and the stand-in
that behaves like CUDA on a CPU (:mod:`pinflow.testing`), so the ordering the tests check is the
ordering a GPU runs.

Which implementation a process uses is decided in :mod:`pinflow.transport.gpu_select`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

RUNTIME_ENV = "PINFLOW_GPU_RUNTIME"

HOST_REGISTER_PORTABLE = 1
"""cudaHostRegisterPortable: the range counts as pinned in every CUDA context."""
HOST_REGISTER_READ_ONLY = 8
"""cudaHostRegisterReadOnly: the device only reads; needed to register a PROT_READ mapping."""

ERROR_NAMES = {
    1: "cudaErrorInvalidValue",
    2: "cudaErrorMemoryAllocation",
    3: "cudaErrorInitializationError",
    35: "cudaErrorInsufficientDriver",
    100: "cudaErrorNoDevice",
    101: "cudaErrorInvalidDevice",
    400: "cudaErrorInvalidResourceHandle",
    600: "cudaErrorNotReady",
    712: "cudaErrorHostMemoryAlreadyRegistered",
    713: "cudaErrorHostMemoryNotRegistered",
    800: "cudaErrorNotPermitted",
    801: "cudaErrorNotSupported",
}


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"cudaError{code}")


@dataclass(frozen=True)
class Probe:
    """What this process's GPU runtime offers; ``reason`` says why not when unavailable."""

    available: bool
    reason: str | None
    device_count: int = 0
    runtime: str = ""
    """Which runtime answered, e.g. ``torch 2.5.1+cu124 (CUDA 12.4)`` or ``stand-in``."""


class GpuRuntime(Protocol):
    """The operations pinflow's GPU path needs; one implementation per runtime.

    Streams, events and device buffers are the runtime's own objects (torch streams and
    tensors on a GPU): pinflow never converts them to raw handles.
    """

    name: str

    def set_device(self, device: int) -> None:
        """Bind the calling thread to ``device`` (CUDA binds the current device per thread)."""

    def host_register(self, address: int, size: int, flags: int) -> None:
        """cudaHostRegister; raises ``CudaError``. Call it only on a thread that runs no
        kernels: a failed call leaves the error pending on the calling thread."""

    def host_unregister(self, address: int) -> None:
        """cudaHostUnregister of a registered base address; raises ``CudaError``."""

    def is_registered(self, host: np.ndarray) -> bool:
        """Does the driver see all of ``host``'s bytes as page-locked host memory?"""

    def copy_stream(self, device: int) -> Any:
        """A non-blocking stream for pinflow's copies that the runtime never destroys."""

    def current_stream(self, device: int) -> Any:
        """The calling thread's current stream on ``device``."""

    def stream_device(self, stream: Any) -> int:
        """The device index ``stream`` belongs to."""

    def empty(self, shape: tuple[int, ...], dtype: np.dtype, device: int, stream: Any) -> Any:
        """A device buffer whose allocation belongs to ``stream`` (caching-allocator rules)."""

    def record_stream(self, buffer: Any, stream: Any) -> None:
        """``buffer`` is used on ``stream``: its memory is not reused before ``stream``'s
        work queued up to the buffer's release has run."""

    def copy_from_host(self, buffer: Any, host: np.ndarray, stream: Any) -> None:
        """Queue the host-to-device copy of ``host``'s bytes into ``buffer`` on ``stream``."""

    def new_event(self) -> Any:
        """An event whose synchronize blocks the thread (no spinning), without timing."""

    def record_event(self, event: Any, stream: Any) -> None:
        """``event`` completes when ``stream`` reaches this point."""

    def wait_event(self, stream: Any, event: Any) -> None:
        """Work queued on ``stream`` from now on starts after ``event``'s latest record."""

    def synchronize_event(self, event: Any) -> None:
        """Block the calling thread until ``event`` completed."""


def device_index(device: str | int) -> int:
    """``cuda`` -> 0, ``cuda:1`` -> 1 (so both spellings of a device share one copier)."""
    if isinstance(device, int) and not isinstance(device, bool):
        if device < 0:
            raise ValueError(f"not a CUDA device index: {device}")
        return device
    if device == "cuda":
        return 0
    prefix, _, index = str(device).partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise ValueError(f"not a CUDA device: {device!r} (use 'cuda' or 'cuda:N')")
    return int(index)
