"""pinflow: Python dataflow nodes on zenoh with a pinned-host shared-memory transport.

This module is the front door: ``from pinflow import Node`` (and the events and errors
below). Names are loaded on first use (PEP 562), so ``import pinflow`` or ``import
pinflow.spec`` (what ``pinflow validate`` needs) loads neither the node runtime nor the data
plane, numpy, zenoh or pyarrow.

Layers, each importing only from the ones below it (``tests/test_layers.py`` keeps it so)::

    cli           pinflow/cli.py
    tools         pinflow/tools/ (top, doctor, bench), pinflow/testing/
    runtime       pinflow/runtime/ (launcher, supervision, daemon, cluster, bridge)
    node API      nodes/ -> pinflow.nodes (Node, events; built-in nodes above it)
    transport     transport/ -> pinflow.transport (the data plane)
    protocol      pinflow/protocol/ (keys, typed messages between processes)
    spec          pinflow/spec/ (the dataflow YAML)
    errors        pinflow/errors.py
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ClosedError": "pinflow.errors",
    "CudaError": "pinflow.errors",
    "CudaUnavailable": "pinflow.errors",
    "DescriptorError": "pinflow.errors",
    "LaunchError": "pinflow.errors",
    "NodeEnvironmentError": "pinflow.errors",
    "PayloadError": "pinflow.errors",
    "PinflowError": "pinflow.errors",
    "PinnedBudgetExceeded": "pinflow.errors",
    "PoolExhausted": "pinflow.errors",
    "SpecError": "pinflow.errors",
    "TransportError": "pinflow.errors",
    "UnknownOutputError": "pinflow.errors",
    "ERROR": "pinflow.nodes.events",
    "INPUT": "pinflow.nodes.events",
    "INPUT_CLOSED": "pinflow.nodes.events",
    "STOP": "pinflow.nodes.events",
    "Event": "pinflow.nodes.events",
    "Node": "pinflow.nodes.node",
}

__all__ = [
    "ERROR",
    "INPUT",
    "INPUT_CLOSED",
    "STOP",
    "ClosedError",
    "CudaError",
    "CudaUnavailable",
    "DescriptorError",
    "Event",
    "LaunchError",
    "Node",
    "NodeEnvironmentError",
    "PayloadError",
    "PinflowError",
    "PinnedBudgetExceeded",
    "PoolExhausted",
    "SpecError",
    "TransportError",
    "UnknownOutputError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pinflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from pinflow.errors import (
        ClosedError,
        CudaError,
        CudaUnavailable,
        DescriptorError,
        LaunchError,
        NodeEnvironmentError,
        PayloadError,
        PinflowError,
        PinnedBudgetExceeded,
        PoolExhausted,
        SpecError,
        TransportError,
        UnknownOutputError,
    )
    from pinflow.nodes.events import ERROR, INPUT, INPUT_CLOSED, STOP, Event
    from pinflow.nodes.node import Node
