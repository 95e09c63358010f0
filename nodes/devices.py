"""Device delivery for a node: which inputs get CUDA tensors, and the copiers that make them.

Decided once at start-up: CUDA usable → inputs with ``device:`` get device tensors;
not usable → CPU data with one warning, or ``CudaUnavailable`` for ``device_required``.
CUDA is touched only if an input asks for a device or ``to_torch("cuda")`` is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pinflow.errors import CudaUnavailable
from pinflow.spec import InputSpec
from pinflow.transport.segment import Segment


class Devices:
    """The node's device deliveries, created lazily, one per CUDA device."""

    def __init__(self, node_id: str, inputs: Iterable[InputSpec],
                 warn: Callable[[str], None]) -> None:
        self._deliveries: dict[str, Any] = {}  # device -> transport.device.DeviceDelivery
        self.by_input = self._resolve(node_id, [i for i in inputs if i.device], warn)

    @staticmethod
    def _resolve(node_id: str, wanted: list[InputSpec], warn: Callable[[str], None]
                 ) -> dict[str, str]:
        if not wanted:
            return {}
        from pinflow.transport import cuda

        if cuda.is_available():
            return {spec.name: str(spec.device) for spec in wanted}
        reason = cuda.unavailable_reason()
        for spec in wanted:
            if spec.device_required:
                raise CudaUnavailable(
                    f"node {node_id!r} input {spec.name!r} requires {spec.device}: {reason}")
        devices = ", ".join(sorted({str(spec.device) for spec in wanted}))
        warn(f"inputs {sorted(s.name for s in wanted)} asked for {devices} but CUDA is not "
             f"usable here ({reason}); delivering CPU data")
        return {}

    def delivery(self, device: str) -> Any:
        found = self._deliveries.get(device)
        if found is None:
            from pinflow.transport.device import DeviceDelivery

            found = self._deliveries[device] = DeviceDelivery(device)
        return found

    def forget(self, segment: Segment) -> None:
        """Before a segment is unmapped: finish its copies and unregister it from CUDA."""
        for found in self._deliveries.values():
            found.forget(segment)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {device: vars(d.copier.stats).copy() for device, d in self._deliveries.items()}

    def close(self) -> None:
        for found in self._deliveries.values():
            found.close()
