"""Two hosts' gateways on real sessions: each host's private mesh on a unix socket, the wire
between them on TCP over 127.0.0.1, a real producer pool on host A and a real receiver on
host B. What crosses is bytes; what lands is a descriptor of B's own pool, on the link from
B's gateway to B's consumer (the same-host data plane)."""

from __future__ import annotations

import json
import logging
import queue
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zenoh

from pinflow import spec as spec_module
from pinflow.protocol import messages, streams, wire
from pinflow.protocol.keys import RunKeys, WireKeys
from pinflow.protocol.messages import TensorLayout
from pinflow.runtime.bridge import Bridge
from pinflow.spec import GATEWAY_ID
from pinflow.transport import codec
from pinflow.transport.auth import Keyring
from pinflow.transport.channel import OutputChannel, PoolOptions
from pinflow.transport.cleanup import RunLock
from pinflow.transport.inbound import Inbound, Incoming
from pinflow.transport.malformed import Malformed
from pinflow.transport.receiver import SlotReceiver
from pinflow.transport.session import make_run_dir, open_session, unix_endpoint
from pinflow.transport.wire import open_wire

FLOW = """
nodes:
  - id: producer
    path: p.py
    outputs: [{id: frames, slots: 4}]
  - id: consumer
    path: c.py
    machine: b
    inputs:
      frames: {source: producer/frames, queue_size: 3}
"""


def zenoh_callback_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What zenoh logged about exceptions raised in our callbacks (it logs and goes on)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("zenoh")
            and r.levelno >= logging.ERROR]


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Hosts:
    run: str
    local_a: zenoh.Session
    local_b: zenoh.Session
    wire_a: zenoh.Session
    bridge_a: Bridge
    bridge_b: Bridge
    producer: OutputChannel
    receiver: SlotReceiver
    arrived: queue.Queue[Incoming]
    """What B's consumer read from its link (a thread reads it, as a node's next() would)."""
    keyring_b: Keyring

    @property
    def keys_a(self) -> RunKeys:
        return RunKeys(self.run)

    @property
    def keys_b(self) -> RunKeys:
        return RunKeys(f"{self.run}-b")


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    """B's wire only connects: B takes no direct stream, messages cross over zenoh."""
    yield from _hosts(tmp_path, stream_host_b=None)


@pytest.fixture
def streamed(tmp_path: Path) -> Iterator[Hosts]:
    """B takes direct streams on 127.0.0.1 (as a host whose wire listens there would)."""
    yield from _hosts(tmp_path, stream_host_b="127.0.0.1")


def _hosts(tmp_path: Path, stream_host_b: str | None) -> Iterator[Hosts]:
    for name in ("p.py", "c.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "flow.yml").write_text(FLOW)
    dataflow = spec_module.load(tmp_path / "flow.yml")
    run = "g" + secrets.token_hex(5)
    locks = [RunLock(run), RunLock(f"{run}-b")]  # what each host's launcher holds
    for lock in locks:
        lock.acquire()
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    local_a = open_session(listen=[unix_endpoint(tmp_path / "a.sock")], connect=[])
    local_b = open_session(listen=[unix_endpoint(tmp_path / "b.sock")], connect=[])
    wire_a = open_wire(listen=[endpoint], connect=[])
    wire_b = open_wire(listen=[], connect=[endpoint])
    keyring_a, keyring_b = Keyring(["producer", GATEWAY_ID]), Keyring(["consumer", GATEWAY_ID])
    bridge_a = Bridge(dataflow, None, run, local_a, wire_a, keyring_a)
    bridge_b = Bridge(dataflow, "b", run, local_b, wire_b, keyring_b,
                      stream_host=stream_host_b)
    bridge_a.start()
    bridge_b.start()
    output = dataflow.node("producer").outputs[0]
    producer = OutputChannel(
        local_a, RunKeys(run), "producer", "frames",
        PoolOptions.for_output(output, consumer_queue_sizes=[3], pinned_budget=None),
        consumers=[GATEWAY_ID], alive=lambda: {GATEWAY_ID},
        auth=keyring_a.producer("producer", [GATEWAY_ID]))
    keys_b = RunKeys(f"{run}-b")
    run_dir_b = make_run_dir(keys_b.run_id)  # where B's consumer listens for its links
    receiver = SlotReceiver(local_b, keys_b, "consumer", keyring_b.consumer("consumer"))
    inbound = Inbound(keys_b, "consumer", keyring_b.consumer("consumer"), receiver,
                      Malformed("consumer", logging.getLogger("pinflow.test")),
                      [("producer", "frames")])
    arrived: queue.Queue[Incoming] = queue.Queue()
    reading = threading.Event()
    reading.set()

    def read() -> None:
        while reading.is_set():
            inbound.wait(0.05)
            for incoming in inbound.receive():
                arrived.put(incoming)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # The consumer is alive on B's mesh: B's pool lends it slots.
    token = local_b.liveliness().declare_token(keys_b.alive("consumer"))
    try:
        yield Hosts(run, local_a, local_b, wire_a, bridge_a, bridge_b, producer, receiver,
                    arrived, keyring_b)
    finally:
        token.undeclare()
        reading.clear()
        reader.join(timeout=5)
        inbound.close()
        receiver.close()
        producer.close(drain_timeout=0.5, send_eos=False)
        bridge_a.close()
        bridge_b.close()
        for session in (wire_b, wire_a, local_b, local_a):
            session.close()
        for lock in locks:
            lock.release()
        shutil.rmtree(run_dir_b, ignore_errors=True)


def _frame(i: int) -> np.ndarray:
    return np.full((64, 64), i % 251, dtype=np.uint8)


def test_frames_cross_as_bytes_and_land_in_the_receiving_host_s_own_pool(hosts: Hosts):
    received: list[tuple[Incoming, bytes]] = []
    sent = 0
    deadline = time.monotonic() + 15
    while len(received) < 5:  # the first frames may go before the wire's routes exist
        assert time.monotonic() < deadline, "no frame crossed the wire"
        assert hosts.producer.send(codec.encode(_frame(sent)), {"i": sent})
        sent += 1
        try:
            incoming = hosts.arrived.get(timeout=0.1)
        except queue.Empty:
            continue
        assert incoming.holder is not None and incoming.segment is not None, "a slot of B's"
        received.append((incoming, incoming.holder.tobytes()))
        assert incoming.segment.name.startswith(f"pinflow-{hosts.run}-b.producer.frames."), (
            "B's consumers read B's own pool, named like the producer's")
        incoming.holder = None  # the slot goes back
    for incoming, payload in received:
        i = incoming.metadata["i"]
        assert incoming.seq == i, "the producer's sequence numbers"
        assert incoming.layout == TensorLayout("|u1", [64, 64])
        assert payload == _frame(i).tobytes()
    assert [h.seq for h, _ in received] == sorted(h.seq for h, _ in received)
    _until(lambda: hosts.bridge_a.exporters[0].sent >= 5)
    (exported,) = [line for line in hosts.bridge_a.summary() if "exported" in line]
    assert exported.startswith("wire: exported producer/frames: ")


def test_tokens_and_statistics_are_mirrored_between_the_hosts(hosts: Hosts, caplog):
    alive_on_b = hosts.keys_b.alive("producer")

    def seen_on_b() -> bool:
        return bool(list(hosts.local_b.liveliness().get(alive_on_b, timeout=1.0)))

    # Tokens of nodes this dataflow does not have, even with names no run key may hold,
    # are not mirrored (and raise nothing in the callback).
    wire = WireKeys(hosts.run)
    strays = [hosts.wire_a.liveliness().declare_token(f"{wire.root}/node/alive/{name}")
              for name in ("stranger", "a.b", "consumer")]
    strays.append(hosts.wire_a.liveliness().declare_token(f"{wire.root}/state/a.b"))
    hosts.wire_a.put(f"{wire.root}/stats/a.b", b"{}")
    token = hosts.local_a.liveliness().declare_token(hosts.keys_a.alive("producer"))
    _until(seen_on_b)
    token.undeclare()
    _until(lambda: not seen_on_b())
    for stray in strays:
        stray.undeclare()
    mirrored = [str(reply.ok.key_expr) for reply in hosts.local_b.liveliness().get(
        f"{hosts.keys_b.root}/alive/*", timeout=1.0) if reply.ok is not None]
    assert mirrored == [hosts.keys_b.alive("consumer")], "only B's own consumer is alive on B"

    forwarded: queue.Queue = queue.Queue()
    subscriber = hosts.local_a.declare_subscriber(hosts.keys_a.stats("consumer"),
                                                  lambda s: forwarded.put(s.payload.to_bytes()))
    try:
        body = json.dumps({"node": "consumer"}).encode()  # the bridge forwards bytes as they are
        deadline = time.monotonic() + 10
        while forwarded.empty():
            assert time.monotonic() < deadline, "statistics of B's node never reached A"
            hosts.local_b.put(hosts.keys_b.stats("consumer"), body)
            time.sleep(0.1)
        assert forwarded.get() == body
    finally:
        subscriber.undeclare()
    assert not zenoh_callback_errors(caplog)


def test_a_descriptor_arriving_over_the_wire_is_refused_and_counted(hosts: Hosts, caplog):
    """Descriptors name memory of one host: one on the wire is forged or a bug."""
    forged = messages.Header.new("shm", 1, 2, layout=TensorLayout("|u1", [4]),
                                 slot=messages.SlotRef("pinflow-x.producer.frames.0a", 0,
                                                       4096, 4, 1, frozenset({"_wire"})))
    key = WireKeys(hosts.run).data("producer", "frames")
    deadline = time.monotonic() + 10
    while hosts.bridge_b.malformed.count == 0:
        assert time.monotonic() < deadline, "the importer never saw the forged descriptor"
        hosts.wire_a.put(key, b"", attachment=wire.first(forged, 0))
        time.sleep(0.1)
    assert hosts.arrived.empty(), "nothing was republished on B"
    assert any("a descriptor arrived over the wire" in r.getMessage() for r in caplog.records)


def test_the_end_of_a_stream_crosses_and_is_signed_again_for_the_receiving_host(hosts: Hosts):
    """On B the end comes on the link from B's gateway, which B's consumer took only because
    its first frame was signed with B's keys (``Inbound`` refuses any other link)."""
    # Wait until the data path carries frames, then end the stream.
    deadline = time.monotonic() + 15
    while hosts.arrived.empty():
        assert time.monotonic() < deadline, "no frame crossed the wire"
        hosts.producer.send(codec.encode(_frame(0)), None)
        time.sleep(0.05)
    _end_and_see_it_on_b(hosts)


def _end_and_see_it_on_b(hosts: Hosts) -> None:
    """Close the producer's output; B's consumer sees the end of it (after what came before)."""
    hosts.producer.close(drain_timeout=0.5, send_eos=True)
    while True:
        incoming = hosts.arrived.get(timeout=10)
        incoming.holder = None
        if incoming.end:
            break
    assert incoming.source == ("producer", "frames")


def _wire_put(hosts: Hosts, payload: bytes, attachment: bytes) -> None:
    hosts.wire_a.put(WireKeys(hosts.run).data("producer", "frames"), payload,
                     attachment=attachment)


def _put_message(hosts: Hosts, seq: int, payload: bytes, *, parts: int | None = None) -> None:
    """Put ``payload`` on the wire as the producer's gateway would, part by part; ``parts``
    stops after that many (a link lost mid-message)."""
    total = len(payload)
    header = messages.Header.new("inline", seq, time.time_ns(),
                                 layout=TensorLayout("|u1", [total]), metadata={"i": seq})
    offsets = list(range(0, max(total, 1), wire.PART_BYTES))[:parts]
    for offset in offsets:
        attachment = (wire.first(header, total) if offset == 0
                      else wire.later(seq, offset, total))
        _wire_put(hosts, payload[offset:offset + wire.PART_BYTES], attachment)


def _wait_for_route(hosts: Hosts) -> int:
    """Put small messages until one lands on B (the wire's routes take a moment); returns the
    next sequence number to use."""
    deadline = time.monotonic() + 15
    seq = 0
    while hosts.arrived.empty():
        assert time.monotonic() < deadline, "no message crossed the wire"
        _put_message(hosts, seq, bytes(16))
        seq += 1
        time.sleep(0.05)
    time.sleep(0.2)
    while not hosts.arrived.empty():
        hosts.arrived.get()
    return seq


def _big(seq: int) -> bytes:
    """A message of three parts, the last one short, every byte telling where it is."""
    size = 2 * wire.PART_BYTES + 4099
    return ((np.arange(size, dtype=np.uint64) * 7 + seq) % 251).astype(np.uint8).tobytes()


def _landed(hosts: Hosts) -> tuple[Incoming, bytes]:
    incoming = hosts.arrived.get(timeout=10)
    assert incoming.holder is not None
    payload = incoming.holder.tobytes()
    incoming.holder = None  # the slot goes back
    return incoming, payload


def test_a_message_larger_than_a_part_lands_whole_in_one_slot(hosts: Hosts):
    """Frames cross in parts of at most PART_BYTES (so both gateways work while the link
    carries); the receiving host sees one message with the producer's sequence number."""
    frame = np.frombuffer(_big(3), np.uint8).reshape(-1, 1)
    deadline = time.monotonic() + 15
    while hosts.arrived.empty():
        assert time.monotonic() < deadline, "no frame crossed the wire"
        assert hosts.producer.send(codec.encode(frame), {"big": True})
        time.sleep(0.1)
    header, payload = _landed(hosts)
    assert header.segment is not None, "in a slot of B's pool"
    assert header.layout == TensorLayout("|u1", [frame.shape[0], 1])
    assert header.metadata == {"big": True} and payload == frame.tobytes()
    assert hosts.bridge_b.importers[0].incomplete == 0


def test_a_message_whose_last_parts_never_come_is_dropped_and_counted(hosts: Hosts):
    seq = _wait_for_route(hosts)
    importer = hosts.bridge_b.importers[0]
    dropped = importer.dropped
    _put_message(hosts, seq, _big(seq), parts=2)  # the link went before part 3
    _put_message(hosts, seq + 1, _big(seq + 1))
    header, payload = _landed(hosts)
    assert (header.seq, payload) == (seq + 1, _big(seq + 1)), "the next message is intact"
    assert importer.incomplete == 1 and importer.dropped == dropped + 1
    assert hosts.arrived.empty(), "nothing of the cut message was republished"
    # Its slot went back to the pool: slots keep coming for many more whole messages.
    for n in range(seq + 2, seq + 10):
        _put_message(hosts, n, _big(n))
        assert _landed(hosts)[0].seq == n


def test_a_part_that_does_not_fit_its_message_is_refused_and_its_slot_returned(hosts: Hosts):
    seq = _wait_for_route(hosts)
    total = 2 * wire.PART_BYTES + 10
    header = messages.Header.new("inline", seq, 0, layout=TensorLayout("|u1", [total]))
    before = hosts.bridge_b.malformed.count
    _wire_put(hosts, bytes(wire.PART_BYTES), wire.first(header, total))
    _wire_put(hosts, bytes(wire.PART_BYTES + 1), wire.later(seq, wire.PART_BYTES, total))
    _until(lambda: hosts.bridge_b.malformed.count == before + 1)
    for n in range(seq + 1, seq + 8):
        _put_message(hosts, n, _big(n))
        assert _landed(hosts)[0].seq == n


def _stream_route(hosts: Hosts) -> None:
    """Send frames until one arrives over B's stream; then empty what arrived."""
    exporter = hosts.bridge_a.exporters[0]
    deadline = time.monotonic() + 15
    while exporter.streamed == 0:
        assert time.monotonic() < deadline, "no frame went on a direct stream"
        hosts.producer.send(codec.encode(_frame(0)), None)
        time.sleep(0.05)
    _until(lambda: hosts.bridge_b.importers[0].streamed > 0)
    time.sleep(0.2)
    while not hosts.arrived.empty():
        hosts.arrived.get().holder = None


def test_on_a_direct_stream_frames_land_whole_and_nothing_goes_over_zenoh(streamed: Hosts):
    _stream_route(streamed)
    exporter, importer = streamed.bridge_a.exporters[0], streamed.bridge_b.importers[0]
    frame = np.frombuffer(_big(9), np.uint8).reshape(-1, 1)
    sent, on_streams, landed = exporter.sent, exporter.streamed, importer.streamed
    for _ in range(5):
        assert streamed.producer.send(codec.encode(frame), {"big": True})
        header, payload = _landed(streamed)
        assert header.segment is not None, "in a slot of B's pool"
        assert header.layout == TensorLayout("|u1", [frame.shape[0], 1])
        assert header.metadata == {"big": True} and payload == frame.tobytes()
    # (the exporter counts a message once its send returned, maybe after B landed it)
    _until(lambda: exporter.sent - sent == 5 and exporter.streamed - on_streams == 5)
    assert importer.streamed - landed == 5 and importer.incomplete == 0
    assert streamed.bridge_a.summary()[0].endswith(
        f"{exporter.sent} sent once to the wire ({exporter.streamed} on direct streams), "
        "0 dropped (link too slow)")


def test_while_a_stream_is_open_zenoh_copies_are_ignored_then_taken_again(streamed: Hosts):
    """A host whose stream is open ignores the output's zenoh copies (the producer's gateway
    puts them there for other hosts); once the stream is gone they count again."""
    _stream_route(streamed)
    importer = streamed.bridge_b.importers[0]
    received = importer.received
    _put_message(streamed, 10**6, bytes(16))
    time.sleep(0.5)
    assert streamed.arrived.empty() and importer.received == received
    streamed.bridge_b.listener.close()  # the stream ends (as when its sender is gone)
    _until(lambda: importer.streams_live == 0)
    _put_message(streamed, 10**6 + 1, bytes(16))
    assert _landed(streamed)[0].seq == 10**6 + 1


def test_a_message_cut_short_on_a_stream_is_dropped_counted_and_its_slot_reused(
        streamed: Hosts):
    _stream_route(streamed)
    importer = streamed.bridge_b.importers[0]
    frame = np.frombuffer(_big(6), np.uint8).reshape(-1, 1)
    assert streamed.producer.send(codec.encode(frame), None)  # B's pool grows to this size
    assert _landed(streamed)[1] == frame.tobytes()
    dropped = importer.dropped
    payload = _big(5)
    header = messages.Header.new("inline", 5, time.time_ns(),
                                 layout=TensorLayout("|u1", [len(payload)]))
    with socket.create_connection(streamed.bridge_b.listener.address, timeout=5) as sock:
        sock.sendall(streams.hello(streamed.run, "producer", "frames"))
        sock.sendall(streams.frame_head(header, len(payload)) + payload[:wire.PART_BYTES])
    _until(lambda: importer.incomplete == 1)
    assert importer.dropped == dropped + 1
    for _ in range(8):
        assert streamed.producer.send(codec.encode(frame), None)
        assert _landed(streamed)[1] == frame.tobytes()

    def busy() -> int:
        importer.channel.settle()  # take in the releases sent so far
        return sum(p.stats().in_use + p.stats().loaned for p in importer.channel.pools())

    _until(lambda: busy() == 0)  # the cut message's slot went back too


def test_the_end_of_an_output_crosses_on_its_stream(streamed: Hosts):
    _stream_route(streamed)
    _end_and_see_it_on_b(streamed)
    assert streamed.bridge_b.importers[0].streams_live == 1, "it came on the stream"


def test_an_address_the_host_cannot_listen_on_leaves_its_outputs_to_zenoh(tmp_path, caplog):
    """192.0.2.1 (TEST-NET-1) is no address of this machine: B says why it takes no stream,
    and its messages come over zenoh."""
    hosts = _hosts(tmp_path, stream_host_b="192.0.2.1")
    on_zenoh = next(hosts)
    try:
        assert on_zenoh.bridge_b.listener is None
        assert any("cannot take direct streams on 192.0.2.1" in r.getMessage()
                   for r in caplog.records)
        seq = _wait_for_route(on_zenoh)
        _put_message(on_zenoh, seq, _big(seq))
        assert _landed(on_zenoh)[1] == _big(seq)
        assert on_zenoh.bridge_b.importers[0].streamed == 0
    finally:
        hosts.close()


def test_when_a_stream_breaks_the_messages_go_over_zenoh(streamed: Hosts):
    """B's stream ends (its listener closed; B still announces it): A's gateway finds the
    stream broken, cannot reopen it, and sends over zenoh, which B takes again."""
    _stream_route(streamed)
    exporter, importer = streamed.bridge_a.exporters[0], streamed.bridge_b.importers[0]
    streamed.bridge_b.listener.close()
    _until(lambda: importer.streams_live == 0)
    landed_on_stream = importer.streamed
    deadline = time.monotonic() + 15
    while True:  # the messages sent while the break is found are lost (README says so)
        assert time.monotonic() < deadline, "nothing came over zenoh after the break"
        assert streamed.producer.send(codec.encode(_frame(7)), {"after": True})
        try:
            incoming = streamed.arrived.get(timeout=0.2)
        except queue.Empty:
            continue
        incoming.holder = None
        if incoming.metadata == {"after": True}:
            break
    assert importer.streamed == landed_on_stream, "it came over zenoh"
    assert exporter.sent > exporter.streamed
