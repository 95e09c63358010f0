"""What the launcher tells a node process about itself: identity, endpoints and peers.

It travels as JSON in the ``PINFLOW_NODE`` environment variable, so a node needs no file,
daemon or argument parsing to find its place in the dataflow.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from pinflow.errors import NodeEnvironmentError
from pinflow.spec import NodeSpec

ENV_VAR = "PINFLOW_NODE"


@dataclass(frozen=True)
class Wiring:
    """Everything a node needs to join its run."""

    run_id: str
    dataflow: str                   # absolute path of the YAML file
    node: dict[str, Any]            # NodeSpec.to_dict()
    listen: list[str]               # zenoh endpoints this node listens on
    connect: list[str]              # zenoh endpoints it connects to (the launcher)
    consumers: dict[str, list[list[Any]]] = field(default_factory=dict)
    """output id -> [[consumer node id, input name, queue size], ...]"""
    startup_timeout_s: float = 60.0
    pinned_budget: int | None = None
    """The dataflow's ``pinned_budget`` (bytes), if it sets one."""
    restarts: int = 0
    """How many times the launcher restarted this node before this process."""
    restart_policy: str = "never"
    restartable: list[str] = field(default_factory=list)
    """Upstream nodes the launcher may restart: their loss does not close inputs until the
    launcher declares them gone for good."""
    consumer_secret: str = ""
    """This node's secret (hex) as a consumer: it signs its releases with keys derived from
    it and checks its producers' end of stream (``transport/auth.py``)."""
    consumer_keys: dict[str, str] = field(default_factory=dict)
    """Consumer node id -> the key (hex) that consumer shares with this node, for every
    consumer of this node's outputs."""
    drain_timeout_s: float = 1.0
    """How long closing an output waits for consumers to hand slots back; the launcher
    keeps it well under its stop grace."""

    @property
    def spec(self) -> NodeSpec:
        return NodeSpec.from_dict(self.node)

    def peers(self) -> set[str]:
        """Nodes this one exchanges data with, in either direction (itself excluded)."""
        spec = self.spec
        upstream = {i.source_node for i in spec.inputs if i.source_node}
        downstream = {c[0] for lst in self.consumers.values() for c in lst}
        return (upstream | downstream) - {spec.id}

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Wiring:
        environ = os.environ if environ is None else environ
        raw = environ.get(ENV_VAR)
        if not raw:
            raise NodeEnvironmentError(
                f"this process was not started by pinflow (no {ENV_VAR} in the environment): "
                "add the node to a dataflow YAML and start it with `pinflow run FILE`"
            )
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError) as exc:
            raise NodeEnvironmentError(f"{ENV_VAR} is malformed: {exc}") from None
