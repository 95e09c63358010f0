"""Device delivery for a node: which inputs get CUDA tensors, and the copiers that make them.

Decided once at start-up: a GPU runtime usable → inputs with ``device:`` get device tensors;
not usable → CPU data with one warning, or ``CudaUnavailable`` for ``device_required``.
CUDA is touched only if an input asks for a device or ``to_torch("cuda")`` is called.

The deliveries for the inputs' devices are made at start-up, before any segment is mapped:
their registration threads learn whether the device registers read-only memory, which
decides how this node maps segments, and then register each pinned segment as it is mapped.
One delivery per device index: ``cuda`` and ``cuda:0`` share one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from pinflow.errors import CudaUnavailable
from pinflow.protocol.stats import CopyStats
from pinflow.spec import InputSpec
from pinflow.transport.segment import Segment

log = logging.getLogger("pinflow.cuda")


class Devices:
    """The node's device deliveries, one per CUDA device index."""

    def __init__(self, node_id: str, inputs: Iterable[InputSpec],
                 warn: Callable[[str], None]) -> None:
        self._lock = threading.Lock()
        self._deliveries: dict[int, Any] = {}  # index -> transport.device.DeviceDelivery
        self.by_input = self._resolve(node_id, [i for i in inputs if i.device], warn)
        for device in sorted(set(self.by_input.values())):
            self.delivery(device)

    @staticmethod
    def _resolve(node_id: str, wanted: list[InputSpec], warn: Callable[[str], None]
                 ) -> dict[str, str]:
        if not wanted:
            return {}
        from pinflow.transport import gpu_runtime, gpu_select

        found = gpu_select.probe()
        if found.available:
            too_high = [s for s in wanted
                        if gpu_runtime.device_index(str(s.device)) >= found.device_count]
            if not too_high:
                return {spec.name: str(spec.device) for spec in wanted}
            reason = (f"{', '.join(sorted({str(s.device) for s in too_high}))} does not exist "
                      f"here ({found.device_count} device(s))")
        else:
            reason = found.reason
        for spec in wanted:
            if spec.device_required:
                raise CudaUnavailable(
                    f"node {node_id!r} input {spec.name!r} requires {spec.device}: {reason}")
        devices = ", ".join(sorted({str(spec.device) for spec in wanted}))
        warn(f"inputs {sorted(s.name for s in wanted)} asked for {devices} but CUDA is not "
             f"usable here ({reason}); delivering CPU data")
        return {}

    @property
    def writable_mappings(self) -> bool:
        """Map segments read-write: only where a device of this node's inputs can register
        read-write but not read-only memory (else read-only, so slots cannot be corrupted)."""
        with self._lock:
            deliveries = list(self._deliveries.values())
        return any(not d.support.read_only and d.support.read_write for d in deliveries)

    def delivery(self, device: str) -> Any:
        from pinflow.transport import gpu_runtime

        index = gpu_runtime.device_index(device)
        with self._lock:
            found = self._deliveries.get(index)
            if found is None:
                from pinflow.transport.device import DeviceDelivery

                found = self._deliveries[index] = DeviceDelivery(index)
            return found

    def _each(self) -> list[Any]:
        with self._lock:
            return list(self._deliveries.values())

    def mapped(self, segment: Segment, pinned: bool) -> None:
        """A segment was mapped: start registering it (off the delivery path)."""
        for found in self._each():
            found.mapped(segment, pinned)

    def forget(self, segment: Segment) -> None:
        """Before a segment is unmapped: finish its copies and unregister it from CUDA."""
        for found in self._each():
            found.forget(segment)

    def stats(self) -> dict[str, CopyStats]:
        return {d.device: d.stats for d in self._each()}

    def close(self) -> None:
        for found in self._each():
            try:
                found.close()
            except Exception as exc:  # closing must go on: the node is exiting
                log.error("closing device delivery to %s failed: %s", found.device, exc)
