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
from pinflow.transport.session import peer_config

_ENDPOINT = re.compile(r"(tcp|udp|quic|tls)/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")


def check_endpoint(endpoint: str) -> str:
    """Accept ``proto/host:port`` for a transport that can cross hosts; refuse the rest."""
    if not _ENDPOINT.fullmatch(endpoint):
        raise WireError(f"{endpoint!r} is not a wire endpoint; write PROTO/HOST:PORT, e.g. "
                        "tcp/192.168.1.20:7447 (PROTO: tcp, udp, quic or tls)")
    return endpoint


def wire_config(*, listen: list[str], connect: list[str]) -> zenoh.Config:
    """A peer config on exactly the given endpoints, zenoh shared memory off (bytes cross
    hosts) and zenoh's own lease (``PINFLOW_LEASE_MS`` is a knob of each host's mesh)."""
    if not listen and not connect:
        raise WireError("the wire needs at least one --listen or --connect endpoint")
    for endpoint in [*listen, *connect]:
        check_endpoint(endpoint)
    return peer_config(listen=listen, connect=connect, zenoh_shm=False, lease=None)


def open_wire(*, listen: list[str], connect: list[str]) -> zenoh.Session:
    try:
        return zenoh.open(wire_config(listen=listen, connect=connect))
    except zenoh.ZError as exc:
        raise WireError(f"cannot open the wire on {listen + connect}: {exc}") from None
