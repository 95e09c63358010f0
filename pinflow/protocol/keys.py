"""Key expressions: of one run's mesh (:class:`RunKeys`) and of the wire between hosts
(:class:`WireKeys`). Every key is built here, from parts that are checked here.

Every run key starts with ``pinflow/<run_id>/`` so that two dataflows on one machine never
match each other's subscriptions, even if linked; every wire key with ``pinflow/wire/``.
"""

from __future__ import annotations

from pinflow.spec.units import check_id

TOKEN_KINDS = ("alive", "ready", "gone")
"""The per-node liveliness tokens of a run (see :meth:`RunKeys.token`)."""
RUN_STATES = ("running", "stop")
"""The run-wide states the launcher declares, in this order (see :meth:`RunKeys.state`)."""
WIRE_ROOT = "pinflow/wire"


def check_part(part: str) -> str:
    """``part`` if it may be one component of a key (letters, digits, '_' and '-')."""
    return check_id("key part", part)


class RunKeys:
    """Builds the key expressions of run ``run_id``."""

    def __init__(self, run_id: str) -> None:
        self.run_id = check_part(run_id)
        self.root = f"pinflow/{run_id}"

    def data(self, node_id: str, output_id: str) -> str:
        """Messages (inline payloads or slot descriptors) of one output."""
        return f"{self.root}/data/{check_part(node_id)}/{check_part(output_id)}"

    def release(self, node_id: str, output_id: str, consumer_id: str) -> str:
        """Slot releases one consumer sends back to the producer of one output. The key
        names the consumer; the producer believes it only with the consumer's MAC."""
        node, output = check_part(node_id), check_part(output_id)
        return f"{self.root}/release/{node}/{output}/{check_part(consumer_id)}"

    def release_all(self, node_id: str, output_id: str) -> str:
        """Every consumer's releases for one output (the producer subscribes here)."""
        return f"{self.root}/release/{check_part(node_id)}/{check_part(output_id)}/*"

    def token(self, kind: str, node_id: str) -> str:
        """One of a node's liveliness tokens (``kind`` in :data:`TOKEN_KINDS`)."""
        if kind not in TOKEN_KINDS:
            raise ValueError(f"invalid token kind {kind!r}: one of {', '.join(TOKEN_KINDS)}")
        return f"{self.root}/{kind}/{check_part(node_id)}"

    def token_all(self) -> str:
        """The node tokens of every kind, and the run's ``state/*`` tokens, which match too
        (:func:`parse_token` names the kind)."""
        return f"{self.root}/*/*"

    def alive(self, node_id: str) -> str:
        """Liveliness token a node holds while its process lives."""
        return self.token("alive", node_id)

    def alive_all(self) -> str:
        return f"{self.root}/alive/*"

    def ready(self, node_id: str) -> str:
        """Liveliness token a node declares once its subscriptions and links are in place."""
        return self.token("ready", node_id)

    def ready_all(self) -> str:
        return f"{self.root}/ready/*"

    def launcher(self) -> str:
        """Liveliness token of the launcher; nodes stop when it disappears."""
        return f"{self.root}/launcher"

    def state(self, state: str) -> str:
        """Run-wide state tokens declared by the launcher: ``running`` then ``stop``."""
        if state not in RUN_STATES:
            raise ValueError(f"invalid run state {state!r}: one of {', '.join(RUN_STATES)}")
        return f"{self.root}/state/{state}"

    def state_all(self) -> str:
        return f"{self.root}/state/*"

    def stats(self, node_id: str) -> str:
        """Periodic statistics a node publishes."""
        return f"{self.root}/stats/{check_part(node_id)}"

    def stats_all(self) -> str:
        return f"{self.root}/stats/*"

    def held(self, node_id: str) -> str:
        """Queryable of a consumer: the slots it still holds (asked after a lost link)."""
        return f"{self.root}/held/{check_part(node_id)}"

    def gone(self, node_id: str) -> str:
        """Declared by the launcher when a node exited and will not be restarted."""
        return self.token("gone", node_id)

    def gone_all(self) -> str:
        return f"{self.root}/gone/*"


def last_part(key: object) -> str:
    """Final component of a key expression (the node id of an alive/ready token)."""
    return str(key).rsplit("/", 1)[-1]


def parse_token(key: object) -> tuple[str, str]:
    """(kind, node id) of a node token key of :meth:`RunKeys.token` or
    :meth:`WireKeys.token`; the kind is whatever the key says (callers check it)."""
    kind, node_id = str(key).rsplit("/", 2)[-2:]
    return kind, node_id


def daemon_key(machine: str) -> str:
    """Liveliness token of a ``pinflow daemon`` for ``machine`` (also its queryable root)."""
    return f"{WIRE_ROOT}/daemon/{check_part(machine)}"


def daemon_start(machine: str) -> str:
    """Queryable of ``machine``'s daemon that starts a run's share there."""
    return f"{daemon_key(machine)}/start"


def local_run_id(run_id: str, machine: str | None) -> str:
    """Run id of one host's share of a run: keys, sockets, segments and the run lock of each
    host differ even where hosts share /tmp and /dev/shm (network namespaces, containers)."""
    return run_id if machine is None else f"{run_id}-{check_part(machine)}"


class WireKeys:
    """Key expressions of one run on the wire."""

    def __init__(self, run_id: str) -> None:
        self.run_id = check_part(run_id)
        self.root = f"{WIRE_ROOT}/{run_id}"

    def launcher(self) -> str:
        """Token of the launcher: daemons stop the run's nodes when it disappears."""
        return f"{self.root}/launcher"

    def host(self, machine: str) -> str:
        """Token a daemon holds while it runs its part of this run."""
        return f"{self.root}/host/{check_part(machine)}"

    def host_all(self) -> str:
        return f"{self.root}/host/*"

    def token(self, kind: str, node_id: str) -> str:
        """Mirror of a host-local ``alive``/``ready``/``gone`` token of a node."""
        return f"{self.root}/node/{check_part(kind)}/{check_part(node_id)}"

    def token_all(self) -> str:
        return f"{self.root}/node/*/*"

    def state(self, state: str) -> str:
        """Mirror of the run's state tokens (:data:`RUN_STATES`)."""
        if state not in RUN_STATES:
            raise ValueError(f"invalid run state {state!r}: one of {', '.join(RUN_STATES)}")
        return f"{self.root}/state/{state}"

    def state_all(self) -> str:
        return f"{self.root}/state/*"

    def data(self, node_id: str, output_id: str) -> str:
        """Bytes (never descriptors) of one output, for the hosts that consume it."""
        return f"{self.root}/data/{check_part(node_id)}/{check_part(output_id)}"

    def stream(self, node_id: str, output_id: str, host: str, address: str) -> str:
        """Token of a gateway that takes ``node_id/output_id``'s messages on a direct stream
        at ``address`` (``protocol.streams.address_part``); ``host``: which host it is."""
        return (f"{self.root}/stream/{check_part(node_id)}/{check_part(output_id)}/"
                f"{check_part(host)}/{check_part(address)}")

    def stream_all(self, node_id: str, output_id: str) -> str:
        return f"{self.root}/stream/{check_part(node_id)}/{check_part(output_id)}/*/*"

    def log(self, node_id: str) -> str:
        """Output lines of a node on a daemon's host, for the launcher."""
        return f"{self.root}/log/{check_part(node_id)}"

    def log_all(self) -> str:
        return f"{self.root}/log/*"

    def result(self, node_id: str) -> str:
        """How a node on a daemon's host ended (``protocol/control.py`` ``NodeResult``)."""
        return f"{self.root}/result/{check_part(node_id)}"

    def result_all(self) -> str:
        return f"{self.root}/result/*"

    def stats(self, node_id: str) -> str:
        return f"{self.root}/stats/{check_part(node_id)}"

    def stats_all(self) -> str:
        return f"{self.root}/stats/*"

    def say(self, machine: str) -> str:
        """What a daemon says about its share of the run (``pinflow@MACHINE | ...``)."""
        return f"{self.root}/say/{check_part(machine)}"

    def say_all(self) -> str:
        return f"{self.root}/say/*"
