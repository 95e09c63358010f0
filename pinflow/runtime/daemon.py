"""``pinflow daemon --machine NAME``: runs, on one extra host, the nodes that name it.

The daemon waits on the wire for launchers. A start request carries the dataflow YAML; the
daemon validates it against its own files (paths must exist on this host too), then runs its
share as a host-local launcher: its own run folder, run lock and shared-memory pools, a
gateway to the wire, and the usual supervision (restarts, memory limits, STOP sequence).
Node output goes to this host's log files and to the launcher. The share ends when its nodes
end, when the launcher says STOP, or when the launcher disappears from the wire.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

import zenoh

from pinflow import spec as spec_module
from pinflow.errors import DescriptorError, PinflowError, SpecError
from pinflow.protocol.control import (
    NODE_RESULT,
    START_ANSWER,
    START_REQUEST,
    NodeResult,
    StartAnswer,
    StartRequest,
    encode_line,
)
from pinflow.protocol.keys import WireKeys, daemon_key, daemon_start
from pinflow.runtime.launcher import Launcher
from pinflow.transport.cleanup import sweep_dead_runs
from pinflow.transport.streams import stream_host
from pinflow.transport.wire import open_wire

READY = "ready: waiting for launchers"
"""What a daemon prints once it serves: a parent waiting for it looks for this."""


class HostLink:
    """What a host-local launcher on a daemon tells the launcher, and hears from it."""

    def __init__(self, wire: zenoh.Session, run_id: str, machine: str,
                 stop: threading.Event) -> None:
        self.wire, self.machine = wire, machine
        self.keys = WireKeys(run_id)
        self._stop = stop
        live = wire.liveliness()
        self._declared = [
            live.declare_subscriber(self.keys.launcher(), self._on_launcher, history=True),
            live.declare_subscriber(self.keys.state("stop"), self._on_stop, history=True),
        ]
        self._token = live.declare_token(self.keys.host(machine))

    def _on_launcher(self, sample: zenoh.Sample) -> None:
        if sample.kind == zenoh.SampleKind.DELETE:
            self._stop.set()

    def _on_stop(self, sample: zenoh.Sample) -> None:
        if sample.kind == zenoh.SampleKind.PUT:
            self._stop.set()

    def line(self, node_id: str, text: str) -> None:
        self.wire.put(self.keys.log(node_id), encode_line(text))

    def say(self, text: str) -> None:
        self.wire.put(self.keys.say(self.machine), encode_line(text))

    def report(self, results: list[NodeResult]) -> None:
        for result in results:
            self.wire.put(self.keys.result(result.node_id), NODE_RESULT.encode(result))

    def close(self) -> None:
        for declared in self._declared:
            declared.undeclare()
        self._token.undeclare()


class Daemon:
    """Serves start requests for ``machine`` until SIGINT/SIGTERM."""

    def __init__(self, machine: str, *, listen: list[str], connect: list[str],
                 log_dir: Path | None = None, out: TextIO | None = None) -> None:
        self.machine = machine
        daemon_key(machine)  # validates the name
        self.log_dir = log_dir
        self.out = out or sys.stdout
        self.wire = open_wire(listen=listen, connect=connect)
        self.stream_host = stream_host(listen)
        sweep = sweep_dead_runs()  # what a killed predecessor could not unlink
        if sweep.removed:
            self.say(f"removed {len(sweep.removed)} leftover(s) of dead run(s) "
                     f"{', '.join(sweep.runs())}")
        self.stopping = threading.Event()
        self._runs: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._lock = threading.Lock()
        self._token = self.wire.liveliness().declare_token(daemon_key(machine))
        self._queryable = self.wire.declare_queryable(daemon_start(machine), self._on_start)

    def say(self, text: str) -> None:
        print(f"pinflow daemon {self.machine} | {text}", file=self.out, flush=True)

    def _on_start(self, query: zenoh.Query) -> None:
        try:
            request = START_REQUEST.decode(query.payload.to_bytes() if query.payload else b"")
            error = self._start(request)
        except (DescriptorError, ValueError) as exc:  # ValueError: a run id no key can hold
            error = f"malformed start request: {exc}"
        answer = StartAnswer(machine=self.machine, ok=error is None, error=error)
        query.reply(query.key_expr, START_ANSWER.encode(answer))

    def _start(self, request: StartRequest) -> str | None:
        """Start this host's share of the requested run; why not, or None."""
        if self.stopping.is_set():
            return "the daemon is shutting down"
        try:
            dataflow = spec_module.loads(request.yaml, request.path)
        except SpecError as exc:
            return "the dataflow is not valid on this host: " + "; ".join(exc.messages)
        if not dataflow.nodes_on(self.machine):
            return "no node of the dataflow names this machine"
        run_id = request.run
        stop = threading.Event()
        link = HostLink(self.wire, run_id, self.machine, stop)
        try:
            launcher = Launcher(dataflow, run_id=run_id, machine=self.machine, wire=self.wire,
                                stop_requested=stop, log_dir=self.log_dir, out=self.out,
                                grace_s=request.grace_s,
                                startup_timeout_s=request.startup_timeout_s, link=link,
                                stream_host=self.stream_host)
            launcher.check_pinned_budget()
        except PinflowError as exc:
            link.close()
            return str(exc)
        thread = threading.Thread(target=self._serve, args=(launcher, link, run_id),
                                  name=f"pinflow-run-{run_id}", daemon=True)
        with self._lock:
            self._runs[run_id] = (thread, stop)
        thread.start()
        return None

    def _serve(self, launcher: Launcher, link: HostLink, run_id: str) -> None:
        """Run one share to its end; the thread that spawns the nodes lives until they end
        (the nodes' parent-death signal is tied to it)."""
        self.say(f"run {run_id}: starting {len(launcher.local_nodes)} node(s)")
        try:
            result = launcher.run()
            link.report(result.results)
            self.say(result.summary())
        except Exception as exc:  # report, never take the daemon down
            link.say(f"run {run_id} failed on machine {self.machine!r}: {exc}")
            self.say(f"run {run_id} failed: {exc}")
        finally:
            link.close()
            with self._lock:
                self._runs.pop(run_id, None)

    def serve_forever(self) -> None:
        self.say(f"{READY} (key {daemon_key(self.machine)})")
        self.stopping.wait()
        with self._lock:
            runs = list(self._runs.values())
        for _thread, stop in runs:
            stop.set()
        for thread, _stop in runs:
            thread.join(timeout=30.0)

    def close(self) -> None:
        self._queryable.undeclare()
        self._token.undeclare()
        self.wire.close()


def serve(machine: str, *, listen: list[str], connect: list[str],
          log_dir: Path | None = None) -> int:
    daemon = Daemon(machine, listen=listen, connect=connect, log_dir=log_dir)
    previous = {s: signal.signal(s, lambda *_: daemon.stopping.set())
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        daemon.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        daemon.close()
        daemon.say("stopped")
    return 0
