"""pinflow: Python dataflow nodes on zenoh with a pinned-host shared-memory transport.

Layout: ``pinflow.transport`` (folder ``transport/``) is the data plane, ``pinflow.nodes``
(folder ``nodes/``) the node API and built-in nodes, and this package the spec, launcher and
CLI. This module is the front door: import what you need from here.
"""

from __future__ import annotations

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
)
from pinflow.nodes.events import ERROR, INPUT, INPUT_CLOSED, STOP, Event
from pinflow.nodes.node import Node, UnknownOutputError

__version__ = "0.1.0"

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
