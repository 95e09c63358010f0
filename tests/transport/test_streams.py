"""Direct streams between gateways (transport/streams.py): real TCP sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from pinflow.protocol import messages, streams
from pinflow.transport import codec
from pinflow.transport.streams import (
    StreamListener,
    StreamSender,
    read_exactly,
    read_head,
    stream_host,
)


@pytest.mark.parametrize(("listen", "host"), [
    (["tcp/127.0.0.1:7447"], "127.0.0.1"),
    (["udp/10.0.0.1:7447", "tcp/0.0.0.0:7447", "tcp/[::1]:7447"], "::1"),
    (["tcp/my-host.local:7447"], "my-host.local"),
    (["tcp/0.0.0.0:7447", "tcp/[::]:7447"], None),
    ([], None),
])
def test_a_gateway_takes_streams_where_its_wire_listens_on_a_named_address(listen, host):
    assert stream_host(listen) == host


def test_streams_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("PINFLOW_WIRE_STREAMS", "0")
    assert stream_host(["tcp/127.0.0.1:7447"]) is None


def test_an_address_survives_the_key_it_travels_in():
    for host, port in (("127.0.0.1", 7447), ("::1", 1), ("my-host.local", 65535)):
        assert streams.parse_address_part(streams.address_part(host, port)) == (host, port)
    for bad in ("zz", "", streams.address_part("h", 0)[:-1], "7c3131"):
        assert streams.parse_address_part(bad) is None


class _Taker:
    """A listener whose streams are read into a list of (header, payload) frames."""

    def __init__(self, run_id: str = "run1", outputs=(("cam", "image"),)) -> None:
        self.frames: list[tuple[messages.Header, bytes]] = []
        self.refused: list[str] = []
        self.ended: list[BaseException | None] = []
        self.done = threading.Event()
        self.listener = StreamListener(
            "127.0.0.1", run_id, self._read,
            accepts=lambda hello: (hello.node, hello.output) in outputs,
            refuse=lambda where, why: (self.refused.append(str(why)), self.done.set()))

    def _read(self, hello: streams.Hello, sock: socket.socket) -> None:
        try:
            while (head := read_head(sock)) is not None:
                header, total = head
                self.frames.append((header, read_exactly(sock, total)))
            self.ended.append(None)
        except ConnectionError as exc:
            self.ended.append(exc)
        finally:
            self.done.set()

    def wait(self) -> None:
        assert self.done.wait(10), "the stream was neither read to its end nor refused"


def _header(seq: int, nbytes: int = 4) -> messages.Header:
    layout = codec.encode(np.zeros(nbytes, np.uint8)).layout
    return messages.Header.new("inline", seq, time.time_ns(), layout=layout,
                               metadata={"k": seq})


def test_frames_arrive_whole_and_in_order_straight_from_the_senders_buffer():
    taker = _Taker()
    sender = StreamSender(taker.listener.address, streams.hello("run1", "cam", "image"), "b")
    try:
        frames = [np.full(8 << 20, i, dtype=np.uint8) for i in range(3)] + [np.zeros(0, np.uint8)]
        for seq, frame in enumerate(frames):
            assert sender.send(streams.frame_head(_header(seq), frame.nbytes), frame)
        sender.close()
        taker.wait()
        assert [h.seq for h, _ in taker.frames] == [0, 1, 2, 3]
        for (header, payload), frame in zip(taker.frames, frames, strict=True):
            assert payload == frame.tobytes() and header.metadata == {"k": header.seq}
        assert taker.ended == [None] and taker.refused == [] and sender.broken == 0
    finally:
        taker.listener.close()


def test_a_message_cut_short_is_seen_as_cut_not_as_the_end():
    taker = _Taker()
    try:
        with socket.create_connection(taker.listener.address) as sock:
            sock.sendall(streams.hello("run1", "cam", "image"))
            sock.sendall(streams.frame_head(_header(0), 1 << 20) + b"x" * 1000)
        taker.wait()
        assert taker.frames == [] and isinstance(taker.ended[0], ConnectionError)
    finally:
        taker.listener.close()


@pytest.mark.parametrize(("first", "why"), [
    (streams.hello("other-run", "cam", "image"), "for run 'other-run'"),
    (streams.hello("run1", "cam", "depth"), "cam/depth is no output this host takes"),
    (streams.PREFIX.pack(5, 0) + b"hello", "stream hello is not JSON"),
    (streams.PREFIX.pack(10_000, 0), "is no hello"),
    (streams.PREFIX.pack(2, 8) + b"{}", "is no hello"),
])
def test_a_stream_that_does_not_name_this_run_and_an_imported_output_is_refused(first, why):
    taker = _Taker()
    try:
        with socket.create_connection(taker.listener.address) as sock:
            sock.sendall(first)
            taker.wait()
        assert taker.frames == [] and taker.ended == []
        assert len(taker.refused) == 1 and why in taker.refused[0], taker.refused
    finally:
        taker.listener.close()


def test_a_sender_whose_peer_is_gone_says_so_and_waits_before_trying_again():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    sender = StreamSender(address, streams.hello("run1", "cam", "image"), "b")
    head = streams.frame_head(_header(0), 4)
    assert not sender.send(head, b"abcd") and sender.broken == 1
    assert not sender.send(head, b"abcd") and sender.broken == 1, "no new attempt so soon"


def test_a_stream_the_receiver_hangs_up_breaks_at_the_sender():
    closed = threading.Event()

    def hang_up(hello: streams.Hello, sock: socket.socket) -> None:
        closed.set()  # returning closes the connection

    listener = StreamListener("127.0.0.1", "run1", hang_up, accepts=lambda hello: True,
                              refuse=lambda where, why: None)
    sender = StreamSender(listener.address, streams.hello("run1", "cam", "image"), "b")
    try:
        frame = np.zeros(4 << 20, dtype=np.uint8)
        head = streams.frame_head(_header(0), frame.nbytes)
        sent = [sender.send(head, frame)]
        assert closed.wait(5)
        while sent[-1] and len(sent) < 50:
            sent.append(sender.send(head, frame))
        assert sent[-1] is False and sender.broken == 1
    finally:
        sender.close()
        listener.close()


def test_closing_a_listener_ends_the_streams_it_reads():
    taker = _Taker()
    sock = socket.create_connection(taker.listener.address)
    try:
        sock.sendall(streams.hello("run1", "cam", "image"))
        time.sleep(0.2)  # the hello was taken: a reader waits for the first frame
        taker.listener.close(timeout=5)
        assert taker.done.is_set() and taker.frames == []
    finally:
        sock.close()


def test_the_wait_before_trying_again_doubles_with_each_failure_in_a_row():
    now = [1000.0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    sender = StreamSender(address, streams.hello("run1", "cam", "image"), "b",
                          clock=lambda: now[0])
    waits = []
    for _ in range(8):
        assert not sender.send(b"", b"")
        waits.append(sender._retry_at - now[0])
        now[0] = sender._retry_at
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert sender.broken == 8
