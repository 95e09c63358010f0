"""Which GPU runtime this process uses: decided once, on first use, never raising.

An in-process override (:func:`use`, what ``pinflow.testing.use_standin`` calls), else
``$PINFLOW_GPU_RUNTIME`` (``torch``, the default, or ``standin[:options]`` for dataflow tests
on CPU-only CI), else torch. Nothing here imports torch until a runtime is selected. Kept
apart from :mod:`pinflow.transport.gpu_runtime` (the interface), which both implementations
import.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from pinflow.transport.gpu_runtime import RUNTIME_ENV, GpuRuntime, Probe


@dataclass(frozen=True)
class Selection:
    runtime: GpuRuntime | None
    probe: Probe


_lock = threading.Lock()
_override: GpuRuntime | None = None
_selected: Selection | None = None


def use(runtime: GpuRuntime | None) -> None:
    """Make ``runtime`` this process's GPU runtime (``None``: back to the default choice)."""
    global _override, _selected
    with _lock:
        _override, _selected = runtime, None


def select() -> Selection:
    """The runtime this process uses and what it offers; decided once, never raises."""
    global _selected
    with _lock:
        if _selected is None:
            _selected = _select()
        return _selected


def _select() -> Selection:
    if _override is not None:
        return Selection(_override, _probe_of(_override))
    spec = os.environ.get(RUNTIME_ENV, "").strip() or "torch"
    if spec == "standin" or spec.startswith("standin:"):
        from pinflow.transport.cuda_standin import runtime_from_spec

        runtime = runtime_from_spec(spec)
        return Selection(runtime, _probe_of(runtime))
    if spec != "torch":
        return Selection(None, Probe(False, f"{RUNTIME_ENV}={spec!r} is not a runtime "
                                            f"(use 'torch' or 'standin')"))
    from pinflow.transport import torch_cuda

    found = torch_cuda.probe()
    return Selection(torch_cuda.TorchRuntime() if found.available else None, found)


def _probe_of(runtime: Any) -> Probe:
    probe = getattr(runtime, "probe", None)
    if probe is None:
        return Probe(True, None, 1, getattr(runtime, "name", type(runtime).__name__))
    result: Probe = probe()
    return result


def probe() -> Probe:
    return select().probe


def is_available() -> bool:
    """A GPU runtime with at least one device is usable here. Never raises."""
    return select().probe.available


def unavailable_reason() -> str | None:
    return select().probe.reason
