"""``pinflow run``: the lifecycle of one host's share of a run.

The launcher owns the run: a unique run id, the run lock, a private folder for the zenoh
unix sockets, one zenoh session that nodes use as a rendezvous (payloads go node to node),
and the sequence lock -> mesh -> spawn -> wait until ready -> supervise -> STOP -> grace ->
SIGTERM -> SIGKILL -> clean up. The jobs along the way belong to other modules: starting
processes (:mod:`~pinflow.runtime.spawn`), their output (:mod:`~pinflow.runtime.relay`),
exits, restarts and memory (:mod:`~pinflow.runtime.supervisor`), statistics and diagnosis
(:mod:`~pinflow.runtime.collector`), other hosts (:mod:`~pinflow.runtime.cluster`) and the
wire gateway (:mod:`~pinflow.runtime.bridge`).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import msgspec
import zenoh

from pinflow.errors import LaunchError
from pinflow.protocol.control import NodeResult
from pinflow.protocol.keys import RunKeys, last_part, local_run_id
from pinflow.runtime.bridge import Bridge
from pinflow.runtime.cluster import Cluster
from pinflow.runtime.collector import StatsCollector
from pinflow.runtime.relay import LeaderLink, Relay
from pinflow.runtime.result import RunResult
from pinflow.runtime.spawn import Spawner
from pinflow.runtime.supervisor import Supervisor
from pinflow.spec import GATEWAY_ID, DataflowSpec
from pinflow.transport import budget, dynamic
from pinflow.transport.auth import Keyring
from pinflow.transport.channel import DRAIN_TIMEOUT_S, default_slots
from pinflow.transport.cleanup import RunLock, sweep_dead_runs
from pinflow.transport.pool import pool_bytes
from pinflow.transport.segment import shm_dir
from pinflow.transport.session import LAUNCHER_SOCKET, make_run_dir, open_session, unix_endpoint
from pinflow.transport.streams import stream_host
from pinflow.transport.wire import open_wire

__all__ = ["Launcher", "LeaderLink", "RunResult", "new_run_id", "run"]


def new_run_id() -> str:
    """Short, unique per run: names keys, sockets and (later) shared-memory segments."""
    return secrets.token_hex(6)


class Launcher:
    """Runs one dataflow to completion; see :func:`run`."""

    def __init__(self, spec: DataflowSpec, *, log_dir: Path | None = None,
                 grace_s: float = 5.0, startup_timeout_s: float = 60.0,
                 out: TextIO | None = None, run_id: str | None = None,
                 machine: str | None = None, wire: zenoh.Session | None = None,
                 stop_requested: threading.Event | None = None,
                 daemon_timeout_s: float = 10.0, link: LeaderLink | None = None,
                 stream_host: str | None = None) -> None:
        self.spec = spec
        self.stream_host = stream_host
        """Where this host's gateway takes direct streams (``transport/streams.py``)."""
        self.dataflow_run_id = run_id or new_run_id()
        self.machine = machine
        self.run_id = local_run_id(self.dataflow_run_id, machine)
        """This host's share of the run: keys, sockets, segments and lock use it."""
        self.keys = RunKeys(self.run_id)
        self.local_nodes = spec.nodes_on(machine)
        self.keyring = Keyring([*(n.id for n in self.local_nodes), GATEWAY_ID])
        """Who may release a slot or end a stream on this host (``transport/auth.py``)."""
        self.grace_s = grace_s
        self.startup_timeout_s = startup_timeout_s
        self.log_dir = (log_dir or Path.cwd() / "out") / self.run_id
        self.stop_requested = stop_requested or threading.Event()
        self.wire = wire
        self.relay = Relay(out or sys.stdout, [n.id for n in spec.nodes], link)
        self.cluster: Cluster | None = None
        if machine is None and spec.machines():
            if wire is None:
                raise LaunchError(
                    f"node(s) {', '.join(n.id for n in spec.nodes if n.machine)} run on "
                    f"machine(s) {', '.join(spec.machines())}: give `pinflow run` a wire "
                    "endpoint (--connect PROTO/HOST:PORT to a `pinflow daemon --listen`, or "
                    "--listen for daemons that --connect)")
            self.cluster = Cluster(
                spec, self.dataflow_run_id, wire,
                on_line=lambda node, line: self.relay.remote_line(
                    node, line, self.log_dir / f"{node}.log"),
                on_say=self.relay.remote_say, daemon_timeout_s=daemon_timeout_s)
        self.supervisor = Supervisor(
            self.run_id,
            Spawner(spec, self.run_id, machine, self.keyring, self.relay, self.log_dir,
                    startup_timeout_s),
            self.say, self._declare_gone)
        self.stats = StatsCollector()
        self._ready: set[str] = set()
        self._tokens: list[zenoh.LivelinessToken] = []
        self._liveliness: zenoh.Liveliness | None = None

    @property
    def link(self) -> LeaderLink | None:
        """On a daemon: where this host's lines go to the leading launcher."""
        return self.relay.link

    def say(self, text: str) -> None:
        self.relay.say(text)

    # -- lifecycle ------------------------------------------------------------------------
    def run(self, stop_after: float | None = None) -> RunResult:
        self.check_pinned_budget()
        log_dir_made = not self.log_dir.exists()
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LaunchError(f"cannot create the log folder {self.log_dir}: "
                              f"{exc.strerror}; pass --log-dir") from None
        run_lock = RunLock(self.run_id)
        started = False
        try:
            run_lock.acquire()  # marks the run's shared memory as live for `pinflow clean`
            sock_dir = make_run_dir(self.run_id)
            try:
                session = self._open_session(sock_dir)
                started = True
                self._run_in(session, sock_dir, stop_after)
            finally:
                shutil.rmtree(sock_dir, ignore_errors=True)
        finally:
            run_lock.release()  # unlinks every segment of the run that is still there
            if not started and log_dir_made:
                with contextlib.suppress(OSError):
                    self.log_dir.rmdir()  # a start that failed leaves nothing behind
        return RunResult(self.run_id, self._results(), self.log_dir)

    @staticmethod
    def _open_session(sock_dir: Path) -> zenoh.Session:
        endpoint = unix_endpoint(sock_dir / LAUNCHER_SOCKET)
        try:
            return open_session(listen=[endpoint], connect=[])
        except zenoh.ZError as exc:
            raise LaunchError(f"cannot open the run's zenoh session on {endpoint}: {exc}"
                              ) from None

    def _run_in(self, session: zenoh.Session, sock_dir: Path,
                stop_after: float | None) -> None:
        """The run itself, on the launcher's session (closed here, however it ends)."""
        bridge: Bridge | None = None
        try:
            liveliness = self._liveliness = session.liveliness()
            self._tokens.append(liveliness.declare_token(self.keys.launcher()))
            ready_sub = liveliness.declare_subscriber(self.keys.ready_all(), self._on_ready,
                                                      history=True)
            self.stats.start(session, self.keys)
            if self.wire is not None:
                bridge = Bridge(self.spec, self.machine, self.dataflow_run_id, session,
                                self.wire, self.keyring, stream_host=self.stream_host)
                bridge.start()
            if self.cluster is not None:
                self.cluster.start(self.grace_s, self.startup_timeout_s)
            self._spawn_all(sock_dir)
            if self.link is None:  # the launcher's host leads; daemons follow its state
                self._wait_ready()
                self._tokens.append(liveliness.declare_token(self.keys.state("running")))
                hosts = f" on {1 + len(self.spec.machines())} hosts" if self.cluster else ""
                self.say(f"run {self.run_id} started: {len(self.spec.nodes)} node(s){hosts}")
            self._supervise(stop_after)
            self._tokens.append(liveliness.declare_token(self.keys.state("stop")))
            self._stop()
            ready_sub.undeclare()
        finally:
            self.supervisor.kill_all()
            self.stats.close()
            if self.cluster is not None:
                self.cluster.close()
            if bridge is not None:
                for line in bridge.summary():
                    self.say(line)
                bridge.close()
            for token in self._tokens:
                token.undeclare()
            session.close()

    def check_pinned_budget(self) -> None:
        """Refuse to start if the pinned pools the YAML sizes up front do not fit the
        machine's budget: a clear error now instead of a CUDA failure hours later."""
        wanted = {}
        for node in self.local_nodes:
            for out in node.outputs:
                if not (out.pinned and out.slot_bytes):
                    continue
                sizes = [i.queue_size for _, i in self.spec.consumers_of(node.id, out.id)]
                slots = out.slots or default_slots(sizes)
                wanted[f"{node.id}/{out.id} ({slots} x {out.slot_bytes} B)"] = pool_bytes(
                    slots, out.slot_bytes)
        if wanted:
            budget.check(wanted, self.spec.pinned_budget)

    def _spawn_all(self, sock_dir: Path) -> None:
        spawner = self.supervisor.spawner
        drain_timeout_s = min(DRAIN_TIMEOUT_S, self.grace_s / 4)
        offers = {}
        for index, node in enumerate(self.local_nodes):
            if node.dynamic:
                offers[node.id] = spawner.offer(node, sock_dir, drain_timeout_s)
                continue
            wiring = spawner.wiring(node, index, sock_dir, drain_timeout_s)
            self.supervisor.add(spawner.start(node, wiring))
        # Written before any node is ready, so a dynamic node started early finds its run
        # as soon as the run can be joined.
        dynamic.publish(sock_dir, str(self.spec.path), [n.id for n in self.local_nodes],
                        offers)
        for node_id in offers:
            self.say(f"dynamic node {node_id!r} is not started by pinflow run: start its "
                     f"program yourself; it joins with Node({node_id!r})")

    def _wait_ready(self) -> None:
        """Hold the start until every live node declared ready (or the startup timeout)."""
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            # A node that dies before it is ready is declared gone (or restarted) now, so
            # its peers, waiting for it to join, stop waiting.
            self.supervisor.reap()
            self.supervisor.restart_due(time.monotonic())
            waiting = self._not_ready()
            if not waiting:
                return
            self._remote_lost()
            time.sleep(0.02)
        waiting = self._not_ready()
        if waiting and not self.stop_requested.is_set():
            self.say(f"starting without {', '.join(waiting)}: not ready after "
                     f"{self.startup_timeout_s:g}s (do they create pinflow.Node()?)")

    def _not_ready(self) -> list[str]:
        remote = self.cluster.pending() if self.cluster else []
        return [n for n in self.supervisor.procs if n not in self._ready
                and self.supervisor.alive(n)] + [n for n in remote if n not in self._ready]

    def _on_ready(self, sample: zenoh.Sample) -> None:
        if sample.kind == zenoh.SampleKind.PUT:
            self._ready.add(last_part(sample.key_expr))

    def _supervise(self, stop_after: float | None) -> None:
        """The run's main loop: exits, restarts, memory limits, bottleneck diagnosis."""
        deadline = None if stop_after is None else time.monotonic() + stop_after
        next_check = 0.0
        while not self.stop_requested.is_set() and self._goes_on():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.say(f"--stop-after {stop_after:g}s reached, stopping")
                return
            self.supervisor.reap()
            self.supervisor.restart_due(now)
            self._remote_lost()
            if now >= next_check:
                next_check = now + 0.5
                self.supervisor.check_memory()
                for line in self.stats.findings(now, self._running):
                    self.say(line)
            time.sleep(0.05)

    def _running(self, node_id: str) -> bool:
        """The node runs here, or on a host that has not reported its end."""
        remote = self.cluster is not None and node_id in self.cluster.pending()
        return remote or self.supervisor.alive(node_id)

    def _any_alive(self) -> bool:
        return self.supervisor.any_alive() or bool(self.cluster and self.cluster.pending())

    def _goes_on(self) -> bool:
        """A node runs (or will be restarted); a run of nothing but dynamic nodes lasts
        until it is stopped (nobody else would end it)."""
        only_dynamic = (bool(self.local_nodes) and all(n.dynamic for n in self.local_nodes)
                        and self.cluster is None)
        return only_dynamic or self._any_alive()

    def _remote_lost(self) -> None:
        """Nodes of a host that vanished: failed; their consumers here close the inputs."""
        if self.cluster is None:
            return
        for node_id in self.cluster.lost():
            self.say(f"node {node_id!r} is lost with machine "
                     f"{self.cluster.remote[node_id]!r} (its daemon disappeared)")
            self._declare_gone(node_id)

    def _declare_gone(self, node_id: str) -> None:
        """``node_id`` will not run again: its consumers close the inputs it fed."""
        if self._liveliness is not None:
            self._tokens.append(self._liveliness.declare_token(self.keys.gone(node_id)))

    def _stop(self) -> None:
        """STOP was announced; give nodes the grace period, then SIGTERM, then SIGKILL."""
        self.supervisor.cancel_restarts()
        start = time.monotonic()
        while self._any_alive() and time.monotonic() - start < self.grace_s:
            time.sleep(0.02)
        self.supervisor.terminate()
        if self.cluster is not None:  # daemons run the same sequence; give them its length
            self.cluster.wait(max(0.0, self.grace_s - (time.monotonic() - start)) + 10.0)

    def _results(self) -> list[NodeResult]:
        results = self.supervisor.results(self.machine)
        if self.cluster is not None:
            for node_id, result in self.cluster.results().items():
                results[node_id] = msgspec.structs.replace(
                    result, machine=self.cluster.remote[node_id])
        return [results[n.id] for n in self.spec.nodes if n.id in results]


def run(spec: DataflowSpec, *, stop_after: float | None = None, log_dir: Path | None = None,
        grace_s: float = 5.0, out: TextIO | None = None, wire_listen: list[str] | None = None,
        wire_connect: list[str] | None = None, daemon_timeout_s: float = 10.0) -> RunResult:
    """Run ``spec`` until all nodes exit, SIGINT/SIGTERM, or ``stop_after`` seconds.

    A first Ctrl-C starts the graceful stop; a second one skips the grace period. Nodes
    with ``machine:`` run on the hosts whose daemons the wire endpoints reach.
    """
    _sweep_leftovers(out or sys.stdout)
    wire = None
    if spec.machines() and (wire_listen or wire_connect):
        wire = open_wire(listen=wire_listen or [], connect=wire_connect or [])
    elif wire_listen or wire_connect:
        print("pinflow | no node of this dataflow names a `machine:`; --listen/--connect "
              "are not used", file=out or sys.stdout, flush=True)
    try:
        return _run(Launcher(spec, log_dir=log_dir, grace_s=grace_s, out=out, wire=wire,
                             daemon_timeout_s=daemon_timeout_s,
                             stream_host=stream_host(wire_listen or [])), stop_after)
    finally:
        if wire is not None:
            wire.close()


def _sweep_leftovers(out: TextIO) -> None:
    """Remove what dead runs left (a killed launcher cannot), and say so: their pools would
    otherwise sit in memory, and their files confuse `pinflow top` and `clean`."""
    sweep = sweep_dead_runs()
    if sweep.removed:
        shm = shm_dir()
        names = ", ".join(p.name if p.parent == shm else str(p) for p in sweep.removed)
        print(f"pinflow | removed {len(sweep.removed)} leftover(s) of dead run(s) "
              f"{', '.join(sweep.runs())}: {names}", file=out, flush=True)
    for why in sweep.kept:
        print(f"pinflow | left alone, still in use: {why}", file=out, flush=True)


def _run(launcher: Launcher, stop_after: float | None) -> RunResult:

    def on_signal(signum: int, _frame: object) -> None:
        if launcher.stop_requested.is_set():
            launcher.grace_s = 0.0
        launcher.stop_requested.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return launcher.run(stop_after)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
