"""``pinflow run``: start every node of a dataflow, relay their output, stop them cleanly.

The launcher owns the run: a unique run id, a private folder for the zenoh unix sockets,
one zenoh session that nodes use as a rendezvous (payloads go node to node), one process
per node in its own process group, and the stop sequence STOP -> grace -> SIGTERM -> SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import msgspec
import zenoh

from pinflow.errors import LaunchError
from pinflow.protocol.control import NodeResult
from pinflow.protocol.keys import RunKeys, last_part, local_run_id
from pinflow.protocol.wiring import ENV_VAR, Consumer, Wiring
from pinflow.runtime.bridge import Bridge
from pinflow.runtime.child import LAUNCHER_LOST_EXIT
from pinflow.runtime.cluster import Cluster
from pinflow.runtime.collector import StatsCollector
from pinflow.runtime.supervisor import MemoryWatch, over_limit, restart_delay
from pinflow.spec import GATEWAY_ID, DataflowSpec, NodeSpec
from pinflow.transport import budget
from pinflow.transport.auth import Keyring
from pinflow.transport.channel import DRAIN_TIMEOUT_S, default_slots
from pinflow.transport.cleanup import RunLock, remove_node_segments, sweep_dead_runs
from pinflow.transport.segment import PAGE, shm_dir
from pinflow.transport.session import (
    LAUNCHER_SOCKET,
    make_run_dir,
    open_session,
    unix_endpoint,
)
from pinflow.transport.wire import open_wire


class LeaderLink(Protocol):
    """How a launcher that runs one host's share for a daemon reaches the leading launcher
    on the first host (the daemon builds it; the launcher only talks through it)."""

    def say(self, text: str) -> None:
        """A ``pinflow | ...`` line of this host, shown there as ``pinflow@MACHINE | ...``."""

    def line(self, node_id: str, text: str) -> None:
        """One output line of a node of this host."""

TAIL_LINES = 8
LAUNCHER_LOST_WHY = ("it stopped with LAUNCHER_LOST while the launcher was running: its run "
                     "lock was not held, was it removed by hand or by a cleaner?")


def new_run_id() -> str:
    """Short, unique per run: names keys, sockets and (later) shared-memory segments."""
    return secrets.token_hex(6)


@dataclass
class NodeProcess:
    spec: NodeSpec
    wiring: Wiring
    process: subprocess.Popen[bytes]
    log_path: Path
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None
    killed: str | None = None  # "SIGTERM"/"SIGKILL" when the launcher had to force it
    reaped: bool = False
    restarts: int = 0
    restart_at: float | None = None  # monotonic time of a scheduled restart
    finished: bool = False  # exited and will not be restarted
    stopped_why: str | None = None  # the launcher stopped it (memory_limit)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()


@dataclass(frozen=True)
class RunResult:
    run_id: str
    results: list[NodeResult]
    log_dir: Path

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list[NodeResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        lines = [f"run {self.run_id}: {len(self.results)} node(s), logs in {self.log_dir}"]
        for r in self.results:
            if r.restarts:
                lines.append(f"  node {r.node_id!r} was restarted {r.restarts} time(s)")
            if r.ok:
                continue
            why = (f"stopped by the launcher: {r.stopped_why}" if r.stopped_why
                   else f"did not stop within the grace period ({r.forced})" if r.forced
                   else f"exit code {r.returncode} ({LAUNCHER_LOST_WHY})"
                   if r.returncode == LAUNCHER_LOST_EXIT
                   else f"exit code {r.returncode}" if r.returncode >= 0
                   else f"killed by signal {signal.Signals(-r.returncode).name}")
            where = f" on machine {r.machine!r}" if r.machine else ""
            lines.append(f"  node {r.node_id!r}{where} failed: {why}; last lines:")
            lines.extend(f"    | {line}" for line in r.tail or ["(no output)"])
        return "\n".join(lines)


class Launcher:
    """Runs one dataflow to completion; see :func:`run`."""

    def __init__(self, spec: DataflowSpec, *, log_dir: Path | None = None,
                 grace_s: float = 5.0, startup_timeout_s: float = 60.0,
                 out: TextIO | None = None, run_id: str | None = None,
                 machine: str | None = None, wire: zenoh.Session | None = None,
                 stop_requested: threading.Event | None = None,
                 daemon_timeout_s: float = 10.0, link: LeaderLink | None = None) -> None:
        self.spec = spec
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
        self.out = out or sys.stdout
        self.log_dir = (log_dir or Path.cwd() / "out") / self.run_id
        self.stop_requested = stop_requested or threading.Event()
        self.wire = wire
        self.link = link
        """On a daemon: where this host's lines go to the leading launcher."""
        self.cluster: Cluster | None = None
        if machine is None and spec.machines():
            if wire is None:
                raise LaunchError(
                    f"node(s) {', '.join(n.id for n in spec.nodes if n.machine)} run on "
                    f"machine(s) {', '.join(spec.machines())}: give `pinflow run` a wire "
                    "endpoint (--connect PROTO/HOST:PORT to a `pinflow daemon --listen`, or "
                    "--listen for daemons that --connect)")
            self.cluster = Cluster(spec, self.dataflow_run_id, wire, on_line=self._remote_line,
                                   on_say=self._remote_say, daemon_timeout_s=daemon_timeout_s)
        self._print_lock = threading.Lock()
        self._id_width = max(len(n.id) for n in spec.nodes)
        """Node ids are padded to this in the output, so columns line up across nodes."""
        self._ready: set[str] = set()
        self._procs: dict[str, NodeProcess] = {}
        self._tokens: list[zenoh.LivelinessToken] = []
        self._liveliness: zenoh.Liveliness | None = None
        self._stats = StatsCollector()
        self._memory = MemoryWatch()

    # -- output ---------------------------------------------------------------------------
    def say(self, text: str) -> None:
        with self._print_lock:
            print(f"pinflow | {text}", file=self.out, flush=True)
        if self.link is not None:
            self.link.say(text)

    def _remote_line(self, node_id: str, line: str) -> None:
        """A line of a node on another host: printed and logged here like a local one."""
        with self._print_lock:
            with open(self.log_dir / f"{node_id}.log", "a", encoding="utf-8") as log_file:
                log_file.write(line + "\n")
            print(f"{node_id:<{self._id_width}} | {line}", file=self.out, flush=True)

    def _remote_say(self, machine: str, text: str) -> None:
        with self._print_lock:
            print(f"pinflow@{machine} | {text}", file=self.out, flush=True)

    def _relay(self, proc: NodeProcess, process: subprocess.Popen[bytes]) -> None:
        """Copy a node's output to its log file and to our stdout, prefixed with its id."""
        assert process.stdout is not None
        with open(proc.log_path, "a", encoding="utf-8") as log_file:
            for raw in process.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                log_file.write(line + "\n")
                log_file.flush()
                proc.tail.append(line)
                with self._print_lock:
                    print(f"{proc.spec.id:<{self._id_width}} | {line}", file=self.out, flush=True)
                if self.link is not None:
                    self.link.line(proc.spec.id, line)

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
            self._stats.start(session, self.keys)
            if self.wire is not None:
                bridge = Bridge(self.spec, self.machine, self.dataflow_run_id, session,
                                self.wire, self.keyring)
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
            self._stop_all()
            ready_sub.undeclare()
        finally:
            self._kill_all()
            self._stats.close()
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
                wanted[f"{node.id}/{out.id} ({slots} x {out.slot_bytes} B)"] = (
                    PAGE + slots * out.slot_bytes)
        if wanted:
            budget.check(wanted, self.spec.pinned_budget)

    def _supervise(self, stop_after: float | None) -> None:
        """The run's main loop: exits, restarts, memory limits, bottleneck diagnosis."""
        deadline = None if stop_after is None else time.monotonic() + stop_after
        next_check = 0.0
        while not self.stop_requested.is_set() and self._any_alive():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.say(f"--stop-after {stop_after:g}s reached, stopping")
                return
            self._reap()
            self._restart_due(now)
            self._remote_lost()
            if now >= next_check:
                next_check = now + 0.5
                self._check_memory()
                for line in self._stats.findings(now, self._running):
                    self.say(line)
            time.sleep(0.05)

    def _running(self, node_id: str) -> bool:
        """The node runs here, or on a host that has not reported its end."""
        if self.cluster is not None and node_id in self.cluster.pending():
            return True
        return node_id in self._procs and self._procs[node_id].returncode is None

    def _remote_lost(self) -> None:
        """Nodes of a host that vanished: failed; their consumers here close the inputs."""
        if self.cluster is None:
            return
        for node_id in self.cluster.lost():
            self.say(f"node {node_id!r} is lost with machine "
                     f"{self.cluster.remote[node_id]!r} (its daemon disappeared)")
            if self._liveliness is not None:
                self._tokens.append(self._liveliness.declare_token(self.keys.gone(node_id)))

    def _check_memory(self) -> None:
        warning = self._memory.low_memory_warning()
        if warning:
            self.say(warning)
        for proc in self._procs.values():
            if proc.returncode is not None:
                continue
            why = over_limit(proc.spec, proc.process.pid)
            if why:
                proc.stopped_why = why
                self.say(f"node {proc.spec.id!r} {why}; stopping it (its consumers see its "
                         "outputs closed)")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)

    def _restart_due(self, now: float) -> None:
        for proc in self._procs.values():
            if proc.restart_at is not None and now >= proc.restart_at:
                proc.restart_at = None
                proc.restarts += 1
                proc.stopped_why = None
                self._start_process(proc, proc.wiring.restarted(proc.restarts))

    def _on_ready(self, sample: zenoh.Sample) -> None:
        if sample.kind == zenoh.SampleKind.PUT:
            self._ready.add(last_part(sample.key_expr))

    def _consumers(self, node: NodeSpec) -> dict[str, list[Consumer]]:
        """Per output, its consumers on this host, plus the gateway standing in for all
        consumers on other hosts (it reads each message once, whatever their number)."""
        consumers = {}
        for out in node.outputs:
            here, gateway_queue = self.spec.consumers_across(node.id, out.id, self.machine)
            consumers[out.id] = [Consumer(c, i.name, i.queue_size) for c, i in here]
            if gateway_queue is not None:
                consumers[out.id].append(Consumer(GATEWAY_ID, "wire", gateway_queue))
        return consumers

    def _spawn_all(self, sock_dir: Path) -> None:
        launcher_endpoint = unix_endpoint(sock_dir / LAUNCHER_SOCKET)
        for index, node in enumerate(self.local_nodes):
            consumers = self._consumers(node)
            restartable = sorted({i.source_node for i in node.inputs if i.source_node
                                  and self.spec.node(i.source_node).restart != "never"})
            wiring = Wiring(
                run_id=self.run_id, dataflow=str(self.spec.path), node=node.to_dict(),
                listen=[unix_endpoint(sock_dir / f"{index}.sock")],
                connect=[launcher_endpoint], consumers=consumers,
                startup_timeout_s=self.startup_timeout_s,
                pinned_budget=self.spec.pinned_budget,
                restart_policy=node.restart, restartable=restartable,
                consumer_secret=self.keyring.secret(node.id),
                consumer_keys=self.keyring.pair_keys(
                    node.id, {c.node for readers in consumers.values() for c in readers}),
                drain_timeout_s=min(DRAIN_TIMEOUT_S, self.grace_s / 4),
            )
            proc = NodeProcess(node, wiring, None, self.log_dir / f"{node.id}.log")  # type: ignore[arg-type]
            self._start_process(proc, wiring)
            self._procs[node.id] = proc

    def _start_process(self, proc: NodeProcess, wiring: Wiring) -> None:
        """(Re)start the node's process; a restart reuses its log file and keeps its tail."""
        node = proc.spec
        how, target = ("path", str(node.path)) if node.path else ("module", str(node.module))
        cmd = [sys.executable, "-u", "-m", "pinflow.runtime.child", str(os.getpid()), how, target,
               *node.args]
        env = {**os.environ, **node.env, ENV_VAR: wiring.to_env(), "PYTHONUNBUFFERED": "1"}
        try:
            process = subprocess.Popen(
                cmd, cwd=self.spec.path.parent, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start node {node.id!r} ({' '.join(cmd)}): {exc}") from exc
        if proc.reader is not None:
            proc.reader.join(timeout=2.0)  # the previous process's output is all relayed
        proc.process, proc.wiring, proc.reaped = process, wiring, False
        proc.reader = threading.Thread(target=self._relay, args=(proc, process), daemon=True,
                                       name=f"pinflow-relay-{node.id}")
        proc.reader.start()

    def _wait_ready(self) -> None:
        """Hold the start until every live node declared ready (or the startup timeout)."""
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            # A node that dies before it is ready is declared gone (or restarted) now, so
            # its peers, waiting for it to join, stop waiting.
            self._reap()
            self._restart_due(time.monotonic())
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
        return [n for n, p in self._procs.items() if n not in self._ready
                and p.returncode is None] + [n for n in remote if n not in self._ready]

    def _reap(self, *, stopping: bool = False) -> None:
        """Handle nodes that exited: unlink the segments a crashed node could not (consumers
        keep their mappings, so no data is torn), then restart it per its policy or declare
        it gone for good so its consumers close their inputs."""
        for proc in self._procs.values():
            code = proc.returncode
            if code is None or proc.reaped:
                continue
            proc.reaped = True
            removed = remove_node_segments(self.run_id, proc.spec.id)
            if code != 0:
                extra = f"; removed {len(removed)} segment(s) it left" if removed else ""
                if code == LAUNCHER_LOST_EXIT:
                    extra += f" ({LAUNCHER_LOST_WHY})"
                self.say(f"node {proc.spec.id!r} exited with code {code}{extra}")
            delay = restart_delay(proc.spec, proc.restarts, code, stopping=stopping)
            if delay is not None:
                proc.restart_at = time.monotonic() + delay
                self.say(f"restarting node {proc.spec.id!r} in {delay:g}s (restart "
                         f"{proc.restarts + 1} of {proc.spec.max_restarts}, policy "
                         f"{proc.spec.restart})")
            else:
                self._finish(proc)

    def _finish(self, proc: NodeProcess) -> None:
        """The node will not run again: tell its consumers (they close its inputs)."""
        proc.finished = True
        proc.restart_at = None
        if self._liveliness is not None:
            self._tokens.append(self._liveliness.declare_token(self.keys.gone(proc.spec.id)))

    def _any_alive(self) -> bool:
        return any(p.returncode is None or p.restart_at is not None
                   for p in self._procs.values()) or bool(self.cluster and self.cluster.pending())

    def _stop_all(self) -> None:
        """STOP was announced; give nodes the grace period, then SIGTERM, then SIGKILL."""
        for proc in self._procs.values():
            if proc.restart_at is not None:
                self._finish(proc)
        start = time.monotonic()
        while self._any_alive() and time.monotonic() - start < self.grace_s:
            time.sleep(0.02)
        for sig, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            alive = [p for p in self._procs.values() if p.returncode is None]
            if not alive:
                break
            for proc in alive:
                proc.killed = sig.name
                self.say(f"node {proc.spec.id!r} still running after STOP: sending {sig.name}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, sig)
            end = time.monotonic() + wait_s
            while any(p.returncode is None for p in alive) and time.monotonic() < end:
                time.sleep(0.02)
        if self.cluster is not None:  # daemons run the same sequence; give them its length
            self.cluster.wait(max(0.0, self.grace_s - (time.monotonic() - start)) + 10.0)

    def _kill_all(self) -> None:
        """Last resort on any exit path: no node may outlive the launcher."""
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.killed = proc.killed or "SIGKILL"
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
                proc.process.wait()
            if proc.reader is not None:
                proc.reader.join(timeout=2.0)

    def _results(self) -> list[NodeResult]:
        results = {
            p.spec.id: NodeResult(p.spec.id, p.process.wait(), p.killed, list(p.tail),
                                  str(p.log_path), p.restarts, p.stopped_why, self.machine)
            for p in self._procs.values()
        }
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
                             daemon_timeout_s=daemon_timeout_s), stop_after)
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
