"""The dataflow description: YAML in, immutable specs out (layer 1, above ``errors`` only).

Every YAML field is declared once, on its spec dataclass (:mod:`pinflow.spec.model`, in the
vocabulary of :mod:`pinflow.spec.schema`); the checks, the allowed keys, the JSON form and the
README tables (:mod:`pinflow.spec.reference`) derive from those declarations. The loader
(:mod:`pinflow.spec.loader`) reports every problem at once as ``FILE:LINE: message``. Rules the
data plane shares (ids, byte counts, slot limit) live in :mod:`pinflow.spec.units`. Importing
this package loads PyYAML and nothing of the node runtime or the data plane.
"""

from pinflow.spec.loader import load, loads
from pinflow.spec.model import (
    DEFAULT_BLOCK_TIMEOUT_S,
    DEFAULT_QUEUE_POLICY,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_SHM_THRESHOLD,
    GATEWAY_ID,
    INPUT_KEYS,
    NODE_KEYS,
    ON_FULL_POLICIES,
    OUTPUT_KEYS,
    QUEUE_POLICIES,
    RESTART_POLICIES,
    TIMER_PREFIX,
    TOP_LEVEL_KEYS,
    DataflowSpec,
    InputSpec,
    NodeSpec,
    OutputSpec,
)
from pinflow.spec.schema import DeviceKind, OnFull, QueuePolicy, Restart
from pinflow.spec.units import MAX_SLOTS

__all__ = [
    "DEFAULT_BLOCK_TIMEOUT_S",
    "DEFAULT_QUEUE_POLICY",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_SHM_THRESHOLD",
    "GATEWAY_ID",
    "INPUT_KEYS",
    "MAX_SLOTS",
    "NODE_KEYS",
    "ON_FULL_POLICIES",
    "OUTPUT_KEYS",
    "QUEUE_POLICIES",
    "RESTART_POLICIES",
    "TIMER_PREFIX",
    "TOP_LEVEL_KEYS",
    "DataflowSpec",
    "DeviceKind",
    "InputSpec",
    "NodeSpec",
    "OnFull",
    "OutputSpec",
    "QueuePolicy",
    "Restart",
    "load",
    "loads",
]
