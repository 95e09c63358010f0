"""One host's gateway between its private mesh and the wire, for one run.

Outputs that feed other hosts are read here once, as one more local consumer (id
``_wire``), and their bytes go on the wire once: zenoh delivers them to each subscribing
host's gateway, so a frame crosses to a host once however many of its nodes consume it.
On arrival a gateway writes the bytes into a host-local pool of its own and republishes a
descriptor under the producer's key, so consumers there cannot tell a remote producer from
a local one (``to_torch``, device delivery and pinned pools work the same). Liveliness
(alive, ready, gone) and run state are mirrored both ways so each host's nodes keep using
the tokens they already watch.

The bytes go on a direct stream (``transport/streams.py``) to each host that takes one,
straight from the slot into the other host's slot; over zenoh, in parts, to the others. A
host that has a live stream for an output ignores that output's zenoh messages.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import zenoh

from pinflow.errors import DescriptorError, PayloadError, PinflowError, SlotNotLent
from pinflow.protocol import messages, streams, wire
from pinflow.protocol.keys import (
    RUN_STATES,
    TOKEN_KINDS,
    RunKeys,
    WireKeys,
    last_part,
    local_run_id,
    parse_token,
)
from pinflow.spec import GATEWAY_ID, DataflowSpec, OutputSpec
from pinflow.transport.auth import Keyring
from pinflow.transport.channel import OutputChannel, PoolOptions, resync_consumer
from pinflow.transport.codec import Encoded, check_layout
from pinflow.transport.liveness import NodeLock, PeerWatch
from pinflow.transport.malformed import Malformed
from pinflow.transport.pool import Loan
from pinflow.transport.receiver import SlotReceiver
from pinflow.transport.streams import (
    StreamListener,
    StreamSender,
    discard,
    read_exactly,
    read_head,
    read_into,
)

log = logging.getLogger("pinflow.bridge")

MIRRORED = TOKEN_KINDS
"""The node tokens a gateway mirrors between its host's mesh and the wire."""


def _header(sample: zenoh.Sample) -> messages.Header:
    """The checked header of a data message; DescriptorError if it has none or a bad one."""
    if sample.attachment is None:
        raise DescriptorError("message without header")
    return messages.decode(sample.attachment.to_bytes())


class _Worker:
    """A bounded drop-oldest queue of messages drained by one thread, so zenoh callbacks never
    block on a slow link or a full pool.

    An item may be one part of a message (``starts`` marks a message's first part; its other
    parts follow it in the queue): ``size`` bounds the messages waiting, and dropping one
    drops all of its parts queued behind it. Parts of the message the thread is handling are
    never dropped here. ``keep`` items (end of stream) never displace or get displaced."""

    def __init__(self, name: str, size: int, handle: Callable[[Any], None]) -> None:
        self._items: collections.deque[tuple[bool, bool, Any]] = collections.deque()
        """(starts, keep, item)."""
        self._size = max(1, size)
        self._cond = threading.Condition()
        self._handle = handle
        self._closed = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def push(self, item: Any, *, starts: bool = True, keep: bool = False) -> None:
        with self._cond:
            if starts and not keep:
                while sum(1 for s, k, _ in self._items if s and not k) >= self._size:
                    self._drop_oldest()
            self._items.append((starts, keep, item))
            self._cond.notify()

    def _drop_oldest(self) -> None:
        """Drop the oldest waiting message and the parts that follow it (caller locks)."""
        first = next(i for i, (s, k, _) in enumerate(self._items) if s and not k)
        end = first + 1
        while end < len(self._items) and not self._items[end][0]:
            end += 1
        del self._items[first]  # deque: remove one at a time from the same position
        for _ in range(end - first - 1):
            del self._items[first]
        self.dropped += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items:
                    return
                item = self._items.popleft()[2]
            try:
                self._handle(item)
            except Exception:  # one bad message must not end the gateway
                log.exception("gateway: message not forwarded")
            del item

    def close(self, timeout: float = 5.0) -> bool:
        """Let the thread finish what is queued; False if it is still busy after
        ``timeout`` (then its state belongs to it, not to the caller)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _parts(total: int) -> range:
    """Offsets of the parts of a ``total``-byte message (one part if it is empty)."""
    return range(0, max(total, 1), wire.PART_BYTES)


def host_label(machine: str | None) -> str:
    """A host of the run as one key component (the launcher's has no machine name)."""
    return "launcher" if machine is None else f"m-{machine}"


class Exporter:
    """Reads one local output as consumer ``_wire`` and sends its bytes to the hosts that
    consume it: on a direct stream to each host that takes one, over zenoh to the others."""

    def __init__(self, bridge: Bridge, node_id: str, output_id: str, queue_size: int,
                 hosts: frozenset[str]) -> None:
        self.source = (node_id, output_id)
        self.sent = 0
        self.streamed = 0
        """Messages written on direct streams (one per message and host)."""
        self.hosts = hosts
        """The labels (:func:`host_label`) of the hosts that consume this output."""
        self._bridge = bridge
        self._addresses: dict[str, tuple[str, int]] = {}
        """Where each host that announced it takes this output's stream (zenoh's threads
        write it; the worker reads it when ``_addresses_changed``)."""
        self._addresses_lock = threading.Lock()
        self._addresses_changed = False
        self._senders: dict[str, StreamSender] = {}
        """The worker's own: one per host in ``_addresses``."""
        self._hello = streams.hello(bridge.wire_keys.run_id, node_id, output_id)
        self._publisher = bridge.wire.declare_publisher(
            bridge.wire_keys.data(node_id, output_id),
            congestion_control=zenoh.CongestionControl.BLOCK,
            reliability=zenoh.Reliability.RELIABLE,
        )
        self._worker = _Worker(f"pinflow-export-{node_id}-{output_id}", queue_size, self._send)
        self._streams_watch = bridge.wire.liveliness().declare_subscriber(
            bridge.wire_keys.stream_all(node_id, output_id), self._on_stream_token,
            history=True)
        self._subscriber = bridge.local.declare_subscriber(
            bridge.local_keys.data(node_id, output_id), self._on_data)

    def _on_stream_token(self, sample: zenoh.Sample) -> None:
        """A host says where it takes this output's stream (or no longer takes it)."""
        *_, host, part = str(sample.key_expr).split("/")
        address = streams.parse_address_part(part)
        if host not in self.hosts or address is None:
            return  # no host that consumes this output, or no address
        with self._addresses_lock:
            if sample.kind == zenoh.SampleKind.PUT:
                self._addresses[host] = address
            elif self._addresses.get(host) == address:
                del self._addresses[host]
            self._addresses_changed = True

    def _current_senders(self) -> list[StreamSender]:
        """The worker's senders, matched to the addresses announced now (looked at again
        only when a token came or went)."""
        if not self._addresses_changed:
            return list(self._senders.values())
        with self._addresses_lock:
            addresses = dict(self._addresses)
            self._addresses_changed = False
        for host, sender in list(self._senders.items()):
            if addresses.get(host) != sender.address:
                sender.close()
                del self._senders[host]
        for host, address in addresses.items():
            if host not in self._senders:
                self._senders[host] = StreamSender(address, self._hello, host)
        return list(self._senders.values())

    def _on_data(self, sample: zenoh.Sample) -> None:
        try:
            header = _header(sample)
            if header.kind == "eos":
                data_key = self._bridge.local_keys.data(*self.source)
                if not self._bridge.signer.eos_is_genuine(self.source[0], data_key, header.seq,
                                                          header.auth):
                    raise DescriptorError(f"end of stream not signed by {self.source[0]!r}")
                self._worker.push(("eos", header, None), keep=True)
                return
            if header.kind == "shm":
                holder, _ = self._bridge.receiver.read(self.source, header.slot)
            else:
                holder = np.frombuffer(sample.payload.to_bytes(), dtype=np.uint8)
            check_layout(header.layout, holder)
        except SlotNotLent:
            return  # lost with a broken link, not malformed: the receiver counted it
        except Exception as exc:  # whatever a peer sent, this callback must not raise
            self._bridge.malformed.refuse(sample.key_expr, exc)
            return
        self._worker.push(("data", header, holder))

    def _send(self, item: tuple[str, messages.Header, np.ndarray | None]) -> None:
        kind, header, holder = item
        if kind == "eos":
            for sender in self._current_senders():
                sender.send(streams.frame_head(header, 0))
            self._publisher.put(b"", attachment=wire.first(header, 0))
            return
        assert holder is not None
        wire_header = messages.Header.new("inline", header.seq, header.sent_ns,
                                         layout=header.layout, metadata=header.metadata)
        total = holder.nbytes
        streamed = set()
        senders = self._current_senders()
        if senders:
            head = streams.frame_head(wire_header, total)
            for sender in senders:
                if sender.send(head, holder):  # straight from the slot
                    streamed.add(sender.host)
        self.streamed += len(streamed)
        self.sent += 1
        if streamed >= self.hosts:
            return
        # Part by part: each part's copy out of the slot (the only copy on this side) overlaps
        # the link carrying the one before. The slot goes back once the last part is copied.
        for offset in _parts(total):
            attachment = (wire.first(wire_header, total) if offset == 0
                          else wire.later(header.seq, offset, total))
            self._publisher.put(holder[offset:offset + wire.PART_BYTES].tobytes(),
                                attachment=attachment)

    @property
    def dropped(self) -> int:
        return self._worker.dropped

    def close(self) -> None:
        self._subscriber.undeclare()
        self._streams_watch.undeclare()
        if self._worker.close():  # (a worker still sending owns its senders)
            for sender in self._senders.values():
                sender.close()
        self._publisher.undeclare()


class _Landing:
    """A message being landed part by part in a loaned slot (messages of several parts)."""

    def __init__(self, header: messages.Header, total: int, loan: Loan | None) -> None:
        self.header, self.total, self.loan = header, total, loan
        """``loan`` None: the pool was full; the parts are read and dropped."""
        self.next_offset = 0


class Importer:
    """Lands one remote output's bytes in a host-local pool, republished under the
    producer's own key for the consumers on this host."""

    def __init__(self, bridge: Bridge, node_id: str, output: OutputSpec,
                 consumers: list[tuple[str, int]], pinned_budget: int | None) -> None:
        self.source = (node_id, output.id)
        self._bridge = bridge
        self.received = 0
        self.dropped_full = 0
        self.incomplete = 0
        """Messages whose parts stopped coming (a link lost mid-message): never published."""
        self._pinned = output.pinned
        self._landing: _Landing | None = None
        self._land_lock = threading.Lock()
        """One message lands at a time, whichever way it came."""
        self.streams_live = 0
        """Direct streams open now: while there is one, zenoh's copies are ignored."""
        self.streamed = 0
        options = PoolOptions.for_output(
            output, consumer_queue_sizes=[size for _, size in consumers],
            pinned_budget=pinned_budget)
        readers = [c for c, _ in consumers]
        self.channel = OutputChannel(bridge.local, bridge.local_keys, node_id, output.id,
                                     options, consumers=readers, alive=bridge.alive_here,
                                     auth=bridge.keyring.producer(node_id, readers),
                                     malformed=bridge.malformed)
        size = max((s for _, s in consumers), default=1)
        self._worker = _Worker(f"pinflow-import-{node_id}-{output.id}", size, self._land)
        self._subscriber = bridge.wire.declare_subscriber(
            bridge.wire_keys.data(node_id, output.id), self._on_data)

    def _on_data(self, sample: zenoh.Sample) -> None:
        """Check the part and queue it as it came: its bytes are read on the worker, so this
        zenoh thread goes straight back to receiving the next part."""
        if self.streams_live:
            return  # this host gets the output on its stream (the zenoh copy is for others)
        try:
            if sample.attachment is None:
                raise DescriptorError("wire part without attachment")
            part, header = wire.decode(sample.attachment.to_bytes())
            if header is not None and header.kind == "shm":
                raise DescriptorError("a descriptor arrived over the wire")
        except DescriptorError as exc:
            self._bridge.malformed.refuse(sample.key_expr, exc)
            return
        if header is not None and header.kind == "eos":
            self._worker.push(("eos", part, header, None), keep=True)
        else:
            self._worker.push(("part", part, header, sample.payload),
                              starts=header is not None)

    def _land(self, item: tuple[str, wire.Part, messages.Header | None, Any]) -> None:
        with self._land_lock:
            self._land_part(item)

    def _land_part(self, item: tuple[str, wire.Part, messages.Header | None, Any]) -> None:
        kind, part, header, payload = item
        if kind == "eos":
            self._abandon()
            self.channel.close(send_eos=True)
            return
        if header is not None:
            self._abandon()
            if part.total <= wire.PART_BYTES:
                self._land_whole(header, payload.to_bytes())
                return
            self._landing = self._start(header, part.total)
            if self._landing is None:
                return
        landing = self._landing
        if landing is None or part.seq != landing.header.seq or (
                part.offset != landing.next_offset or part.total != landing.total):
            self._abandon()  # a part of a message whose start was lost or refused
            return
        size = len(payload)
        end = part.offset + size
        if end > part.total or (end < part.total and size != wire.PART_BYTES):
            self._landing = None
            self._refuse(landing, DescriptorError(
                f"wire part of {size} bytes at offset {part.offset} does not fit its "
                f"{part.total}-byte message"))
            return
        if landing.loan is not None:  # else the pool was full: the message is dropped
            np.copyto(landing.loan.array[part.offset:end],
                      np.frombuffer(payload.to_bytes(), np.uint8))
        landing.next_offset = end
        if end == part.total:
            self._landing = None
            self._finish(landing)

    def read_stream(self, sock: Any) -> None:
        """Land the messages of a direct stream as they come, each straight into a slot,
        until the stream ends (on the listener's thread for it)."""
        with self._land_lock:
            self.streams_live += 1
            self._abandon()  # a message half landed from zenoh: its rest will not come
        try:
            while (head := read_head(sock)) is not None:
                header, total = head
                with self._land_lock:
                    self._land_streamed(sock, header, total)
        except ConnectionError as exc:
            log.warning("gateway: the stream of %s/%s ended in the middle of a message: %s",
                        *self.source, exc)
        finally:
            with self._land_lock:
                self.streams_live -= 1

    def _land_streamed(self, sock: Any, header: messages.Header, total: int) -> None:
        """One message from a stream (caller holds the landing lock)."""
        if header.kind == "eos":
            if total:
                raise DescriptorError("an end of stream with bytes")
            self.channel.close(send_eos=True)
            return
        if header.kind != "inline" or header.layout is None:
            raise DescriptorError(f"a {header.kind!r} message on a stream")
        if self.channel.inline(total, pinned=self._pinned):  # as `send` will carry it here
            self._land_whole(header, read_exactly(sock, total))
            self.streamed += 1
            return
        landing = self._start(header, total)
        if landing is None or landing.loan is None:  # refused, or no room: counted there
            discard(sock, total)
            if landing is not None:
                self._count(False)
            return
        try:
            read_into(sock, memoryview(landing.loan.array)[:total])
        except BaseException:
            self.channel.cancel(landing.loan)
            self.incomplete += 1
            raise
        self.streamed += 1
        self._finish(landing)

    def _land_whole(self, header: messages.Header, payload: bytes) -> None:
        """A message that came in one part: sent on as any message (inline if it is small)."""
        assert header.layout is not None
        try:
            check_layout(header.layout, payload)
            sent = self.channel.send(Encoded(header.layout, memoryview(payload)),
                                     header.metadata, pinned=self._pinned,
                                     origin=(header.seq, header.sent_ns))
        except DescriptorError as exc:
            self._bridge.malformed.refuse("/".join(self.source), exc)
            return
        except PinflowError as exc:  # pool exhausted or closed: count it, keep going
            sent = False
            log.warning("gateway: %s/%s message not delivered here: %s", *self.source, exc)
        self._count(sent)

    def _start(self, header: messages.Header, total: int) -> _Landing | None:
        """A slot for a message of several parts (None: refused as malformed)."""
        try:
            loan = self.channel.loan(total, pinned=self._pinned)
        except PayloadError as exc:  # larger than this output's slots may be
            self._bridge.malformed.refuse("/".join(self.source), exc)
            return None
        except PinflowError as exc:  # pool exhausted or closed: count it, keep going
            log.warning("gateway: %s/%s message not delivered here: %s", *self.source, exc)
            loan = None
        return _Landing(header, total, loan)

    def _finish(self, landing: _Landing) -> None:
        """Every part is in the slot: check it as a whole and publish it."""
        if landing.loan is None:
            self._count(False)
            return
        header = landing.header
        try:
            # The loan is this gateway's own until published: nobody else writes it.
            check_layout(header.layout, landing.loan.array)
            self.channel.publish(landing.loan, header.layout, header.metadata,
                                 origin=(header.seq, header.sent_ns))
        except (DescriptorError, PinflowError) as exc:
            self._refuse(landing, exc)
            return
        self._count(True)

    def _refuse(self, landing: _Landing, exc: Exception) -> None:
        if landing.loan is not None:
            self.channel.cancel(landing.loan)
        self._bridge.malformed.refuse("/".join(self.source), exc)

    def _abandon(self) -> None:
        """Give up the message being landed (its remaining parts never came)."""
        landing, self._landing = self._landing, None
        if landing is None:
            return
        if landing.loan is not None:
            self.channel.cancel(landing.loan)
        self.incomplete += 1
        log.warning("gateway: %s/%s message %d arrived incomplete (%d of %d bytes); dropped",
                    *self.source, landing.header.seq, landing.next_offset, landing.total)

    def _count(self, sent: bool) -> None:
        if sent:
            self.received += 1
        else:
            self.dropped_full += 1

    @property
    def dropped(self) -> int:
        return self._worker.dropped + self.dropped_full + self.incomplete

    def close(self) -> None:
        self._subscriber.undeclare()
        if self._worker.close():  # a worker still landing a message owns its loan
            with self._land_lock:
                self._abandon()
        self.channel.close(drain_timeout=2.0, send_eos=False)


class Bridge:
    """Gateway of host ``machine`` (``None``: the launcher's host) for run ``run_id``."""

    def __init__(self, spec: DataflowSpec, machine: str | None, run_id: str,
                 local: zenoh.Session, wire: zenoh.Session, keyring: Keyring, *,
                 stream_host: str | None = None) -> None:
        self.spec, self.machine = spec, machine
        self.stream_host = stream_host
        """Where this host takes direct streams (``transport.streams.stream_host``); None:
        its imported outputs come over zenoh."""
        self.listener: StreamListener | None = None
        self.local, self.wire = local, wire
        self.local_keys = RunKeys(local_run_id(run_id, machine))
        self.wire_keys = WireKeys(run_id)
        self.here = {n.id for n in spec.nodes_on(machine)}
        self.elsewhere = {n.id for n in spec.nodes} - self.here
        """Nodes of other hosts: the only ones whose tokens come here from the wire."""
        self.keyring = keyring
        self.signer = keyring.consumer(GATEWAY_ID)
        self.malformed = Malformed("gateway", log)
        self.receiver = SlotReceiver(local, self.local_keys, GATEWAY_ID, self.signer)
        self.exporters: list[Exporter] = []
        self.importers: list[Importer] = []
        self._lock = threading.Lock()
        self._alive_here: set[str] = set()
        self._to_wire: dict[str, zenoh.LivelinessToken] = {}
        self._to_local: dict[str, zenoh.LivelinessToken] = {}
        self._declared: list[Any] = []
        # Local peers whose token vanished are gone only once their process died (see
        # pinflow.transport.liveness); the gateway itself holds a liveness lock like a node.
        self._peers = PeerWatch(self.local_keys.run_id, self._peer_gone,
                                on_resumed=self._peer_resumed,
                                name="pinflow-gateway-peerwatch")
        self._alive_lock = NodeLock(self.local_keys.run_id, GATEWAY_ID)

    @property
    def is_launcher_host(self) -> bool:
        return self.machine is None

    def alive_here(self) -> set[str]:
        with self._lock:
            return set(self._alive_here)

    def start(self) -> None:
        """Declare everything; call before the host's nodes start so none of their
        tokens or messages can be missed."""
        local_live, wire_live = self.local.liveliness(), self.wire.liveliness()
        self._declared.append(local_live.declare_subscriber(
            self.local_keys.token_all(), self._on_local_token, history=True))
        self._declared.append(wire_live.declare_subscriber(
            self.wire_keys.token_all(), self._on_wire_token, history=True))
        if self.is_launcher_host:
            self._declared.append(local_live.declare_subscriber(
                self.local_keys.state_all(), self._on_local_state, history=True))
            self._declared.append(self.wire.declare_subscriber(
                self.wire_keys.stats_all(), self._on_wire_stats))
        else:
            self._declared.append(wire_live.declare_subscriber(
                self.wire_keys.state_all(), self._on_wire_state, history=True))
            self._declared.append(self.local.declare_subscriber(
                self.local_keys.stats_all(), self._on_local_stats))
        self._open_data_paths()
        self._take_streams()
        if self.exporters:
            self._alive_lock.acquire()
            self._declared.append(local_live.declare_token(self.local_keys.alive(GATEWAY_ID)))

    def _open_data_paths(self) -> None:
        for node in self.spec.nodes:
            for output in node.outputs:
                readers, gateway_queue = self.spec.consumers_across(node.id, output.id,
                                                                    self.machine)
                if node.id in self.here and gateway_queue is not None:
                    hosts = frozenset(
                        host_label(self.spec.node(c).machine)
                        for c, _ in self.spec.consumers_of(node.id, output.id)
                        if self.spec.node(c).machine != self.machine)
                    self.exporters.append(Exporter(self, node.id, output.id, gateway_queue,
                                                   hosts))
                elif node.id not in self.here and readers:
                    self.importers.append(Importer(
                        self, node.id, output, [(c, i.queue_size) for c, i in readers],
                        self.spec.pinned_budget))

    def _take_streams(self) -> None:
        """Listen for direct streams of the outputs imported here, and say where."""
        if not self.importers or self.stream_host is None:
            return
        by_source = {i.source: i for i in self.importers}
        try:
            self.listener = StreamListener(
                self.stream_host, self.wire_keys.run_id,
                on_stream=lambda hello, sock: by_source[(hello.node, hello.output)].read_stream(
                    sock),
                accepts=lambda hello: (hello.node, hello.output) in by_source,
                refuse=self.malformed.refuse)
        except OSError as exc:
            log.warning("gateway: cannot take direct streams on %s (%s); this host's "
                        "imported outputs come over zenoh", self.stream_host, exc)
            return
        address = streams.address_part(*self.listener.address)
        for node_id, output_id in by_source:
            self._declared.append(self.wire.liveliness().declare_token(self.wire_keys.stream(
                node_id, output_id, host_label(self.machine), address)))

    # -- tokens -----------------------------------------------------------------------------
    def _on_local_token(self, sample: zenoh.Sample) -> None:
        """A token on this host's mesh: track who is alive here; mirror our nodes' tokens."""
        kind, node_id = parse_token(sample.key_expr)
        put = sample.kind == zenoh.SampleKind.PUT
        if kind == "alive" and node_id != GATEWAY_ID:
            if put:
                self._peers.back(node_id)
            with self._lock:
                (self._alive_here.add if put else self._alive_here.discard)(node_id)
            if not put:
                self._peers.lost(node_id)
        if kind in MIRRORED and node_id in self.here:
            self._mirror(self._to_wire, self.wire, self.wire_keys.token(kind, node_id), put)

    def _peer_gone(self, node_id: str) -> None:
        """A local node's process is gone: take back its slots in our pools, unmap its."""
        for importer in self.importers:
            importer.channel.consumer_lost(node_id)
        if node_id in self.here:
            self.receiver.producer_gone(node_id)

    def _peer_resumed(self, node_id: str, lost_at: float) -> None:
        """A local consumer is back after a lost link: settle the slots our pools lent it."""
        channels = [i.channel for i in self.importers if node_id in i.channel.consumers]
        if channels:
            threading.Thread(target=resync_consumer, daemon=True,
                             args=(self.local, self.local_keys, node_id, channels, lost_at),
                             name=f"pinflow-gateway-resync-{node_id}").start()

    def _on_wire_token(self, sample: zenoh.Sample) -> None:
        """A remote node's token: re-declare it on this host's mesh."""
        kind, node_id = parse_token(sample.key_expr)
        if kind not in MIRRORED or node_id not in self.elsewhere:
            return  # ours, a gateway's, or no node of this dataflow
        self._mirror(self._to_local, self.local, self.local_keys.token(kind, node_id),
                     sample.kind == zenoh.SampleKind.PUT)

    def _on_local_state(self, sample: zenoh.Sample) -> None:
        state = last_part(sample.key_expr)
        if state not in RUN_STATES:
            return  # no state of a run: nothing any host waits for
        self._mirror(self._to_wire, self.wire, self.wire_keys.state(state),
                     sample.kind == zenoh.SampleKind.PUT)

    def _on_wire_state(self, sample: zenoh.Sample) -> None:
        state = last_part(sample.key_expr)
        if state not in RUN_STATES:
            return
        self._mirror(self._to_local, self.local, self.local_keys.state(state),
                     sample.kind == zenoh.SampleKind.PUT)

    def _mirror(self, tokens: dict[str, zenoh.LivelinessToken], session: zenoh.Session,
                key: str, put: bool) -> None:
        with self._lock:
            if put and key not in tokens:
                tokens[key] = session.liveliness().declare_token(key)
            elif not put and key in tokens:
                tokens.pop(key).undeclare()

    # -- statistics -----------------------------------------------------------------------
    def _on_local_stats(self, sample: zenoh.Sample) -> None:
        node_id = last_part(sample.key_expr)
        if node_id in self.here:
            self.wire.put(self.wire_keys.stats(node_id), sample.payload.to_bytes())

    def _on_wire_stats(self, sample: zenoh.Sample) -> None:
        node_id = last_part(sample.key_expr)
        if node_id in self.elsewhere:
            self.local.put(self.local_keys.stats(node_id), sample.payload.to_bytes())

    def summary(self) -> list[str]:
        """One line per forwarded output: what crossed the wire from or to this host."""
        lines = [f"wire: exported {n}/{o}: {e.sent} sent once to the wire "
                 f"({e.streamed} on direct streams), {e.dropped} dropped (link too slow)"
                 for e in self.exporters for n, o in [e.source]]
        lines += [f"wire: imported {n}/{o}: {i.received} received and republished on this "
                  f"host ({i.streamed} from a direct stream), {i.dropped} dropped (gateway "
                  f"queue, pool full or cut off mid-message)"
                  for i in self.importers for n, o in [i.source]]
        return lines

    # -- shutdown ---------------------------------------------------------------------------
    def close(self) -> None:
        for exporter in self.exporters:
            exporter.close()
        if self.listener is not None:
            self.listener.close()
        for importer in self.importers:
            importer.close()
        for declared in reversed(self._declared):
            declared.undeclare()
        self._peers.close()
        with self._lock:
            for token in [*self._to_wire.values(), *self._to_local.values()]:
                token.undeclare()
            self._to_wire.clear()
            self._to_local.clear()
        self.receiver.close()
        self._alive_lock.release()
