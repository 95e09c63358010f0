"""The launcher's view of the other hosts of a run: start their share, follow it, end it.

Each extra host runs ``pinflow daemon --machine NAME``. The launcher finds the daemons on
the wire, sends each the dataflow (it re-validates it there, against its own files), then
relays their nodes' output, collects their results, and notices a daemon that disappears:
its nodes count as failed and their consumers on the other hosts see their inputs closed.
What a daemon sends is decoded strictly (``pinflow.protocol.control``); anything else is
logged and dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import zenoh

from pinflow.errors import DescriptorError, LaunchError
from pinflow.protocol.control import (
    NODE_RESULT,
    START_ANSWER,
    START_REQUEST,
    NodeResult,
    StartRequest,
    decode_line,
)
from pinflow.protocol.keys import WireKeys, daemon_key, daemon_start, last_part
from pinflow.spec import DataflowSpec
from pinflow.transport.malformed import Malformed

log = logging.getLogger("pinflow.cluster")

RESULT_GRACE_S = 1.5
"""How long a host's results may lag behind its token disappearing before its nodes count
as lost (results and liveliness travel as separate zenoh messages)."""


class Cluster:
    """Remote hosts of one run, as seen from the launcher."""

    def __init__(self, spec: DataflowSpec, run_id: str, wire: zenoh.Session, *,
                 on_line: Callable[[str, str], None], on_say: Callable[[str, str], None],
                 daemon_timeout_s: float = 10.0) -> None:
        self.spec, self.wire = spec, wire
        self.keys = WireKeys(run_id)
        self.daemon_timeout_s = daemon_timeout_s
        self._on_line, self._on_say = on_line, on_say
        self.remote = {n.id: n.machine for n in spec.nodes if n.machine is not None}
        self.tails: dict[str, deque[str]] = {n: deque(maxlen=8) for n in self.remote}
        self._lock = threading.Lock()
        self._results: dict[str, NodeResult] = {}
        self.malformed = Malformed("launcher (wire)", log)
        self._hosts_seen: set[str] = set()
        self._hosts_gone: dict[str, float] = {}
        self._lost_reported: set[str] = set()
        self._declared: list = []

    # -- start ------------------------------------------------------------------------------
    def start(self, grace_s: float, startup_timeout_s: float) -> None:
        """Find every daemon, then hand each its share; LaunchError names what failed."""
        live = self.wire.liveliness()
        self._declared.append(live.declare_token(self.keys.launcher()))
        self._declared.append(live.declare_subscriber(self.keys.host_all(), self._on_host,
                                                      history=True))
        self._declared.append(self.wire.declare_subscriber(self.keys.log_all(), self._on_log))
        self._declared.append(self.wire.declare_subscriber(self.keys.say_all(),
                                                           self._on_say_sample))
        self._declared.append(self.wire.declare_subscriber(self.keys.result_all(),
                                                           self._on_result))
        machines = self.spec.machines()
        missing = self._wait_for_daemons(machines)
        if missing:
            raise LaunchError("; ".join(
                f"no `pinflow daemon --machine {m}` answered on the wire within "
                f"{self.daemon_timeout_s:g} s (needed by node(s) {', '.join(self._nodes_on(m))});"
                f" start it on that host and check the --listen/--connect endpoints"
                for m in missing))
        request = START_REQUEST.encode(StartRequest(
            run=self.keys.run_id, path=str(self.spec.path),
            yaml=Path(self.spec.path).read_text(encoding="utf-8"),
            grace_s=grace_s, startup_timeout_s=startup_timeout_s))
        problems = [p for m in machines if (p := self._start_on(m, request))]
        if problems:
            raise LaunchError("; ".join(problems))

    def _nodes_on(self, machine: str) -> list[str]:
        return [n for n, m in self.remote.items() if m == machine]

    def _wait_for_daemons(self, machines: list[str]) -> list[str]:
        deadline = time.monotonic() + self.daemon_timeout_s
        while True:
            missing = [m for m in machines
                       if not list(self.wire.liveliness().get(daemon_key(m), timeout=1.0))]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.2)

    def _start_on(self, machine: str, request: bytes) -> str | None:
        """Ask ``machine``'s daemon to start its nodes; the problem as text, or None."""
        replies = list(self.wire.get(daemon_start(machine), payload=request, timeout=30.0))
        for reply in replies:
            if reply.ok is None:
                continue
            try:
                answer = START_ANSWER.decode(reply.ok.payload.to_bytes())
            except DescriptorError as exc:
                self.malformed.refuse(reply.ok.key_expr, exc)
                continue
            if answer.machine != machine:
                continue
            return None if answer.ok else f"machine {machine!r}: {answer.error}"
        return f"machine {machine!r}: its daemon did not answer the start request"

    # -- following ------------------------------------------------------------------------
    def _on_host(self, sample: zenoh.Sample) -> None:
        machine = last_part(sample.key_expr)
        with self._lock:
            if sample.kind == zenoh.SampleKind.PUT:
                self._hosts_seen.add(machine)
                self._hosts_gone.pop(machine, None)
            else:
                self._hosts_gone[machine] = time.monotonic()

    def _on_log(self, sample: zenoh.Sample) -> None:
        node_id = last_part(sample.key_expr)
        if node_id in self.tails:
            line = decode_line(sample.payload.to_bytes())
            self.tails[node_id].append(line)
            self._on_line(node_id, line)

    def _on_say_sample(self, sample: zenoh.Sample) -> None:
        self._on_say(last_part(sample.key_expr), decode_line(sample.payload.to_bytes()))

    def _on_result(self, sample: zenoh.Sample) -> None:
        try:
            result = NODE_RESULT.decode(sample.payload.to_bytes())
        except DescriptorError as exc:
            self.malformed.refuse(sample.key_expr, exc)
            return
        if result.node_id in self.remote:
            with self._lock:
                self._results.setdefault(result.node_id, result)

    def pending(self) -> list[str]:
        """Remote nodes that have not ended (no result yet, host not lost)."""
        with self._lock:
            return [n for n in self.remote if n not in self._results]

    def lost(self) -> list[str]:
        """Nodes whose host disappeared without reporting them; each named once."""
        now = time.monotonic()
        newly = []
        with self._lock:
            for machine, since in self._hosts_gone.items():
                if now - since < RESULT_GRACE_S:
                    continue
                for node_id in self._nodes_on(machine):
                    if node_id not in self._results:
                        self._results[node_id] = self._unreported(
                            node_id, f"machine {machine!r} was lost (its pinflow daemon "
                                     "disappeared)")
                        newly.append(node_id)
        return newly

    def wait(self, timeout: float) -> None:
        """After STOP: give the daemons time to stop their nodes and report."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            self.lost()
            time.sleep(0.05)
        with self._lock:
            for node_id in self.remote:
                if node_id not in self._results:
                    self._results[node_id] = self._unreported(
                        node_id, f"machine {self.remote[node_id]!r} did not report how it "
                                 f"ended within {timeout:g} s of STOP")

    def _unreported(self, node_id: str, why: str) -> NodeResult:
        """The result of a remote node whose host never reported one: failed, with the
        last lines it relayed."""
        return NodeResult(node_id, -9, None, list(self.tails[node_id]),
                          f"{self.remote[node_id]}:(unknown)", stopped_why=why,
                          machine=self.remote[node_id])

    def results(self) -> dict[str, NodeResult]:
        with self._lock:
            return dict(self._results)

    def close(self) -> None:
        for declared in reversed(self._declared):
            declared.undeclare()
        self._declared.clear()
