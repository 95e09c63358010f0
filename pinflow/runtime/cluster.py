"""The launcher's view of the other hosts of a run: start their share, follow it, end it.

Each extra host runs ``pinflow daemon --machine NAME``. The launcher finds the daemons on
the wire, sends each the dataflow (it re-validates it there, against its own files), then
relays their nodes' output, collects their results, and notices a daemon that disappears:
its nodes count as failed and their consumers on the other hosts see their inputs closed.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import zenoh

from pinflow.errors import LaunchError
from pinflow.protocol.keys import last_part
from pinflow.spec import DataflowSpec
from pinflow.transport.wire import WireKeys, daemon_key

RESULT_GRACE_S = 1.5
"""How long a host's results may lag behind its token disappearing before its nodes count
as lost (results and liveliness travel as separate zenoh messages)."""


def result_to_json(result: object) -> bytes:
    body = asdict(result)  # type: ignore[call-overload]
    body["log_path"] = str(body["log_path"])
    return json.dumps(body).encode()


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
        self._results: dict[str, dict] = {}
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
        request = json.dumps({
            "run": self.keys.run_id, "path": str(self.spec.path),
            "yaml": Path(self.spec.path).read_text(encoding="utf-8"),
            "grace_s": grace_s, "startup_timeout_s": startup_timeout_s,
        }).encode()
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
        replies = list(self.wire.get(f"{daemon_key(machine)}/start", payload=request,
                                     timeout=30.0))
        for reply in replies:
            if reply.ok is None:
                continue
            body = json.loads(reply.ok.payload.to_bytes())
            if body.get("machine") != machine:
                continue
            return None if body.get("ok") else f"machine {machine!r}: {body.get('error')}"
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
            line = sample.payload.to_bytes().decode("utf-8", errors="replace")
            self.tails[node_id].append(line)
            self._on_line(node_id, line)

    def _on_say_sample(self, sample: zenoh.Sample) -> None:
        self._on_say(last_part(sample.key_expr),
                     sample.payload.to_bytes().decode("utf-8", errors="replace"))

    def _on_result(self, sample: zenoh.Sample) -> None:
        try:
            body = json.loads(sample.payload.to_bytes())
            node_id = str(body["node_id"])
        except (ValueError, KeyError, TypeError):
            return
        if node_id in self.remote:
            with self._lock:
                self._results.setdefault(node_id, body)

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

    def _unreported(self, node_id: str, why: str) -> dict:
        """The result of a remote node whose host never reported one: failed, with the
        last lines it relayed."""
        return {"node_id": node_id, "returncode": -9, "forced": None,
                "tail": list(self.tails[node_id]),
                "log_path": f"{self.remote[node_id]}:(unknown)", "stopped_why": why}

    def results(self) -> dict[str, dict]:
        with self._lock:
            return dict(self._results)

    def close(self) -> None:
        for declared in reversed(self._declared):
            declared.undeclare()
        self._declared.clear()
