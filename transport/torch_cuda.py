"""The GPU runtime on real hardware: a thin adapter over torch's own CUDA runtime.

Why torch's runtime and not cuda-python: device delivery returns torch tensors, so torch with
CUDA is needed anyway, and doing registration, copies, streams and events through the runtime
torch was built with means pinflow works on exactly the drivers torch works on (cuda-python
13.x needs an R580+ driver that a CUDA 12 torch does not). Facts this adapter relies on, read
in torch's source:

- ``torch.cuda.cudart().cudaHostRegister/cudaHostUnregister`` return the ``cudaError_t`` and
  do not clear a failure (``C10_CUDA_ERROR_HANDLED``), and torch binds no
  ``cudaGetLastError``; the error stays pending on the calling thread, where torch would blame
  it on that thread's next kernel launch. pinflow therefore registers and unregisters only on
  its registration thread, which launches no kernels (:mod:`pinflow.transport.registrar`).
- ``Tensor.is_pinned()`` asks ``cudaPointerGetAttributes`` about the storage's first byte
  (type ``cudaMemoryTypeHost``) and clears the error it may raise: the driver's own view.
- ``torch.cuda.Stream(device)`` hands out streams from torch's per-device pool, created
  non-blocking and never destroyed, so tensors recorded on them can outlive any pinflow object.
- ``torch.cuda.Event(blocking=True)`` is created with ``cudaEventBlockingSync``: its
  ``synchronize()`` sleeps (GIL released) instead of spinning a core.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pinflow.errors import CudaError
from pinflow.transport.gpu_runtime import Probe, error_name

TORCH_MISSING = ("device delivery returns torch tensors and uses torch's CUDA runtime: "
                 "pip install 'pinflow[torch]' (a CUDA build of torch)")
_DRIVER_VERSION = Path("/proc/driver/nvidia/version")


def nvidia_driver_version() -> str | None:
    """The loaded NVIDIA kernel module's version (Linux), read without any CUDA library."""
    try:
        text = _DRIVER_VERSION.read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def probe() -> Probe:
    """Can torch's CUDA runtime drive a GPU here? Never raises; the reason names the fix."""
    try:
        import torch
    except ModuleNotFoundError:
        return Probe(False, TORCH_MISSING)
    label = f"torch {torch.__version__}"
    if torch.version.cuda is None:
        driver = nvidia_driver_version()
        seen = f" although NVIDIA driver {driver} is loaded" if driver else ""
        return Probe(False, f"{label} is a CPU-only build{seen}: install a CUDA build of torch "
                            f"(https://pytorch.org/get-started/locally/)", 0, label)
    label += f" (CUDA {torch.version.cuda})"
    try:
        torch.cuda.init()
        count = torch.cuda.device_count()
    except Exception as exc:  # torch raises RuntimeError/AssertionError with the cause
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Probe(False, f"{label} cannot use a GPU: {text}", 0, label)
    if count < 1:
        return Probe(False, f"{label} sees no CUDA device", 0, label)
    return Probe(True, None, count, label)


@contextmanager
def _quiet_read_only() -> Iterator[None]:
    # Slot views are read-only by contract; torch only warns that it cannot enforce that.
    # pinflow never writes through these host tensors (they are copy sources).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        yield


class TorchRuntime:
    """:class:`~pinflow.transport.gpu_runtime.GpuRuntime` over torch's CUDA runtime."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self._cudart = torch.cuda.cudart()
        self._lock = threading.Lock()
        self._copy_streams: dict[int, Any] = {}
        self._dtypes: dict[np.dtype, Any] = {}

    def probe(self) -> Probe:
        return probe()

    def set_device(self, device: int) -> None:
        self.torch.cuda.set_device(device)

    def _check(self, call: str, result: Any) -> None:
        code = int(result)
        if code != 0:
            detail = str(self._cudart.cudaGetErrorString(result))
            raise CudaError(call, error_name(code), code, detail)

    def host_register(self, address: int, size: int, flags: int) -> None:
        self._check("cudaHostRegister", self._cudart.cudaHostRegister(address, size, flags))

    def host_unregister(self, address: int) -> None:
        self._check("cudaHostUnregister", self._cudart.cudaHostUnregister(address))

    def is_registered(self, host: np.ndarray) -> bool:
        flat = host.reshape(-1).view(np.uint8)
        if flat.size == 0:
            return False
        with _quiet_read_only():
            ends = (self.torch.from_numpy(flat[:1]), self.torch.from_numpy(flat[-1:]))
        return all(bool(end.is_pinned()) for end in ends)

    def copy_stream(self, device: int) -> Any:
        with self._lock:
            stream = self._copy_streams.get(device)
            if stream is None:
                stream = self._copy_streams[device] = self.torch.cuda.Stream(device=device)
            return stream

    def current_stream(self, device: int) -> Any:
        return self.torch.cuda.current_stream(device)

    def stream_device(self, stream: Any) -> int:
        return int(stream.device.index)

    def _torch_dtype(self, dtype: np.dtype) -> Any:
        found = self._dtypes.get(dtype)
        if found is None:
            found = self._dtypes[dtype] = self.torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return found

    def empty(self, shape: tuple[int, ...], dtype: np.dtype, device: int, stream: Any) -> Any:
        with self.torch.cuda.stream(stream):
            return self.torch.empty(shape, dtype=self._torch_dtype(dtype),
                                    device=self.torch.device("cuda", device))

    def record_stream(self, buffer: Any, stream: Any) -> None:
        buffer.record_stream(stream)

    def copy_from_host(self, buffer: Any, host: np.ndarray, stream: Any) -> None:
        source = host.reshape(-1).view(np.uint8)
        with _quiet_read_only():
            source_tensor = self.torch.from_numpy(source)
        target = buffer.reshape(-1).view(self.torch.uint8)
        with self.torch.cuda.stream(stream):
            target.copy_(source_tensor, non_blocking=True)

    def new_event(self) -> Any:
        return self.torch.cuda.Event(enable_timing=False, blocking=True)

    def record_event(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def wait_event(self, stream: Any, event: Any) -> None:
        stream.wait_event(event)

    def synchronize_event(self, event: Any) -> None:
        event.synchronize()
