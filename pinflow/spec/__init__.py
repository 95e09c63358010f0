"""The dataflow description: YAML in, immutable specs out (layer 1, above ``errors`` only).

Everything a dataflow file can say is declared here; the loader reports every problem at
once as ``FILE:LINE: message``. Importing this package loads PyYAML and nothing of the node
runtime or the data plane.
"""

from pinflow.spec.check import load, loads
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
    "InputSpec",
    "NodeSpec",
    "OutputSpec",
    "load",
    "loads",
]
