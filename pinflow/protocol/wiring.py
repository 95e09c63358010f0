"""What the launcher tells a node process about itself: identity, endpoints and peers.

It travels as JSON in the ``PINFLOW_NODE`` environment variable, so a node needs no file,
daemon or argument parsing to find its place in the dataflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from pinflow.errors import DescriptorError, NodeEnvironmentError
from pinflow.protocol.strict import StrictCodec
from pinflow.spec import NodeSpec

ENV_VAR = "PINFLOW_NODE"


class Consumer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One reader of an output: which node, into which of its inputs, how many messages
    that input buffers (pools are sized from it)."""

    node: str
    input: str
    queue_size: Annotated[int, msgspec.Meta(ge=1)]


class Wiring(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything a node needs to join its run."""

    run_id: str
    dataflow: str
    """Absolute path of the YAML file."""
    node: dict[str, Any]
    """``NodeSpec.to_dict()`` of this node."""
    listen: list[str]
    """zenoh endpoints this node listens on."""
    connect: list[str]
    """zenoh endpoints it connects to (the launcher)."""
    consumers: dict[str, list[Consumer]] = msgspec.field(default_factory=dict)
    """Output id -> its consumers (on this host; the gateway stands in for other hosts)."""
    startup_timeout_s: float = 60.0
    pinned_budget: int | None = None
    """The dataflow's ``pinned_budget`` (bytes), if it sets one."""
    restarts: int = 0
    """How many times the launcher restarted this node before this process."""
    restart_policy: str = "never"
    restartable: list[str] = msgspec.field(default_factory=list)
    """Upstream nodes the launcher may restart: their loss does not close inputs until the
    launcher declares them gone for good."""
    consumer_secret: str = ""
    """This node's secret (hex) as a consumer: it signs its releases with keys derived from
    it and checks its producers' end of stream (``transport/auth.py``)."""
    consumer_keys: dict[str, str] = msgspec.field(default_factory=dict)
    """Consumer node id -> the key (hex) that consumer shares with this node, for every
    consumer of this node's outputs."""
    drain_timeout_s: float = 1.0
    """How long closing an output waits for consumers to hand slots back; the launcher
    keeps it well under its stop grace."""
    dynamic: list[str] = msgspec.field(default_factory=list)
    """Dynamic nodes of the run (``path: dynamic``): started by hand, whenever; nobody
    waits for them to join."""
    joins: bool = False
    """This node is a dynamic one: it joins a run that is already going."""

    @property
    def spec(self) -> NodeSpec:
        return NodeSpec.from_dict(self.node)

    def consumer_ids(self) -> set[str]:
        """Every node that reads an output of this one."""
        return {c.node for readers in self.consumers.values() for c in readers}

    def peers(self) -> set[str]:
        """Nodes this one exchanges data with, in either direction (itself and dynamic nodes,
        which may never come, excluded)."""
        spec = self.spec
        upstream = {i.source_node for i in spec.inputs if i.source_node}
        return (upstream | self.consumer_ids()) - {spec.id, *self.dynamic}

    def restarted(self, restarts: int) -> Wiring:
        """The same wiring for the process that follows restart number ``restarts``."""
        return msgspec.structs.replace(self, restarts=restarts)

    def to_env(self) -> str:
        return WIRING.encode(self).decode()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Wiring:
        environ = os.environ if environ is None else environ
        raw = environ.get(ENV_VAR)
        if not raw:
            raise NodeEnvironmentError(
                f"this process was not started by pinflow (no {ENV_VAR} in the environment): "
                "add the node to a dataflow YAML and start it with `pinflow run FILE`, or "
                "give it `path: dynamic` there and create it as Node(\"its id\") in a process "
                "you start while the dataflow runs"
            )
        try:
            return WIRING.decode(raw.encode())
        except DescriptorError as exc:
            raise NodeEnvironmentError(f"{ENV_VAR} is malformed: {exc}") from None


WIRING: StrictCodec[Wiring] = StrictCodec(Wiring, "the node's wiring")
