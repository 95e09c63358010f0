"""Whom a producer addresses: a consumer whose zenoh token vanished but whose link still
stands is still there (links are hung up only when the consumer's process is gone)."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import numpy as np

from pinflow.testing import use_standin
from pinflow.testing.rig import make_rig
from pinflow.transport import codec, links, outbound


def test_a_linked_consumer_whose_token_vanished_still_gets_every_frame(tmp_path: Path):
    """Both sides paused past the zenoh lease see each other's token go for a while; the
    link between them never broke. Before: the producer counted the consumer unreachable
    and dropped every frame until the token came back (a paused producer's stream had a gap
    after it resumed)."""
    tokens: set[str] = {"gpu"}
    with use_standin() as runtime, make_rig(tmp_path, runtime, tokens_seen=tokens) as rig:
        rig.send(np.full(8192, 1, dtype=np.uint8))
        view, _, _ = rig.receive()
        assert int(view[0]) == 1
        del view
        tokens.clear()  # the producer no longer sees the consumer's token
        for value in (2, 3, 4):
            rig.send(np.full(8192, value, dtype=np.uint8))
            view, _, _ = rig.receive()
            assert int(view[0]) == value and int(view[-1]) == value
            del view
        assert rig.channel.stats.unreachable == 0
        rig.channel.consumer_lost("gpu")  # its process is really gone: the link is hung up
        rig.send(np.full(8192, 5, dtype=np.uint8))
        assert rig.channel.stats.unreachable == 1, "with no token and no link: counted"


def _link_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "cannot open a link" in r.getMessage()]


def test_a_consumer_that_cannot_be_reached_is_warned_about_unless_it_closed_its_link(
        tmp_path: Path, caplog, monkeypatch):
    """A consumer whose socket file stays but refuses (its process crashed) is worth a
    warning: its frames are lost. One that removed its socket file closed its end on
    purpose (it ended, restarts, or the run is stopping), and a normal stop of the camera
    dataflow printed the warning for it, even after the producer was told of the stop
    (the nodes see the stop at different moments, we infer). Counted either way."""
    caplog.set_level(logging.DEBUG, logger="pinflow")
    monkeypatch.setattr(outbound, "UNREACHABLE_LOG_INTERVAL_S", 0.0)  # every time, no rate limit
    with use_standin() as runtime, make_rig(tmp_path, runtime) as rig:
        rig.send(np.full(8192, 1, dtype=np.uint8))
        view, _, _ = rig.receive()
        del view
        rig.inbound.close()  # the consumer closed its end: its socket file is gone
        rig.send(np.full(8192, 2, dtype=np.uint8))
        assert _link_warnings(caplog) == []
        assert any("has closed its link" in r.getMessage() for r in caplog.records)
        lost = rig.channel.stats.dropped_link
        assert lost >= 1

        path = links.link_path(rig.channel._keys.run_id, "gpu")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(os.fspath(path))  # a crashed consumer's file: there, but nobody listens
        stale.close()
        try:
            rig.send(np.full(8192, 3, dtype=np.uint8))
            assert len(_link_warnings(caplog)) == 1
            assert rig.channel.stats.dropped_link == lost + 1
        finally:
            path.unlink()


def _read_all(rig, quiet_s: float = 0.3) -> int:
    """Messages the consumer reads until nothing more arrives for ``quiet_s``."""
    count, last = 0, time.monotonic()
    while time.monotonic() - last < quiet_s:
        got = rig.inbound.receive()
        count += len(got)
        if got:
            last = time.monotonic()
        else:
            rig.inbound.wait(0.05)
    return count


def test_frames_left_in_a_backlog_go_out_when_the_producer_falls_silent(tmp_path: Path):
    """A consumer that stopped reading filled its socket, so the producer kept the newest
    frames in the link's backlog, then sent nothing more. Frames go out of a backlog when the
    producer next writes or needs a slot, or when its statistics push them on
    (``flush_backlog``, a few times a second). The statistics used to do that as a side
    effect of a full snapshot ten times a second; without it the frames waited until the
    once-a-second report."""
    payload = codec.encode(np.full(3000, 7, dtype=np.uint8))  # inline: under shm_threshold
    with use_standin() as runtime, make_rig(tmp_path, runtime, shm_threshold=1 << 16) as rig:
        sent = 0
        while not rig.channel._links.queued() and sent < 10_000:  # the socket is full
            assert rig.channel.send(payload, None)
            sent += 1
        for _ in range(5):  # and a few wait in the backlog (it keeps up to 64)
            assert rig.channel.send(payload, None)
            sent += 1
        first = _read_all(rig)
        assert 0 < first < sent, "the backlog's frames are still with the producer"
        rig.channel.flush_backlog()
        assert first + _read_all(rig) == sent
        assert rig.channel.stats.dropped_link == 0
