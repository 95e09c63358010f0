"""Same-host links: one unix stream connection from a producer's output to each consumer.

The data plane of one host used to be zenoh: a put per message, a callback on one of zenoh's
threads, a hand-off to the node's thread, and a release thread with another put back. On a
2-vCPU machine that cost about 0.9 ms per message, most of the way from the producer to the
consumer. A link is a plain connected socket: the producer writes a frame (``sendmsg``), the
consumer's own thread reads it in ``next()``; releases come back on the same connection and
the producer reads them when it next needs a slot. zenoh stays what it is good at:
discovery, liveliness, the run's state, statistics, and the hosts beyond this one.

Each consumer node listens on ``<run socket folder>/<node>.link`` (the folder is private to
the user, 0700); a producer connects when it first needs to reach a consumer, or as soon as
it sees the consumer's token. Frames are ``pinflow.protocol.frames``. Nothing here blocks:
a frame that does not fit in the socket waits in the link's backlog, which keeps at most
``backlog`` droppable frames (the oldest goes first, counted; a consumer that reads nothing
for that long would drop them from its input queue anyway), and a link whose peer is gone
says so instead of raising. Who is at the other end is proven by the first frame each way
(``transport/auth.py``); :class:`Link` only moves frames.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pinflow.errors import DescriptorError
from pinflow.protocol import frames
from pinflow.spec.units import check_id
from pinflow.transport.session import runs_dir

LINK_SUFFIX = ".link"
BUFFER_BYTES = 4 << 20
"""Socket send buffer asked for (the kernel caps it at ``net.core.wmem_max``): deep enough
that a consumer busy for a while does not push frames into the producer's backlog."""
RECV_CHUNK = 1 << 18
_MAX_UNIX_PATH = 107

OnDrop = Callable[[Any], None]
"""``on_drop(token)``: undo what a dropped frame carried (``token`` is what ``send`` was
given for it, e.g. the slot lent with it, which then goes back)."""


def link_path(run_id: str, node_id: str) -> Path:
    """Where ``node_id`` of run ``run_id`` listens for links (a short hashed name when the
    id would make the path longer than a unix socket address allows)."""
    folder = runs_dir() / check_id("run id", run_id)
    path = folder / f"{check_id('node id', node_id)}{LINK_SUFFIX}"
    if len(os.fsencode(path)) <= _MAX_UNIX_PATH:
        return path
    return folder / f"n-{hashlib.sha256(node_id.encode()).hexdigest()[:16]}{LINK_SUFFIX}"


class LinkBroken(DescriptorError):
    """The byte stream of a link cannot be read on (frame numbers run backwards: it is out of
    step): the link must be closed."""


class _Queued:
    __slots__ = ("data", "droppable", "token")

    def __init__(self, data: bytes | memoryview, droppable: bool, token: Any) -> None:
        self.data, self.droppable, self.token = data, droppable, token


class Link:
    """One connected end of a link. Thread-safe; no method blocks on the peer.

    ``send`` writes a frame or queues it; ``send_soon`` (for finalizers, which run on any
    thread at any time) never waits for the link's lock; ``receive`` returns the frames that
    arrived, each with how many frames the peer dropped before it. ``on_drop(token)`` runs
    for each droppable frame that is dropped unsent (outside the lock).
    """

    def __init__(self, sock: socket.socket, *, peer: str = "?", backlog: int = 64,
                 on_drop: OnDrop | None = None) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER_BYTES)
        self._sock = sock
        self._fd = sock.fileno()
        self.peer = peer
        """Who is at the other end (a node id), for logs."""
        self.backlog = max(1, backlog)
        self.lock = threading.Lock()
        self._out: collections.deque[_Queued] = collections.deque()
        self._droppable = 0
        self._later: collections.deque[bytes] = collections.deque()
        self._in = bytearray()
        self._skip = 0
        """Bytes still to discard of a frame too large to read."""
        self._next_out = 0
        self._next_in = 0
        self.header_limit = frames.MAX_FIRST_HEADER_BYTES
        """Largest header accepted; raised once the first frame proved who is speaking."""
        self.payload_limit = 0
        self.proven = False
        """The first frame proved who is speaking (``trust``). Until then ``receive``
        returns one frame at a time: what follows it may already be in the same read, and
        must be judged by the limits the proof lifts, not by the first frame's."""
        self.closed = False
        """Closed here, or the peer hung up (``receive`` saw the end, a write failed)."""
        self.dropped = 0
        """Droppable frames dropped from the backlog (the peer was not reading)."""
        self.on_drop = on_drop

    def fileno(self) -> int:
        return self._fd

    def trust(self, *, payloads: bool = True) -> None:
        """The peer proved who it is: accept any header from now on, and payloads of any
        size when ``payloads`` (a producer's link back carries none). Call ``receive``
        again: frames that came in the same read as the proof wait there."""
        self.header_limit = frames.MAX_HEADER_BYTES
        self.payload_limit = frames.MAX_PAYLOAD_BYTES if payloads else 0
        self.proven = True

    # -- writing ----------------------------------------------------------------------------
    def send(self, header: bytes, payload: bytes | memoryview = b"", *,
             droppable: bool = False, token: Any = None) -> bool:
        """Write one frame, or queue it behind what the peer has not read yet. False if the
        link is closed (nothing was sent and nothing is undone: that is the caller's). A
        droppable frame may later be dropped from a full backlog: then ``on_drop(token)``."""
        with self.lock:
            if self.closed:
                return False
            frame = frames.PREFIX.pack(len(header), len(payload), self._next_out) + header
            if payload:
                frame += payload
            self._next_out += 1
            dropped: list[Any] = []
            if self._out or self._later:
                ok = self._write(frame, droppable, token, dropped)
                self._write_later(dropped)
            else:  # the usual case: straight into the socket
                try:
                    sent = self._sock.send(frame)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = -1
                if sent == len(frame):
                    return True
                if sent < 0:
                    self._broken(dropped)
                    ok = False
                else:
                    if sent:
                        frame, droppable = memoryview(frame)[sent:], False
                    ok = self._enqueue(frame, droppable, token, dropped)
        self._after_unlock(dropped)
        return ok

    def send_soon(self, header: bytes) -> None:
        """Send a frame without waiting for the lock: now if it is free, else by whoever
        holds it, before they let go. For finalizers, which may run inside any code."""
        self._later.append(header)
        if self.lock.acquire(blocking=False):
            dropped: list[Any] = []
            try:
                self._write_later(dropped)
            finally:
                self.lock.release()
            self._after_unlock(dropped)

    def flush(self) -> None:
        """Write what the backlog holds, as far as the peer takes it."""
        dropped: list[Any] = []
        with self.lock:
            self._flush(dropped)
            self._write_later(dropped)
        self._after_unlock(dropped)

    @property
    def queued(self) -> int:
        """Frames waiting in the backlog."""
        return len(self._out)

    def _write(self, frame: bytes | memoryview, droppable: bool, token: Any,
               dropped: list[Any]) -> bool:
        """Written or queued (True), or the link is closed (False: nothing to undo here).
        Caller holds the lock."""
        if self._out:
            self._flush(dropped)
        if not self._out and not self.closed:
            try:
                sent = self._sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._broken(dropped)
                return False
            if sent == len(frame):
                return True
            if sent:
                frame, droppable = memoryview(frame)[sent:], False
        return self._enqueue(frame, droppable, token, dropped)

    def _enqueue(self, frame: bytes | memoryview, droppable: bool, token: Any,
                 dropped: list[Any]) -> bool:
        """Queue what the socket did not take (caller holds the lock)."""
        if self.closed:
            return False
        self._out.append(_Queued(frame, droppable, token))
        if droppable:
            self._droppable += 1
            if self._droppable > self.backlog:
                self._drop_oldest(dropped)
        return True

    def _drop_oldest(self, dropped: list[Any]) -> None:
        for i, item in enumerate(self._out):
            if item.droppable:
                del self._out[i]
                self._droppable -= 1
                self.dropped += 1
                dropped.append(item.token)
                return

    def _flush(self, dropped: list[Any]) -> None:
        while self._out and not self.closed:
            head = self._out[0]
            try:
                sent = self._sock.send(head.data)
            except BlockingIOError:
                return
            except OSError:
                self._broken(dropped)
                return
            if sent == len(head.data):
                self._out.popleft()
                if head.droppable:
                    self._droppable -= 1
                continue
            if head.droppable:
                head.droppable = False  # half written: the rest must follow
                self._droppable -= 1
            head.data = memoryview(head.data)[sent:]
            return

    def _write_later(self, dropped: list[Any]) -> None:
        while self._later:
            header = self._later.popleft()
            if self.closed:
                continue
            frame = frames.PREFIX.pack(len(header), 0, self._next_out) + header
            self._next_out += 1
            self._write(frame, False, None, dropped)

    def _after_unlock(self, dropped: list[Any]) -> None:
        """Undo dropped frames outside the lock, and send what other threads queued
        meanwhile (``send_soon`` found the lock taken)."""
        on_drop = self.on_drop
        for token in dropped:
            if on_drop is not None and token is not None:
                on_drop(token)
        while self._later and self.lock.acquire(blocking=False):
            more: list[Any] = []
            try:
                self._write_later(more)
            finally:
                self.lock.release()
            for token in more:
                if on_drop is not None and token is not None:
                    on_drop(token)

    def _broken(self, dropped: list[Any]) -> None:
        """The peer hung up: nothing queued will ever be read; undo the droppable frames."""
        self.closed = True
        while self._out:
            item = self._out.popleft()
            dropped.append(item.token)
        self._droppable = 0
        self._later.clear()

    # -- reading ----------------------------------------------------------------------------
    def receive(self) -> list[tuple[int, bytes | None, bytes]]:
        """The frames that arrived: ``(frames the peer dropped before it, header, payload)``;
        a frame larger than allowed is skipped as it arrives (never held in memory) and comes
        back as ``(gap, None, why)``. Until ``trust``, at most one frame. Sets ``closed`` once
        the peer hung up; ``LinkBroken`` if the stream cannot be read on (frame numbers
        running backwards)."""
        with self.lock:
            if self.closed and not self._in:
                return []
            buf: bytes | bytearray = self._in
            while not self.closed:  # (closed with frames left: they are still read)
                try:
                    chunk = self._sock.recv(RECV_CHUNK)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closed = True
                    break
                if self._skip:
                    skipped = min(self._skip, len(chunk))
                    self._skip -= skipped
                    chunk = chunk[skipped:]
                    if not chunk:
                        continue
                if buf:
                    if type(buf) is bytes:
                        buf = bytearray(buf)
                    buf += chunk
                else:
                    buf = chunk  # the usual case: whole frames, parsed where they landed
                if len(chunk) < RECV_CHUNK:
                    break
            found: list[tuple[int, bytes | None, bytes]] = []
            pos, size, prefix = 0, len(buf), frames.PREFIX.size
            while size - pos >= prefix and (self.proven or not found):
                header_len, payload_len, number = frames.PREFIX.unpack_from(buf, pos)
                if number < self._next_in:
                    raise LinkBroken(f"link from {self.peer}: frame {number} came after frame "
                                     f"{self._next_in - 1}")
                end = pos + prefix + header_len + payload_len
                if header_len > self.header_limit or payload_len > self.payload_limit:
                    why = (f"a frame of {header_len} + {payload_len} bytes is larger than "
                           f"allowed ({self.header_limit} + {self.payload_limit}); skipped")
                    found.append((number - self._next_in, None, why.encode()))
                    self._next_in = number + 1
                    self._skip = max(0, end - size)
                    pos = min(end, size)
                    continue
                if end > size:
                    break
                start = pos + prefix
                header = buf[start:start + header_len]
                payload = buf[start + header_len:end] if payload_len else b""
                if type(header) is not bytes:
                    header, payload = bytes(header), bytes(payload)
                found.append((number - self._next_in, header, payload))
                self._next_in = number + 1
                pos = end
            if pos < len(buf):
                if buf is not self._in:
                    self._in = bytearray(buf)
                del self._in[:pos]
            elif self._in:
                self._in = bytearray()
            return found

    def close(self) -> None:
        """Hang up (idempotent); frames still queued are dropped and undone."""
        dropped: list[Any] = []
        with self.lock:
            if not self.closed:
                self._broken(dropped)
            self._out.clear()
            with contextlib.suppress(OSError):
                self._sock.close()
        for token in dropped:
            if self.on_drop is not None and token is not None:
                self.on_drop(token)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._out)} queued"
        return f"Link(peer={self.peer!r}, {state})"


def connect(path: Path, peer: str, *, backlog: int = 64, on_drop: OnDrop | None = None
            ) -> Link:
    """A link to the consumer listening at ``path``; ``OSError`` if nobody listens there
    (yet, or any more)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.connect(os.fspath(path))
    except BaseException:
        sock.close()
        raise
    return Link(sock, peer=peer, backlog=backlog, on_drop=on_drop)


class Listener:
    """A consumer's listening socket. A predecessor's socket file (a restarted node) is
    replaced; ``close`` removes the file if it is still ours."""

    def __init__(self, path: Path) -> None:
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            sock.bind(os.fspath(path))
            sock.listen(128)
            sock.setblocking(False)
            self._inode = os.stat(path).st_ino
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._fd = sock.fileno()

    def fileno(self) -> int:
        return self._fd

    def accept(self) -> list[Link]:
        """Every connection waiting to be accepted, as links (peer unknown yet)."""
        accepted = []
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError:
                return accepted  # closed meanwhile, or out of descriptors: try next time
            accepted.append(Link(sock))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
