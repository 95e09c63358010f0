"""The wire: the one zenoh session per host that links the hosts of a multi-machine run.

A host's own nodes stay on their private unix-socket mesh (:mod:`pinflow.transport.session`);
only gateways (the launcher and each ``pinflow daemon``) join the wire, over the TCP/UDP/QUIC
endpoints the user names explicitly. Keeping the meshes apart is what keeps shared-memory
descriptors host-local: nothing published on a host's mesh can reach another host except
what a gateway chooses to forward, and it forwards bytes, never descriptors.
"""

from __future__ import annotations

import json
import re

import zenoh

from pinflow.errors import WireError
from pinflow.spec.units import check_id

ROOT = "pinflow/wire"
_ENDPOINT = re.compile(r"(tcp|udp|quic|tls)/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")



def check_endpoint(endpoint: str) -> str:
    """Accept ``proto/host:port`` for a transport that can cross hosts; refuse the rest."""
    if not _ENDPOINT.fullmatch(endpoint):
        raise WireError(f"{endpoint!r} is not a wire endpoint; write PROTO/HOST:PORT, e.g. "
                        "tcp/192.168.1.20:7447 (PROTO: tcp, udp, quic or tls)")
    return endpoint


def wire_config(*, listen: list[str], connect: list[str]) -> zenoh.Config:
    """A peer config that only uses the given endpoints: no multicast scouting (it would
    announce the host on 224.0.0.224), no zenoh shared memory (bytes cross hosts)."""
    if not listen and not connect:
        raise WireError("the wire needs at least one --listen or --connect endpoint")
    for endpoint in [*listen, *connect]:
        check_endpoint(endpoint)
    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("listen/endpoints", json.dumps(listen))
    config.insert_json5("connect/endpoints", json.dumps(connect))
    config.insert_json5("transport/shared_memory/enabled", "false")
    return config


def open_wire(*, listen: list[str], connect: list[str]) -> zenoh.Session:
    try:
        return zenoh.open(wire_config(listen=listen, connect=connect))
    except zenoh.ZError as exc:
        raise WireError(f"cannot open the wire on {listen + connect}: {exc}") from None


def daemon_key(machine: str) -> str:
    """Liveliness token of a ``pinflow daemon`` for ``machine`` (also its queryable root)."""
    return f"{ROOT}/daemon/{_check(machine)}"


def daemon_all() -> str:
    return f"{ROOT}/daemon/*"


def _check(part: str) -> str:
    return check_id("key part", part)


class WireKeys:
    """Key expressions of one run on the wire."""

    def __init__(self, run_id: str) -> None:
        self.run_id = _check(run_id)
        self.root = f"{ROOT}/{run_id}"

    def launcher(self) -> str:
        """Token of the launcher: daemons stop the run's nodes when it disappears."""
        return f"{self.root}/launcher"

    def host(self, machine: str) -> str:
        """Token a daemon holds while it runs its part of this run."""
        return f"{self.root}/host/{_check(machine)}"

    def host_all(self) -> str:
        return f"{self.root}/host/*"

    def token(self, kind: str, node_id: str) -> str:
        """Mirror of a host-local ``alive``/``ready``/``gone`` token of a node."""
        return f"{self.root}/node/{_check(kind)}/{_check(node_id)}"

    def token_all(self) -> str:
        return f"{self.root}/node/*/*"

    def state(self, state: str) -> str:
        return f"{self.root}/state/{_check(state)}"

    def state_all(self) -> str:
        return f"{self.root}/state/*"

    def data(self, node_id: str, output_id: str) -> str:
        """Bytes (never descriptors) of one output, for the hosts that consume it."""
        return f"{self.root}/data/{_check(node_id)}/{_check(output_id)}"

    def log(self, node_id: str) -> str:
        return f"{self.root}/log/{_check(node_id)}"

    def log_all(self) -> str:
        return f"{self.root}/log/*"

    def result(self, node_id: str) -> str:
        return f"{self.root}/result/{_check(node_id)}"

    def result_all(self) -> str:
        return f"{self.root}/result/*"

    def stats(self, node_id: str) -> str:
        return f"{self.root}/stats/{_check(node_id)}"

    def say(self, machine: str) -> str:
        """What a daemon says about its share of the run (``pinflow@MACHINE | ...``)."""
        return f"{self.root}/say/{_check(machine)}"

    def say_all(self) -> str:
        return f"{self.root}/say/*"

    def stats_all(self) -> str:
        return f"{self.root}/stats/*"


def local_run_id(run_id: str, machine: str | None) -> str:
    """Run id of one host's share of a run: keys, sockets, segments and the run lock of each
    host differ even where hosts share /tmp and /dev/shm (network namespaces, containers)."""
    return run_id if machine is None else f"{run_id}-{_check(machine)}"
