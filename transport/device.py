"""Device delivery for a consumer process: payloads copied to one CUDA device as tensors.

One :class:`DeviceDelivery` per CUDA device a node receives on, created in the node process
itself (after spawn, never inherited through fork). With the torch runtime the result is a
``torch.Tensor`` from torch's caching allocator, ordered after its copy on the caller's current
stream (or the stream passed in): use it on that stream without host synchronisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pinflow.errors import CudaUnavailable
from pinflow.protocol.messages import Layout, TensorLayout
from pinflow.protocol.stats import CopyStats
from pinflow.transport import gpu_runtime, gpu_select
from pinflow.transport.cuda import DeviceCopier
from pinflow.transport.gpu_runtime import GpuRuntime
from pinflow.transport.registrar import RegisterSupport
from pinflow.transport.segment import Segment


def layout_shape(layout: Layout, nbytes: int) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the device buffer for a payload: tensors keep theirs, anything else
    (Arrow IPC bytes) is delivered as a flat uint8 buffer."""
    if isinstance(layout, TensorLayout):
        return tuple(layout.sh), np.dtype(layout.dt)
    return (nbytes,), np.dtype(np.uint8)


class DeviceDelivery:
    """Copies received payloads to one CUDA device."""

    def __init__(self, device: str | int, *, runtime: GpuRuntime | None = None) -> None:
        self.index = gpu_runtime.device_index(device)
        self.device = f"cuda:{self.index}"
        if runtime is None:
            selection = gpu_select.select()
            if selection.runtime is None:
                raise CudaUnavailable(f"cannot deliver to {self.device}: "
                                      f"{selection.probe.reason}")
            if self.index >= selection.probe.device_count:
                raise CudaUnavailable(f"cannot deliver to {self.device}: only "
                                      f"{selection.probe.device_count} device(s) here")
            runtime = selection.runtime
        self.runtime = runtime
        self.copier = DeviceCopier(runtime, self.index)

    @property
    def support(self) -> RegisterSupport:
        return self.copier.support

    @property
    def stats(self) -> CopyStats:
        return self.copier.stats

    def deliver(self, host: np.ndarray, layout: Layout, *, segment: Segment | None,
                pinned: bool, stream: Any = None) -> Any:
        """The payload on the device; ``host`` (the slot view) stays held until copied."""
        shape, dtype = layout_shape(layout, int(host.nbytes))
        return self.copier.copy(host, host, shape, dtype, segment=segment, pinned=pinned,
                                consumer_stream=stream)

    def mapped(self, segment: Segment, pinned: bool) -> None:
        self.copier.prepare(segment, pinned=pinned)

    def forget(self, segment: Segment) -> None:
        self.copier.forget(segment)

    def close(self) -> None:
        self.copier.close()
