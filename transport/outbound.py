"""A producer output's links to its consumers on this host (``transport/links.py``).

The output's channel hands each message to the consumers it lends it to; this module gets it
there: it connects to a consumer's socket the first time it needs to (or as soon as the
consumer's token appears: :meth:`Outbound.reach`), says who it is (a :class:`~pinflow.
protocol.frames.Hello` with the MAC of the key the pair shares), announces the output's
pool so the consumer maps it before the first frame, and writes frames. What comes back,
the consumer's proof and its releases, is read by :meth:`Outbound.collect`: on the
producer's own thread when it needs a slot (``loan``), and by the stats thread once a
second; no thread of its own and no network callback.

A release counts only on a link whose consumer proved itself (its first frame back is a
:class:`~pinflow.protocol.frames.Welcome` with the pair's MAC over our nonce), and drops only
that consumer from the slot. A frame the consumer never gets (its backlog overflowed, its
link broke) is undone through ``on_undelivered``, so a slot lent with it is not lost.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterable

from pinflow.errors import DescriptorError
from pinflow.protocol import frames
from pinflow.protocol.keys import RunKeys
from pinflow.transport.auth import ProducerKeys
from pinflow.transport.links import Link, LinkBroken, connect, link_path
from pinflow.transport.malformed import Malformed

log = logging.getLogger("pinflow.transport")

UNREACHABLE_LOG_INTERVAL_S = 5.0

OnRelease = Callable[[str, str, list[tuple[int, int]]], None]
"""``(consumer, segment, [(slot index, generation), ...])``: a proven consumer is done."""
OnUndelivered = Callable[[str, str, int, int], None]
"""``(consumer, segment, slot index, generation)``: a slot lent with a frame it never got."""


class _Peer:
    """Our end of the link to one consumer."""

    __slots__ = ("consumer", "link", "nonce", "welcomed")

    def __init__(self, consumer: str, link: Link, nonce: bytes) -> None:
        self.consumer, self.link, self.nonce = consumer, link, nonce
        self.welcomed = False


class Outbound:
    """Links from output ``node_id/output_id`` to its consumers on this host. Thread-safe."""

    def __init__(self, keys: RunKeys, node_id: str, output_id: str, auth: ProducerKeys, *,
                 malformed: Malformed, on_release: OnRelease,
                 on_undelivered: OnUndelivered, backlog: int = 64) -> None:
        self.node_id, self.output_id = node_id, output_id
        self._keys, self._auth, self._malformed = keys, auth, malformed
        self._on_release, self._on_undelivered = on_release, on_undelivered
        self._backlog = backlog
        self._peers: dict[str, _Peer] = {}
        self._lock = threading.Lock()
        """Guards ``_peers``; never held while a link is written (undo callbacks)."""
        self._collecting = threading.Lock()
        """One reader of the links at a time, so a consumer's frames are handled in order."""
        self._poller = select.poll()
        self._polled: dict[int, _Peer] = {}
        """The links ``_poller`` watches (rebuilt when the set of links changes)."""
        self._announce: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.Lock()
        self._wake_open = True
        self._unreachable_logged = -UNREACHABLE_LOG_INTERVAL_S
        self.undelivered = 0
        """Frames a consumer did not get (backlog overflow, a broken link, no listener)."""

    # -- links ------------------------------------------------------------------------------
    def reach(self, consumer: str) -> bool:
        """Make sure a live link to ``consumer`` exists (connect and say hello if not)."""
        return self._peer(consumer) is not None

    def _peer(self, consumer: str, *, fresh: bool = False) -> _Peer | None:
        with self._lock:
            peer = self._peers.get(consumer)
            if peer is not None and not peer.link.closed and not fresh:
                return peer
            stale = self._peers.pop(consumer, None)
        if stale is not None:
            stale.link.close()
        try:
            link = connect(link_path(self._keys.run_id, consumer), consumer,
                           backlog=self._backlog,
                           on_drop=functools.partial(self._undelivered, consumer))
        except OSError as exc:
            self._cannot_reach(consumer, exc)
            return None
        nonce = os.urandom(frames.NONCE_BYTES)
        mac = self._auth.sign_hello(self.node_id, self.output_id, consumer, nonce)
        hello = frames.Hello(frames.VERSION, self.node_id, self.output_id, consumer, nonce, mac)
        link.send(frames.encode(hello))
        if self._announce is not None:
            link.send(frames.encode(frames.Pool(self._announce)))
        peer = _Peer(consumer, link, nonce)
        with self._lock:
            raced = self._peers.get(consumer)
            if raced is not None and not raced.link.closed:
                link.close()  # another thread connected meanwhile: keep one link
                return raced
            self._peers[consumer] = peer
        return peer

    def _cannot_reach(self, consumer: str, exc: OSError) -> None:
        if isinstance(exc, FileNotFoundError):
            # No socket file: the consumer closed its end on purpose (it ended, is restarting,
            # or the run is stopping and it closed before its producer stopped sending). A
            # crashed consumer's file stays, and is refused: that one is warned about.
            log.debug("%s/%s: %s has closed its link: %s", self.node_id, self.output_id,
                      consumer, exc.strerror or exc)
            return
        now = time.monotonic()
        if now - self._unreachable_logged >= UNREACHABLE_LOG_INTERVAL_S:
            self._unreachable_logged = now
            log.warning("%s/%s: cannot open a link to %s (%s); messages for it are dropped "
                        "and counted until it listens", self.node_id, self.output_id,
                        consumer, exc.strerror or exc)

    def drop(self, consumer: str) -> None:
        """``consumer``'s process is gone: hang up its link."""
        with self._lock:
            peer = self._peers.pop(consumer, None)
        if peer is not None:
            peer.link.close()

    def consumers(self) -> list[str]:
        with self._lock:
            return list(self._peers)

    def linked(self) -> frozenset[str]:
        """The consumers with a link standing now (their process is there to read it)."""
        with self._lock:
            return frozenset(c for c, p in self._peers.items() if not p.link.closed)

    # -- writing ----------------------------------------------------------------------------
    def announce(self, segment: str) -> None:
        """The output's pool is now ``segment``: consumers linked now and later map it early."""
        self._announce = segment
        header = frames.encode(frames.Pool(segment))
        for peer in self._live():
            peer.link.send(header)

    def send(self, consumers: Iterable[str], header: bytes, payload: bytes | memoryview = b"",
             *, slot: frames.Slot | None = None) -> None:
        """Write one message to each of ``consumers``; a slot lent to one that does not get
        it is undone (``on_undelivered``)."""
        for consumer in consumers:
            peer = self._peers.get(consumer)
            if peer is not None and peer.link.send(header, payload, droppable=True,
                                                   token=slot or True):
                continue
            # Not linked yet, or the consumer restarted (or hung up) since we last wrote.
            peer = self._peer(consumer, fresh=peer is not None)
            if peer is None or not peer.link.send(header, payload, droppable=True,
                                                  token=slot or True):
                self._undelivered(consumer, slot or True)

    def _undelivered(self, consumer: str, token: frames.Slot | bool) -> None:
        """A frame ``consumer`` never gets; ``token`` is the slot lent with it (or True)."""
        with self._lock:
            self.undelivered += 1
        if isinstance(token, frames.Slot):
            self._on_undelivered(consumer, token.segment, token.index, token.generation)
            self.wake()

    def end(self, seq: int, *, run_stopping: bool = False) -> None:
        """Tell every linked consumer the output closed (after what it still has to read),
        and whether because the run is stopping."""
        header = frames.encode(frames.End(seq, run_stopping))
        for peer in self._live():
            peer.link.send(header)

    def flush(self) -> None:
        """Write what links hold in their backlogs, as far as consumers take it."""
        for peer in self._live():
            peer.link.flush()

    def queued(self) -> int:
        return sum(peer.link.queued for peer in self._live())

    def _live(self) -> list[_Peer]:
        with self._lock:
            return [p for p in self._peers.values() if not p.link.closed]

    # -- reading ----------------------------------------------------------------------------
    def collect(self) -> None:
        """Read what consumers sent back (their proof, their releases) and apply it."""
        with self._collecting:
            with self._lock:
                if not self._peers:
                    return
                by_fd = {peer.link.fileno(): peer for peer in self._peers.values()}
                if by_fd.keys() != self._polled.keys():
                    self._poller = select.poll()
                    for fd in by_fd:
                        self._poller.register(fd, select.POLLIN)
                    self._polled = by_fd
            for fd, _ in self._poller.poll(0):
                peer = by_fd.get(fd)
                if peer is not None:
                    self._collect_from(peer)

    def _collect_from(self, peer: _Peer) -> None:
        welcomed = peer.welcomed
        self._collect_frames(peer)
        if not welcomed and peer.welcomed:  # proven: read what came with the proof
            self._collect_frames(peer)

    def _collect_frames(self, peer: _Peer) -> None:
        where = f"the link from {peer.consumer} to {self.node_id}/{self.output_id}"
        try:
            received = peer.link.receive()
        except LinkBroken as exc:
            self._malformed.refuse(where, exc)
            self._hang_up(peer)
            return
        for _gap, raw, payload in received:
            try:
                if raw is None:
                    raise DescriptorError(payload.decode())
                message = frames.decode_to_producer(raw)
                if not peer.welcomed:
                    if not (isinstance(message, frames.Welcome) and self._auth.welcome_is_genuine(
                            self.node_id, self.output_id, peer.consumer, peer.nonce,
                            message.mac)):
                        raise DescriptorError(
                            f"the first frame back is not {peer.consumer}'s proof of who it is")
                    peer.welcomed = True
                    peer.link.trust(payloads=False)
                    return  # the frames after the proof are read by the caller, now trusted
                if isinstance(message, frames.Release):
                    self._on_release(peer.consumer, message.segment, message.slots)
                else:
                    raise DescriptorError(f"unexpected {type(message).__name__} frame")
            except DescriptorError as exc:
                self._malformed.refuse(where, exc)
                if not peer.welcomed:
                    self._hang_up(peer)
                    return
        if peer.link.closed:
            self._hang_up(peer)

    def _hang_up(self, peer: _Peer) -> None:
        peer.link.close()
        with self._lock:
            if self._peers.get(peer.consumer) is peer:
                del self._peers[peer.consumer]

    def wait(self, timeout: float) -> None:
        """Sleep until a consumer sent something, :meth:`wake` was called, or ``timeout``."""
        poller = select.poll()
        with self._wake_lock:
            if self._wake_open:
                poller.register(self._wake_r, select.POLLIN)
        for peer in self._live():
            poller.register(peer.link.fileno(), select.POLLIN)
        with contextlib.suppress(InterruptedError):
            poller.poll(max(0, int(timeout * 1000) + 1))
        with self._wake_lock, contextlib.suppress(BlockingIOError, OSError):
            if self._wake_open:
                os.read(self._wake_r, 4096)

    def wake(self) -> None:
        """A slot may have come free some other way (a release over zenoh, a consumer gone)."""
        with self._wake_lock, contextlib.suppress(BlockingIOError, OSError):
            if self._wake_open:
                os.write(self._wake_w, b"\0")

    def close(self) -> None:
        with self._lock:
            peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            peer.link.close()
        with self._wake_lock:
            if self._wake_open:
                self._wake_open = False
                for fd in (self._wake_r, self._wake_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)
