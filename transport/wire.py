"""The wire: the one zenoh session per host that links the hosts of a multi-machine run.

A host's own nodes stay on their private unix-socket mesh (:mod:`pinflow.transport.session`);
only gateways (the launcher and each ``pinflow daemon``) join the wire, over the TCP/UDP/QUIC
endpoints the user names explicitly. Keeping the meshes apart is what keeps shared-memory
descriptors host-local: nothing published on a host's mesh can reach another host except
what a gateway chooses to forward, and it forwards bytes, never descriptors. The wire's
keys are ``pinflow.protocol.keys.WireKeys``.
"""

from __future__ import annotations

import re

import zenoh

from pinflow.errors import WireError
from pinflow.protocol.wire import PART_BYTES
from pinflow.transport.session import peer_config

BATCH_BYTES = 65535
"""zenoh's largest (and default) batch on a link: messages go out in batches of this."""
DATA_QUEUE_BATCHES = min(16, -(-PART_BYTES // BATCH_BYTES))
"""Batches zenoh may queue for the data priority (its default is 2, its maximum 16): room for
a whole part of a forwarded message, so a put returns once its part is queued and the gateway
copies the next part while zenoh's transmit thread writes this one, instead of the two
trading one 64 KiB batch at a time. Measured on the benchmark's veth (8 MB frames at 30 Hz):
p50 about 13 -> 10 ms and less gateway CPU; the benchmark's bare zenoh put uses the same."""

_ENDPOINT = re.compile(r"(tcp|udp|quic|tls)/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")


def check_endpoint(endpoint: str) -> str:
    """Accept ``proto/host:port`` for a transport that can cross hosts; refuse the rest."""
    if not _ENDPOINT.fullmatch(endpoint):
        raise WireError(f"{endpoint!r} is not a wire endpoint; write PROTO/HOST:PORT, e.g. "
                        "tcp/192.168.1.20:7447 (PROTO: tcp, udp, quic or tls)")
    return endpoint


def wire_config(*, listen: list[str], connect: list[str]) -> zenoh.Config:
    """A peer config on exactly the given endpoints, zenoh shared memory off (bytes cross
    hosts), zenoh's own lease (``PINFLOW_LEASE_MS`` is a knob of each host's mesh) and a
    data queue of :data:`DATA_QUEUE_BATCHES` batches."""
    if not listen and not connect:
        raise WireError("the wire needs at least one --listen or --connect endpoint")
    for endpoint in [*listen, *connect]:
        check_endpoint(endpoint)
    config = peer_config(listen=listen, connect=connect, zenoh_shm=False, lease=None)
    config.insert_json5("transport/link/tx/queue/size/data", str(DATA_QUEUE_BATCHES))
    return config


def open_wire(*, listen: list[str], connect: list[str]) -> zenoh.Session:
    try:
        return zenoh.open(wire_config(listen=listen, connect=connect))
    except zenoh.ZError as exc:
        raise WireError(f"cannot open the wire on {listen + connect}: {exc}") from None
