"""Device delivery for a consumer process: torch tensors filled by :mod:`cuda` copies.

One :class:`DeviceDelivery` per CUDA device a node receives on, created on first use in
the node process itself (after spawn, never inherited through fork), so the node owns
exactly one CUDA context. Returned tensors come from torch's caching allocator and are
ordered after their copy on the caller's current stream (or the stream passed in): use
them on that stream without any host synchronisation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pinflow.errors import CudaUnavailable
from pinflow.transport import cuda as cuda_module
from pinflow.transport.segment import Segment

log = logging.getLogger("pinflow.cuda")


def _stream_handle(stream: Any) -> int:
    """A cuda-python stream object or a torch stream as the plain int CUDA expects."""
    if hasattr(stream, "cuda_stream"):
        return int(stream.cuda_stream)
    if hasattr(stream, "getPtr"):
        return int(stream.getPtr())
    return int(stream)


def _import_torch() -> Any:
    try:
        import torch
    except ModuleNotFoundError:
        raise CudaUnavailable(
            "device delivery returns torch tensors: pip install 'pinflow[torch]'"
        ) from None
    return torch


class TorchBuffers:
    """Device buffers from torch's caching allocator (see ``cuda.DeviceBuffers``)."""

    def __init__(self, cuda: cuda_module.Cuda, device: int) -> None:
        self.torch = _import_torch()
        self.cuda = cuda
        self.device = self.torch.device("cuda", device)

    def empty(self, nbytes: int, layout: dict[str, Any]) -> tuple[Any, int]:
        if layout.get("k") == "nd":
            dtype = self.torch.from_numpy(np.empty(0, dtype=np.dtype(layout["dt"]))).dtype
            shape = list(layout["sh"])
        else:  # Arrow IPC bytes: deliver them as a byte tensor
            dtype, shape = self.torch.uint8, [nbytes]
        tensor = self.torch.empty(shape, dtype=dtype, device=self.device)
        return tensor, int(tensor.data_ptr())

    def after_copy(self, buffer: Any, stream: Any, event: Any, consumer_stream: Any) -> None:
        torch = self.torch
        copy_stream = torch.cuda.ExternalStream(_stream_handle(stream), device=self.device)
        # The allocator must not hand this memory out again before our copy finished.
        buffer.record_stream(copy_stream)
        target = consumer_stream or torch.cuda.current_stream(self.device)
        self.cuda.call("cudaStreamWaitEvent", _stream_handle(target), event, 0)


class DeviceDelivery:
    """Copies received payloads to one CUDA device; created lazily by the node."""

    def __init__(self, device: str, *, runtime: Any | None = None,
                 buffers: cuda_module.DeviceBuffers | None = None) -> None:
        self.device = device
        index = cuda_module.device_index(device)
        if runtime is None:
            found = cuda_module.probe()
            if not found.available:
                raise CudaUnavailable(f"cannot deliver to {device}: {found.reason}")
            if index >= found.device_count:
                raise CudaUnavailable(
                    f"cannot deliver to {device}: only {found.device_count} device(s) here")
            runtime = cuda_module.load_runtime()
        cuda = cuda_module.Cuda(runtime)
        self.copier = cuda_module.DeviceCopier(
            cuda, index, buffers if buffers is not None else TorchBuffers(cuda, index))

    def deliver(self, host: np.ndarray, layout: dict[str, Any], *, segment: Segment | None,
                pinned: bool, stream: Any = None) -> Any:
        """The payload on the device; ``host`` (the slot view) stays held until copied."""
        return self.copier.copy(host, host, layout, segment=segment, pinned=pinned,
                                consumer_stream=stream)

    def forget(self, segment: Segment) -> None:
        self.copier.forget(segment)

    def close(self) -> None:
        self.copier.close()
