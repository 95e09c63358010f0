"""What arrives in the same read as a link's first frame is judged by the limits the first
frame lifts, not by its own. Before: a producer's Hello and its first small message often
landed in one read; the message was refused as "larger than allowed (1024 + 0)" because the
link was not trusted yet, and the consumer lost it (CI: tests/test_dora_build.py, a dora
echo whose only message vanished)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np

from pinflow.protocol import frames
from pinflow.testing import use_standin
from pinflow.testing.rig import make_rig
from pinflow.transport import codec
from pinflow.transport.links import RECV_CHUNK, Link


def _frame(number: int, header: bytes, payload: bytes = b"") -> bytes:
    return frames.PREFIX.pack(len(header), len(payload), number) + header + payload


def test_a_link_returns_one_frame_until_it_is_trusted_then_the_rest():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    link = Link(ours, peer="test")
    try:
        big_header = b"h" * (frames.MAX_FIRST_HEADER_BYTES + 1)
        theirs.sendall(_frame(0, b"proof") + _frame(1, big_header, b"p" * 40)
                       + _frame(2, b"small", b"q"))
        time.sleep(0.05)  # all three frames are in the socket: one read takes them
        assert link.receive() == [(0, b"proof", b"")]
        link.trust()
        assert link.receive() == [(0, big_header, b"p" * 40), (0, b"small", b"q")]
    finally:
        link.close()
        theirs.close()


def test_frames_after_the_first_are_read_even_when_the_peer_already_hung_up():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * RECV_CHUNK)
    link = Link(ours, peer="test")
    try:
        first = _frame(0, b"proof")
        # exactly one full read, so the same receive() goes on reading and sees the end
        payload = b"x" * (RECV_CHUNK - len(first) - frames.PREFIX.size - len(b"last"))
        theirs.sendall(first + _frame(1, b"last", payload))
        theirs.close()
        time.sleep(0.05)
        assert link.receive() == [(0, b"proof", b"")]
        assert link.closed, "the end of the stream was seen in the same receive()"
        link.trust()
        assert link.receive() == [(0, b"last", payload)]
        assert link.receive() == []
    finally:
        link.close()


def test_a_links_frames_sent_before_it_was_ever_read_all_arrive(tmp_path: Path):
    """The producer connects, says Hello and sends small (inline) messages and a slot before
    the consumer reads anything: every one of them arrives, none is refused."""
    with use_standin() as runtime, make_rig(tmp_path, runtime) as rig:
        for value in (1, 2, 3):
            assert rig.channel.send(codec.encode(np.full(40, value, dtype=np.uint8)), None)
        rig.send(np.full(8192, 4, dtype=np.uint8))
        arrived = []
        deadline = time.monotonic() + 5.0
        while len(arrived) < 4 and time.monotonic() < deadline:
            arrived += [i for i in rig.inbound.receive() if i.holder is not None]
            rig.inbound.wait(0.05)
        assert [int(i.holder[0]) for i in arrived] == [1, 2, 3, 4]
        assert [i.holder.nbytes for i in arrived] == [40, 40, 40, 8192]
        assert rig.malformed.count == 0 and all(i.dropped == 0 for i in arrived)
        del arrived
