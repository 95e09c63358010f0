"""``Node``: a dataflow node's view of the run — events in, outputs out.

Created inside a process started by ``pinflow run`` (or, for a ``path: dynamic`` node, in a
process started by hand while the dataflow runs). Construction joins the run's zenoh mesh
(liveliness, run state, statistics), starts listening for its producers' links (the same-host
data plane, ``transport/links.py``), then waits until the launcher says every node is ready,
so no message sent afterwards is lost to a consumer that was not listening yet. Messages are
read from the links by the thread that calls ``next()``.

dora's Python API is here under dora's names (``next``, ``try_recv``, ``drain``,
``is_empty``, ``recv_async``, ``send_output``, ``send_output_raw``, ``log_*``,
``node_config``, ``dataflow_id``, ...): a dora node ports by changing its import. The
differences are documented in the README ("Coming from dora").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import numpy as np
import yaml
import zenoh

from pinflow.errors import (
    ClosedError,
    NodeEnvironmentError,
    StreamEnded,
    UnknownOutputError,
)
from pinflow.nodes import events, logbridge
from pinflow.nodes import metadata as wire_metadata
from pinflow.nodes.devices import Devices
from pinflow.nodes.droplog import DropLog
from pinflow.nodes.events import Event
from pinflow.nodes.exit_hook import before_threads_join
from pinflow.nodes.inbox import Inbox
from pinflow.nodes.raw_sample import SampleHandler
from pinflow.nodes.stats import StatsPublisher
from pinflow.nodes.timers import TickTimer
from pinflow.protocol import messages
from pinflow.protocol.keys import RunKeys, last_part
from pinflow.protocol.messages import TensorLayout
from pinflow.protocol.stats import NodeStats, OutputStats, PoolReport, Reporter
from pinflow.protocol.wiring import ENV_VAR, Wiring
from pinflow.spec import InputSpec, NodeSpec
from pinflow.transport import codec, dynamic
from pinflow.transport.auth import ConsumerKeys, ProducerKeys
from pinflow.transport.channel import OutputChannel, PoolOptions, resync_consumer
from pinflow.transport.inbound import Inbound, Incoming
from pinflow.transport.liveness import LauncherWatch, NodeLock, PeerWatch
from pinflow.transport.malformed import Malformed
from pinflow.transport.pool import Loan
from pinflow.transport.receiver import SlotReceiver
from pinflow.transport.session import open_session

log = logging.getLogger("pinflow.node")

# A crashed producer's liveliness token can vanish before its last in-flight messages are
# handled; wait this long before closing its consumers' inputs so none are cut off.
_CLOSE_GRACE_S = 0.2
_PEER_WAIT_S = 10.0
_RESTART_PEER_WAIT_S = 3.0

launcher_lost = False
"""Set once a node of this process stopped with LAUNCHER_LOST: the process then exits with
``pinflow.runtime.child.LAUNCHER_LOST_EXIT``, so a launcher that is in fact alive (its run lock was
removed behind its back) reports the node as failed instead of counting a silent exit 0."""

RECV_TIMEOUT_ERROR = "Timeout event stream error: Receiver timed out"
"""The ``error`` of the ERROR event ``recv_async(timeout)`` returns on a timeout (dora's)."""
_LEVEL_NAMES = {"error": "ERROR", "warn": "WARNING", "warning": "WARNING", "info": "INFO",
                "debug": "DEBUG", "trace": "TRACE"}


def _wiring_for(node_id: str | None, daemon_port: int | None) -> tuple[Wiring, list[str]]:
    """The wiring of this process, and what to say about the constructor's arguments.

    Started by ``pinflow run`` (``PINFLOW_NODE`` set): that wiring; a ``node_id`` that
    differs is ignored, as dora ignores it under ``dora start`` (node-hub nodes pass a
    default name of their own). Started by hand with a ``node_id``: the dynamic node of
    that id in the running dataflow that has one.
    """
    said = []
    if daemon_port is not None:
        said.append(f"daemon_port={daemon_port} is ignored: pinflow nodes find their run "
                    f"through {ENV_VAR} or, for dynamic nodes, the run's folder")
    if os.environ.get(ENV_VAR) or node_id is None:
        wiring = Wiring.from_env()
        if node_id is not None and node_id != wiring.spec.id:
            said.append(f"ignoring node id {node_id!r} passed to Node(): this process is node "
                        f"{wiring.spec.id!r} of the dataflow (pinflow run started it)")
        return wiring, said
    return dynamic.find(node_id), said


class _RestartCount(int):
    """An int that can be called too: pinflow reads ``node.restart_count``, dora calls
    ``node.restart_count()``."""

    def __call__(self) -> int:
        return int(self)



@functools.lru_cache(maxsize=64)
def _tensor_layout(dtype: Any, shape: tuple[int, ...] | int) -> tuple[TensorLayout, int]:
    """``codec.tensor_layout`` for ``output_buffer`` arguments (a producer loans the same
    shape over and over: checked once)."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return codec.tensor_layout(dtype, dims)


MetadataJson = Callable[[str, Any], tuple[Any, bytes]]
"""``(output id, metadata) -> (metadata as it travels, its JSON)`` (``Node._metadata_json``)."""


class _LoanBlock:
    """``with node.output_buffer(...) as array``: loan on entry, publish on a clean exit,
    give the slot back unsent on an exception."""

    __slots__ = ("_channel", "_layout", "_loan", "_metadata", "_nbytes", "_pinned",
                 "_to_json")

    def __init__(self, channel: OutputChannel, layout: TensorLayout, nbytes: int,
                 metadata: dict[str, Any] | None, pinned: bool, to_json: MetadataJson) -> None:
        self._channel, self._layout, self._nbytes = channel, layout, nbytes
        self._metadata, self._pinned, self._to_json = metadata, pinned, to_json
        self._loan: Loan | None = None

    def __enter__(self) -> np.ndarray | None:
        loan = self._loan = self._channel.loan(self._nbytes, pinned=self._pinned)
        if loan is None:
            return None
        return codec.tensor_view(self._layout, loan.array)  # not the pool's own slot view

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        loan, self._loan = self._loan, None
        if loan is None:
            return
        channel = self._channel
        if exc_type is not None:
            channel.cancel(loan)
            return
        try:  # converted now, not on entry: the block may fill ``metadata``
            metadata, raw = self._to_json(channel.output_id, self._metadata)
        except BaseException:
            channel.cancel(loan)
            raise
        channel.publish(loan, self._layout, metadata, meta_json=raw)


class Node:
    """A running node. Iterate it for events; call :meth:`send_output` to publish.

    ``for event in node`` yields INPUT and INPUT_CLOSED events in arrival order and ends
    after STOP (``MANUAL``, or ``ALL_INPUTS_CLOSED`` once every input is closed).
    ``next(timeout)`` returns ``None`` on timeout and after the end.

    ``Node()`` or ``Node("id")`` in a process ``pinflow run`` started (the id is then
    ignored, with a note); ``Node("id")`` in a process started by hand joins the running
    dataflow as its dynamic node ``id`` (``path: dynamic`` in the YAML).
    """

    def __init__(self, node_id: str | None = None, daemon_port: int | None = None, *,
                 wiring: Wiring | None = None) -> None:
        said: list[str] = []
        if wiring is None:
            wiring, said = _wiring_for(node_id, daemon_port)
        self._wiring = wiring
        self._spec: NodeSpec = self._wiring.spec
        logbridge.install(self._spec.id)
        for text in said:
            self.log(text)
        if not self._wiring.consumer_secret:
            raise NodeEnvironmentError(
                f"node {self._spec.id!r}: {ENV_VAR} carries no consumer secret; start the node "
                "with `pinflow run` (the launcher makes one per node and run)")
        self._keys = RunKeys(self._wiring.run_id)
        self._inbox = Inbox(self._spec.inputs)
        self._lock = self._inbox.cond  # also guards the peer and run state below
        self._closed = False
        self._alive_peers: set[str] = set()
        self._alive_now: frozenset[str] = frozenset()
        self._gone_peers: set[str] = set()
        self._gone_producers: list[tuple[str, bool]] = []
        """Producers reported gone (and whether to close their inputs), for ``_pump``."""
        """Peers the launcher declared gone for good: nobody waits for them to join."""
        self._state: set[str] = set()
        self._outputs: dict[str, OutputChannel] = {}
        self._devices = Devices(self._spec.id, self._spec.inputs,
                                lambda text: self.log(text, level="warning"))
        self._declared: list[Any] = []
        self._warned_keys: set[tuple[str, str]] = set()
        self._malformed = Malformed(f"node {self._spec.id}", log)
        self._consumer_keys = ConsumerKeys(self._spec.id, self._wiring.consumer_secret)
        self._stats: StatsPublisher | None = None
        # Held for the process's whole life: peers reclaim our slots or close our outputs
        # only once the kernel dropped it, never because a pause outlasted the zenoh lease.
        self._alive_lock = NodeLock(self._wiring.run_id, self._spec.id)
        self._alive_lock.acquire()
        self._peers = PeerWatch(self._wiring.run_id, self._peer_gone,
                                on_resumed=self._peer_resumed,
                                name=f"pinflow-peerwatch-{self._spec.id}")
        self._launcher = LauncherWatch(self._wiring.run_id, self._launcher_gone,
                                       name=f"pinflow-launcher-watch-{self._spec.id}")
        try:
            self._session = open_session(listen=self._wiring.listen,
                                         connect=self._wiring.connect)
        except BaseException:
            self._peers.close()
            self._alive_lock.release()
            raise
        self._receiver = SlotReceiver(self._session, self._keys, self._spec.id,
                                      self._consumer_keys,
                                      writable_mappings=self._devices.writable_mappings)
        self._receiver.on_map.append(self._devices.mapped)
        self._receiver.on_unmap.append(self._devices.forget)
        self._inputs_of: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        """(producer, output) -> the inputs it feeds."""
        for spec in self._spec.inputs:
            if not spec.is_timer:
                self._inputs_of[(spec.source_node, spec.source_output)].append(spec.name)
        try:
            self._inbound = Inbound(self._keys, self._spec.id, self._consumer_keys,
                                    self._receiver, self._malformed, self._inputs_of)
        except BaseException:
            self._peers.close()
            self._receiver.close()
            self._devices.close()
            self._session.close()
            self._alive_lock.release()
            raise
        self._inbox.feed(self._pump, self._inbound)
        try:
            self._join()
        except BaseException:
            self._peers.close()
            self._inbound.close()
            self._receiver.close()
            self._devices.close()
            self._session.close()
            self._alive_lock.release()
            raise
        if self._wiring.joins:
            # A dynamic node joins a running flow, like a restarted node: wait (briefly)
            # until its peers linked to it, or its first messages would reach nobody.
            self._wait_for(self._peers_joined, _RESTART_PEER_WAIT_S, required=False)
        self._drops = DropLog(lambda text: self.log(text, level="warning"),
                              {i.name: str(i.queue_policy) for i in self._spec.inputs})
        if self._stats is not None:
            self._stats.on_sample.append(self._on_stats_sample)
        # A node that simply returns from main() leaves its session open: close it before
        # the interpreter waits for zenoh's threads (see exit_hook).
        before_threads_join(self.close)

    # -- identity -------------------------------------------------------------------------
    @property
    def malformed(self) -> int:
        """Messages refused because they were malformed or forged (logged and dropped)."""
        return self._malformed.count

    @property
    def id(self) -> str:
        """This node's id in the dataflow."""
        return self._spec.id

    @property
    def run_id(self) -> str:
        """Unique id of this run of the dataflow."""
        return self._wiring.run_id

    @property
    def restart_count(self) -> int:
        """How many times the launcher restarted this node before this process (0 at first).
        Also callable, as dora's ``node.restart_count()``."""
        return _RestartCount(self._wiring.restarts)

    def is_restart(self) -> bool:
        """This process follows a restart (dora's name)."""
        return self._wiring.restarts > 0

    def dataflow_descriptor(self) -> dict[str, Any]:
        """The dataflow YAML as a plain dict (as dora's ``dataflow_descriptor()``)."""
        with open(self._wiring.dataflow, encoding="utf-8") as fh:
            return yaml.safe_load(fh)

    def dataflow_id(self) -> str:
        """The run's id (dora's name; pinflow's is ``run_id``)."""
        return self.run_id

    def node_config(self) -> dict[str, Any]:
        """This node's inputs and outputs as dora's ``node_config()`` gives them: inputs
        ``name -> "node/output"`` (a mapping with ``source``, ``queue_size`` and
        ``queue_policy`` where those differ from the defaults), outputs as a sorted list."""
        inputs: dict[str, Any] = {}
        for spec in self._spec.inputs:
            default = InputSpec(name=spec.name, source=spec.source)
            if (spec.queue_size, spec.queue_policy) == (default.queue_size,
                                                         default.queue_policy):
                inputs[spec.name] = spec.source
            else:
                inputs[spec.name] = {"source": spec.source, "queue_size": spec.queue_size,
                                     "queue_policy": str(spec.queue_policy)}
        return {"inputs": inputs, "outputs": sorted(o.id for o in self._spec.outputs)}

    @staticmethod
    def timestamp() -> dt.datetime:
        """Now, as an aware UTC datetime (dora's ``timestamp()``; the clock of
        ``metadata["timestamp"]``)."""
        return dt.datetime.now(dt.timezone.utc)

    # -- set-up ---------------------------------------------------------------------------
    def _join(self) -> None:
        session, keys = self._session, self._keys
        for output in self._spec.outputs:
            consumers = self._wiring.consumers.get(output.id, [])
            options = PoolOptions.for_output(
                output, consumer_queue_sizes=[c.queue_size for c in consumers],
                pinned_budget=self._wiring.pinned_budget)
            consumer_ids = [c.node for c in consumers]
            self._outputs[output.id] = OutputChannel(
                session, keys, self.id, output.id, options,
                consumers=consumer_ids, alive=self._alive_snapshot,
                auth=ProducerKeys({c: self._wiring.consumer_keys[c] for c in consumer_ids}),
                malformed=self._malformed,
            )
        liveliness = session.liveliness()
        self._declared.append(
            liveliness.declare_subscriber(keys.alive_all(), self._on_alive, history=True)
        )
        self._declared.append(
            liveliness.declare_subscriber(keys.state_all(), self._on_state, history=True)
        )
        self._declared.append(
            liveliness.declare_subscriber(keys.launcher(), self._on_launcher, history=True)
        )
        self._declared.append(
            liveliness.declare_subscriber(keys.gone_all(), self._on_gone, history=True)
        )
        # Declared after the subscribers: a peer that sees this token also knows them.
        self._declared.append(liveliness.declare_token(keys.alive(self.id)))
        if self._wiring.restarts:
            # A restarted node joins a running flow: wait (briefly) until its peers linked
            # to it, or its first messages would reach no subscriber.
            self._wait_for(self._peers_joined, _RESTART_PEER_WAIT_S, required=False)
        else:
            self._wait_for(lambda: self._peers_joined() or self._started(),
                           _PEER_WAIT_S, required=False)
        self._declared.append(liveliness.declare_token(keys.ready(self.id)))
        if not self._wait_for(self._started, self._wiring.startup_timeout_s, required=True):
            raise NodeEnvironmentError(
                f"node {self.id!r}: the launcher did not start the run within "
                f"{self._wiring.startup_timeout_s:.0f} s"
            )
        # Producers linked to us and announced their pools while they joined: map them now,
        # so the first frames do not pay for it.
        self._pump()
        for spec in self._spec.inputs:
            if spec.timer_period_s is not None:
                timer = TickTimer(spec.name, spec.timer_period_s)
                self._inbox.add_timer(timer, functools.partial(self._tick_event, timer))
        stats_key = self._keys.stats(self.id)
        self._stats = StatsPublisher(
            lambda body: session.put(stats_key, body),
            Reporter(node=self.id, run=self.run_id, pid=os.getpid(),
                     restarts=self._wiring.restarts, machine=self._spec.machine),
            self._counters, self._inbox.take_latencies, self._inbox.take_waiting,
            occupancy=self._inbox.occupancy,
        )

    def _on_stats_sample(self) -> None:
        """Once a second, on the stats thread: say new drops; push on link backlogs."""
        self._drops.observe(self._inbox.snapshot())
        for channel in list(self._outputs.values()):
            channel.flush_backlog()

    def _peers_joined(self) -> bool:
        """Every peer is linked to us, or declared gone by the launcher (a node that died
        before it was ready never joins: waiting for it would only delay the start)."""
        return self._wiring.peers() - self._gone_peers <= self._alive_peers

    def _started(self) -> bool:
        return "running" in self._state or self._inbox.stopping

    def _wait_for(self, predicate: Any, timeout: float, *, required: bool) -> bool:
        """Wait for ``predicate`` (zenoh callbacks notify), meanwhile accepting producers'
        links and mapping the pools they announce."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            with self._lock:
                if predicate():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    if not required:
                        log.warning("node %s: peers %s not reachable yet", self.id,
                                    sorted(self._wiring.peers() - self._alive_peers
                                           - self._gone_peers))
                    return False
                self._lock.wait(min(left, 0.02))

    # -- links (the thread that calls next()) ---------------------------------------------
    def _pump(self) -> None:
        """Queue what the links brought: everything in it was checked when it was read
        (refusals are counted and logged there), so nothing queued can fail to build.
        Producers reported gone before this read are settled after it."""
        gone = None
        if self._gone_producers:
            with self._lock:
                gone, self._gone_producers = self._gone_producers, []
        for incoming in self._inbound.receive():
            names = self._inputs_of[incoming.source]
            if incoming.dropped:
                self._inbox.count_dropped(names, incoming.dropped)
            if incoming.end:
                self._inbox.close(names)
                if incoming.run_stopping:  # the link outran the launcher's STOP over zenoh
                    self._inbox.stop("MANUAL")
            elif incoming.holder is not None:
                # The pending message owns the holder: dropping it (overflow, STOP) or the
                # event built from it is what releases a shared slot.
                self._inbox.push(names, functools.partial(self._input_event, incoming))
        if gone:
            self._settle_gone_producers(gone)

    def _input_event(self, incoming: Incoming, name: str) -> Event:
        layout, holder = incoming.layout, incoming.holder
        segment, pinned = incoming.segment, incoming.pinned
        assert layout is not None and holder is not None

        def to_device(target: str, stream: Any) -> Any:
            return self._devices.delivery(target).deliver(
                holder, layout, segment=segment, pinned=pinned, stream=stream)

        return events.payload_event(
            name, layout, holder,
            metadata=wire_metadata.from_wire(incoming.metadata or {}, incoming.sent_ns),
            seq=incoming.seq, sent_ns=incoming.sent_ns, pinned=pinned,
            device=self._devices.by_input.get(name),
            to_device=to_device)

    # -- zenoh callbacks (zenoh threads; keep short) --------------------------------------
    def _on_alive(self, sample: zenoh.Sample) -> None:
        """A peer's token came or went. Gone only means unreachable: the peer watch reports
        it gone (``_peer_gone``) once its process really died, never after a mere pause."""
        node_id = last_part(sample.key_expr)
        if sample.kind == zenoh.SampleKind.PUT:
            # Settle a pending loss first: if the old process died, its slots are taken
            # back before anything is addressed to its successor.
            self._peers.back(node_id)
            for channel in self._outputs.values():
                channel.reach(node_id)  # link it now: its first message does not pay for it
            with self._lock:
                self._alive_peers.add(node_id)
                self._alive_now = frozenset(self._alive_peers)
                self._lock.notify_all()
            return
        with self._lock:
            self._alive_peers.discard(node_id)
            self._alive_now = frozenset(self._alive_peers)
            self._lock.notify_all()
        if node_id != self.id:  # zenoh may echo our own token's loss after a lease expiry
            self._peers.lost(node_id)

    def _peer_gone(self, node_id: str) -> None:
        """``node_id``'s process is gone (its liveness lock is free): take back the slots
        it held, and close the inputs it fed unless the launcher may restart it."""
        for channel in list(self._outputs.values()):
            channel.consumer_lost(node_id)
        if node_id not in self._wiring.restartable:
            timer = threading.Timer(_CLOSE_GRACE_S, self._close_inputs_from, (node_id,))
            timer.daemon = True
            timer.start()
        # else: the launcher may restart it; inputs close on its `gone` token

    def _peer_resumed(self, node_id: str, lost_at: float) -> None:
        """``node_id`` is back after a lost link, the same process: descriptors or releases
        that crossed the dead link may be lost, so ask it which of our slots it still holds
        and take back the others (on a thread of its own: it waits for the answer)."""
        channels = [c for c in self._outputs.values() if node_id in c.consumers]
        if channels:
            threading.Thread(target=resync_consumer, daemon=True,
                             args=(self._session, self._keys, node_id, channels, lost_at),
                             name=f"pinflow-resync-{node_id}").start()

    def _alive_snapshot(self) -> frozenset[str]:
        """The peers whose token we see (kept as one immutable set: every message asks)."""
        return self._alive_now

    def _close_inputs_from(self, node_id: str, *, for_good: bool = False) -> None:
        """Noted here, done by the reading thread after it read the links once more: what
        the producer wrote before it went is still in them and must not be overtaken."""
        with self._lock:
            close = for_good or node_id not in self._alive_peers
            self._gone_producers.append((node_id, close))
        self._inbox.wake()

    def _settle_gone_producers(self, gone: list[tuple[str, bool]]) -> None:
        for node_id, close in gone:
            if close:
                self._inbox.close(s.name for s in self._spec.inputs if s.source_node == node_id)
            self._receiver.producer_gone(node_id)

    def _on_gone(self, sample: zenoh.Sample) -> None:
        """The launcher will not restart this node again: close the inputs it fed."""
        if sample.kind == zenoh.SampleKind.PUT:
            node_id = last_part(sample.key_expr)
            with self._lock:
                self._gone_peers.add(node_id)
                self._lock.notify_all()
            self._peers.gone(node_id)
            self._close_inputs_from(node_id, for_good=True)

    def _on_state(self, sample: zenoh.Sample) -> None:
        state = last_part(sample.key_expr)
        with self._lock:
            if sample.kind == zenoh.SampleKind.PUT:
                self._state.add(state)
                if state == "stop":
                    self._inbox.stop("MANUAL")
            self._lock.notify_all()

    def _on_launcher(self, sample: zenoh.Sample) -> None:
        """The launcher's token vanished: stop only if the launcher really is gone (nobody
        holds the run lock). A pause of ours, or of the launcher, that outlasted the zenoh
        lease looks the same from here, and then the mesh comes back."""
        self._launcher.seen(sample.kind == zenoh.SampleKind.PUT)

    def _launcher_gone(self) -> None:
        global launcher_lost
        with self._lock:
            if self._inbox.stopping:
                return  # already stopping (STOP came first): nothing was lost
            self._inbox.stop("LAUNCHER_LOST")
            launcher_lost = True
        self.log(f"the launcher of run {self.run_id} is gone (its run lock is not held): "
                 "stopping with LAUNCHER_LOST", level="warning")

    # -- timers ---------------------------------------------------------------------------
    @staticmethod
    def _tick_event(timer: TickTimer, k: int, name: str) -> Event:
        wall_ns = timer.wall_ns(k)
        return events.make_event(
            events.INPUT, name, value=events.timer_value(),
            metadata={wire_metadata.TIMESTAMP: wire_metadata.utc_from_ns(wall_ns)}, seq=k,
            sent_ns=wall_ns)

    # -- receiving ------------------------------------------------------------------------
    def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or ``None`` on timeout and once the node's event stream ended."""
        return self._inbox.next(timeout)

    @property
    def ended(self) -> bool:
        """The event stream is over (STOP delivered, or every input closed): ``next()``
        returning ``None`` then means the end, not a timeout."""
        return self._inbox.ended

    def __iter__(self) -> Iterator[Event]:
        take = self._inbox.next
        while (event := take()) is not None:
            yield event

    # -- receiving, dora's other ways (all built on next() and ended) ----------------------
    def try_recv(self) -> Event | None:
        """The next event if one is waiting, else ``None`` (also after the end); never
        blocks, never raises."""
        return self.next(0)

    def is_empty(self) -> bool:
        """No event is waiting: ``try_recv()`` would return ``None``."""
        return not self._inbox.has_event()

    def drain(self) -> list[Event]:
        """Every event waiting now (``[]`` if none), without blocking.

        Raises ``StreamEnded`` (a ``RuntimeError``, as dora raises) once the stream has
        ended and nothing is left: a ``while True: node.drain()`` loop then stops instead of
        spinning.
        """
        if self.ended and not self._inbox.has_event():
            raise StreamEnded(f"node {self.id!r}: could not drain events: the event stream "
                              "has ended (its STOP was delivered)")
        drained = []
        while (event := self.next(0)) is not None:
            drained.append(event)
        return drained

    async def recv_async(self, timeout: float | None = None) -> Event | None:
        """The next event, awaited without blocking the event loop; ``None`` once the stream
        ended. On ``timeout`` (seconds) it returns dora's ERROR event (``type`` ERROR,
        ``error`` "Timeout event stream error: ..."), not ``None``: ``if event is None:
        break`` loops end only at the end. Cancelling it loses no event: the event is taken
        on the loop's thread, never by the helper thread that waits."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            event = self.next(0)
            if event is not None:
                return event
            if self.ended:
                return None
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return Event(kind=events.KIND, type=events.ERROR, error=RECV_TIMEOUT_ERROR)
            given_up = threading.Event()
            try:
                await loop.run_in_executor(None, self._inbox.wait_for_event, left, given_up)
            finally:
                given_up.set()
                self._inbox.wake()

    def merge_external_events(self, subscription: Any) -> None:
        """Not supported: dora merges only a ROS 2 subscription (``dora.Ros2Subscription``)
        into the event stream, and pinflow has no ROS 2 bridge."""
        raise NotImplementedError(
            f"merge_external_events({type(subscription).__name__}) is not supported by "
            "pinflow: dora merges only ROS 2 subscriptions and pinflow has no ROS 2 bridge; "
            "read the external source in a node of its own and send its messages as outputs")

    # -- sending --------------------------------------------------------------------------
    def send_output(self, output_id: str, data: Any, metadata: dict[str, Any] | None = None,
                    pinned: bool = False) -> bool:
        """Publish ``data`` on ``output_id`` to every consumer.

        ``data``: pyarrow array, numpy array, bytes-like or torch tensor; dtype and shape
        reach the receiver; dtypes no receiver could decode (``np.longdouble``, complex) are a
        ``PayloadError``. ``metadata``: a dict with string keys and JSON values, at most 32
        levels deep and 64 KiB as JSON (``messages.check_metadata``). Payloads of at least the
        output's ``shm_threshold`` (4 KiB) are copied once into a shared-memory slot; smaller
        ones travel inline. ``pinned=True`` puts the payload in a pinned pool that GPU
        consumers DMA from (see README). Returns ``False`` only when the output's pool was
        full and its YAML says ``on_full: drop``.
        """
        channel = self._channel(output_id)
        metadata, raw = self._metadata_json(output_id, metadata)
        return channel.send(codec.encode(data), metadata, pinned=pinned, meta_json=raw)

    def _metadata_json(self, output_id: str, metadata: Any) -> tuple[Any, bytes]:
        """``metadata`` as it travels and its JSON; ``PayloadError`` if it cannot. Flat
        metadata of plain values (the usual case) is taken as it is, in one pass."""
        raw = messages.flat_json(metadata) if type(metadata) is dict else None
        if raw is None:
            metadata = self._wire_metadata(output_id, metadata)
            raw = messages.metadata_json(metadata)
        return metadata, raw

    def _wire_metadata(self, output_id: str, metadata: Any) -> Any:
        """dora's metadata values (numpy scalars, bytes, datetimes) as JSON the header can
        carry (see ``pinflow.nodes.metadata``); one warning per key sent as a string."""
        def warn(key: str, text: str) -> None:
            if (output_id, key) not in self._warned_keys:
                self._warned_keys.add((output_id, key))
                self.log(f"output {output_id!r}: {text}", level="warning")

        return wire_metadata.to_wire(metadata, warn)

    def send_output_raw(self, output_id: str, data_length: int,
                        metadata: dict[str, Any] | None = None) -> SampleHandler:
        """dora's loan: a handler whose ``with`` block (or ``.send()``) sends ``data_length``
        bytes written in place into a shared-memory slot. Receivers get a flat ``UInt8``
        array. Same as ``output_buffer(output_id, data_length, np.uint8)``."""
        return SampleHandler(self.output_buffer(output_id, data_length, np.uint8,
                                                metadata=metadata))

    def output_buffer(self, output_id: str, shape: tuple[int, ...] | int,
                      dtype: Any = np.uint8, *, metadata: dict[str, Any] | None = None,
                      pinned: bool = False) -> contextlib.AbstractContextManager[Any]:
        """Loan a shared-memory slot as a writable array; it is sent when the block exits.

        ``with node.output_buffer("image", (1080, 1920, 4)) as frame: decode_into(frame)``
        writes the payload in place (zero copies). ``metadata`` may be filled inside the
        block. An exception inside the block returns the slot unsent. Do not keep the array
        after the block: consumers may be reading it. Yields ``None`` (nothing is sent) when
        the pool is full and the output says ``on_full: drop``.
        """
        channel = self._channel(output_id)
        try:
            layout, nbytes = _tensor_layout(dtype, shape)
        except TypeError:  # unhashable (a list shape): not cached
            layout, nbytes = _tensor_layout.__wrapped__(dtype, shape)
        return _LoanBlock(channel, layout, nbytes, metadata, pinned, self._metadata_json)

    def _channel(self, output_id: str) -> OutputChannel:
        if self._closed:
            raise ClosedError(f"node {self.id!r} is closed")
        channel = self._outputs.get(output_id)
        if channel is None:
            raise UnknownOutputError(
                f"node {self.id!r} has no output {output_id!r} "
                f"(declared: {', '.join(self._outputs) or 'none'}); add it under "
                f"`outputs:` in {self._wiring.dataflow} (dora only warns and drops the "
                "message; pinflow refuses it, so no message is lost unnoticed)"
            )
        return channel

    def stats(self) -> dict[str, Any]:
        """Counters of this node: per input queue and per output channel and pool (plain
        dicts; the fields are those of ``pinflow.protocol.stats.NodeStats``)."""
        stats: dict[str, Any] = msgspec.to_builtins(self._counters())
        return stats

    def _counters(self) -> NodeStats:
        outputs = {}
        for output_id, channel in self._outputs.items():
            channel.settle()  # releases consumers sent since the producer last needed a slot
            pool = channel.pool
            outputs[output_id] = OutputStats(
                **msgspec.structs.asdict(channel.stats),
                pool=None if pool is None else PoolReport(
                    **msgspec.structs.asdict(pool.stats()), pinned=pool.pinned,
                    segment=pool.name))
        return NodeStats(inputs=self._inbox.snapshot(), outputs=outputs,
                         malformed=self._malformed.count,
                         segments_mapped=self._receiver.segments_mapped,
                         devices=self._devices.stats(), not_lent=self._receiver.not_lent)

    # -- logging --------------------------------------------------------------------------
    def log(self, *args: Any, level: str | None = None, target: str | None = None,
            fields: dict[str, Any] | None = None, **extra: Any) -> None:
        """Write one structured line (``LEVEL node: message key=value ...``) to stderr;
        the launcher prefixes it with the node id and keeps it in the node's log file.

        pinflow's order ``log("message", level="info", key=value)`` and dora's
        ``log("warn", "message", target=None, fields=None)`` both work: two or more
        positionals whose first is a level name are dora's. Levels: error, warn (warning),
        info, debug, trace; another word is logged as info, as dora does.
        """
        if len(args) >= 2 and str(args[0]).lower() in _LEVEL_NAMES:
            level, message, *rest = args
            if rest:
                target = rest.pop(0)
            if rest:
                fields = rest.pop(0)
        elif len(args) == 2:
            message, level = args
        elif len(args) == 1:
            message = args[0]
        else:
            raise TypeError(f"log() takes a message and a level, got {len(args)} positional "
                            "argument(s)")
        name = _LEVEL_NAMES.get(str(level or "info").lower(), "INFO")
        pairs = {**({"target": target} if target else {}), **(fields or {}), **extra}
        text = " ".join(f"{k}={v!r}" for k, v in pairs.items())
        print(f"{name} {self.id}: {message}{' ' + text if text else ''}",
              file=sys.stderr, flush=True)

    def log_error(self, message: str) -> None:
        self.log(message, level="error")

    def log_warn(self, message: str) -> None:
        self.log(message, level="warn")

    def log_info(self, message: str) -> None:
        self.log(message, level="info")

    def log_debug(self, message: str) -> None:
        self.log(message, level="debug")

    def log_trace(self, message: str) -> None:
        self.log(message, level="trace")

    # -- shutdown -------------------------------------------------------------------------
    def close(self) -> None:
        """Tell consumers the outputs ended, leave the mesh. Idempotent; runs at exit."""
        if self._closed:
            return
        self._closed = True
        if self._stats is not None:
            self._stats.close()
        self._drops.flush(self._inbox.snapshot())
        try:
            # A node the launcher may restart does not end its streams: its consumers wait
            # for it to come back, and close their inputs only if the launcher says it is
            # gone for good.
            send_eos = self._wiring.restart_policy == "never"
            with self._lock:
                run_stopping = "stop" in self._state
            for channel in self._outputs.values():
                channel.close(self._wiring.drain_timeout_s, send_eos=send_eos,
                              run_stopping=run_stopping)
            for declared in reversed(self._declared):
                declared.undeclare()
            self._peers.close()
            self._launcher.close()
            timers = self._inbox.remove_timers()
            self._inbound.close()
            for timer in timers:
                timer.close()
            self._receiver.close()  # unregisters segments from CUDA before unmapping
            self._devices.close()
        finally:
            self._session.close()
            self._alive_lock.release()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
