"""Starting node processes: what each is told (its wiring), how it is started, and the same
again for a restart.

Each node runs as ``python -m pinflow.runtime.child`` in a process group of its own (the
stop sequence signals the group), with the YAML's folder as working directory, its wiring in
``PINFLOW_NODE`` and its output piped to the :class:`~pinflow.runtime.relay.Relay`. A node
whose ``path`` is a program (a console script) is exec'd by that bootstrap, so it still dies
with the launcher. A dynamic node (``path: dynamic``) is not started: its wiring is offered
in the run's folder for a process started by hand (:meth:`Spawner.offer`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from pinflow.errors import LaunchError
from pinflow.protocol.wiring import ENV_VAR, Consumer, Wiring
from pinflow.runtime.relay import Relay
from pinflow.spec import GATEWAY_ID, DataflowSpec, NodeSpec
from pinflow.transport.auth import Keyring
from pinflow.transport.session import LAUNCHER_SOCKET, unix_endpoint

TAIL_LINES = 8
"""Output lines of a node kept for the run's summary."""


@dataclass
class NodeProcess:
    """One node of this host and its current process (a restart replaces the process)."""

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


class Spawner:
    """Starts the processes of the nodes of ``machine`` (``None``: the launcher's host)."""

    def __init__(self, spec: DataflowSpec, run_id: str, machine: str | None,
                 keyring: Keyring, relay: Relay, log_dir: Path,
                 startup_timeout_s: float) -> None:
        self.spec, self.run_id, self.machine = spec, run_id, machine
        self.keyring, self.relay, self.log_dir = keyring, relay, log_dir
        self.startup_timeout_s = startup_timeout_s

    def consumers(self, node: NodeSpec) -> dict[str, list[Consumer]]:
        """Per output, its consumers on this host, plus the gateway standing in for all
        consumers on other hosts (it reads each message once, whatever their number)."""
        consumers = {}
        for out in node.outputs:
            here, gateway_queue = self.spec.consumers_across(node.id, out.id, self.machine)
            consumers[out.id] = [Consumer(c, i.name, i.queue_size) for c, i in here]
            if gateway_queue is not None:
                consumers[out.id].append(Consumer(GATEWAY_ID, "wire", gateway_queue))
        return consumers

    def wiring(self, node: NodeSpec, index: int | str, sock_dir: Path,
               drain_timeout_s: float) -> Wiring:
        """What node number ``index`` of this host is told in ``PINFLOW_NODE``."""
        consumers = self.consumers(node)
        # A dynamic producer may leave and join again: like a restartable one, its leaving
        # does not close its consumers' inputs.
        restartable = sorted({i.source_node for i in node.inputs if i.source_node
                              and (self.spec.node(i.source_node).restart != "never"
                                   or self.spec.node(i.source_node).dynamic)})
        readers = {c.node for found in consumers.values() for c in found}
        return Wiring(
            run_id=self.run_id, dataflow=str(self.spec.path), node=node.to_dict(),
            listen=[unix_endpoint(sock_dir / f"{index}.sock")],
            connect=[unix_endpoint(sock_dir / LAUNCHER_SOCKET)], consumers=consumers,
            startup_timeout_s=self.startup_timeout_s, pinned_budget=self.spec.pinned_budget,
            restart_policy=node.restart, restartable=restartable,
            consumer_secret=self.keyring.secret(node.id),
            consumer_keys=self.keyring.pair_keys(node.id, readers),
            drain_timeout_s=drain_timeout_s,
            dynamic=sorted(n.id for n in self.spec.nodes if n.dynamic),
            joins=node.dynamic,
        )

    def offer(self, node: NodeSpec, sock_dir: Path, drain_timeout_s: float) -> Wiring:
        """The wiring a dynamic node finds in the run's folder. It ends no stream when it
        leaves (its consumers' inputs stay open: it may join again), as a node the launcher
        may restart."""
        wiring = self.wiring(node, f"dyn-{node.id}", sock_dir, drain_timeout_s)
        return msgspec.structs.replace(wiring, restart_policy="dynamic")

    def start(self, node: NodeSpec, wiring: Wiring) -> NodeProcess:
        """Start ``node``'s first process."""
        proc = NodeProcess(node, wiring, self._popen(node, wiring),
                           self.log_dir / f"{node.id}.log")
        self._follow(proc)
        return proc

    def restart(self, proc: NodeProcess) -> None:
        """Start the node again; its wiring says how often, it reuses its log file and keeps
        its tail."""
        wiring = proc.wiring.restarted(proc.restarts)
        process = self._popen(proc.spec, wiring)
        if proc.reader is not None:
            proc.reader.join(timeout=2.0)  # the previous process's output is all relayed
        proc.process, proc.wiring, proc.reaped = process, wiring, False
        self._follow(proc)

    def _popen(self, node: NodeSpec, wiring: Wiring) -> subprocess.Popen[bytes]:
        if node.path is None:
            how, target = "module", str(node.module)
        else:
            how, target = ("exec" if node.executable else "path"), str(node.path)
        cmd = [sys.executable, "-u", "-m", "pinflow.runtime.child", str(os.getpid()), how, target,
               *node.args]
        env = {**os.environ, **node.env, ENV_VAR: wiring.to_env(), "PYTHONUNBUFFERED": "1"}
        try:
            return subprocess.Popen(
                cmd, cwd=self.spec.path.parent, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start node {node.id!r} ({' '.join(cmd)}): {exc}") from exc

    def _follow(self, proc: NodeProcess) -> None:
        proc.reader = threading.Thread(
            target=self.relay.follow, args=(proc.spec.id, proc.process, proc.log_path, proc.tail),
            daemon=True, name=f"pinflow-relay-{proc.spec.id}")
        proc.reader.start()
