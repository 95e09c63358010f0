"""Direct TCP streams between the gateways of two hosts, for the bytes of messages.

zenoh-python 1.10 neither takes nor exposes a buffer, so a frame crossing hosts over zenoh
is copied out of its slot, into zenoh, out of zenoh and into the receiving host's slot, and
zenoh's own transport work comes on top (a bare zenoh put of a 1080p RGBA frame costs its
sender and receiver ~12 ms of CPU together on a 2-vCPU VM). On a plain TCP connection the
sending gateway writes straight from the slot and the receiving gateway reads straight into
its own slot: the kernel's two copies and nothing else (raw TCP over the benchmark's veth:
~5 ms of CPU per frame).

A gateway that imports outputs and whose wire listens on a named TCP address takes streams
there (:class:`StreamListener`, port chosen by the system) and says so on the wire; the
producer's gateway connects (:class:`StreamSender`), once per output and importing host.
Frames are ``pinflow.protocol.streams``. zenoh keeps carrying everything else, and the
messages of hosts that take no stream (their wire only connects, or listens on a wildcard).
The streams trust the network as the wire does: a stream must name the run and an output
the host imports, nothing more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pinflow.errors import DescriptorError
from pinflow.protocol import messages, streams
from pinflow.protocol.streams import PREFIX

log = logging.getLogger("pinflow.bridge")

STREAMS_ENV = "PINFLOW_WIRE_STREAMS"
CONNECT_TIMEOUT_S = 2.0
SEND_TIMEOUT_S = 10.0
SLOWEST_BYTES_PER_S = 10e6
"""A frame the receiving host does not take within ``SEND_TIMEOUT_S`` plus its size at this
rate breaks the stream (that host's gateway is stuck or gone): the sender reconnects later,
its messages go over zenoh meanwhile."""
RETRY_S = 2.0
MAX_RETRY_S = 60.0
"""After a stream broke or could not be opened, a sender waits ``RETRY_S`` before trying
again, twice as long after each failure in a row up to ``MAX_RETRY_S`` (a firewall that
drops the packets would otherwise cost the exporter a connect timeout every few seconds)."""
KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
"""A receiving gateway learns within ~25 s that a sending host vanished without a word
(power, network): its reader ends and the host's zenoh copies count again."""
HELLO_TIMEOUT_S = 5.0
MAX_OPEN = 256
"""Streams a listener reads at once (one per output and sending host): more are refused."""
BUFFER_BYTES = 8 << 20
"""Socket buffers asked for (the kernel caps them): a whole 1080p frame in flight."""

_TCP_ENDPOINT = re.compile(r"tcp/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")
_WILDCARDS = {"0.0.0.0", "::", "[::]"}


def stream_host(listen: list[str]) -> str | None:
    """Where a gateway takes streams: the host of its first ``tcp/HOST:PORT`` wire endpoint
    that names one; None if none does (no endpoint, or only wildcards, which say nothing a
    peer could connect to), or if ``PINFLOW_WIRE_STREAMS=0`` turns streams off (a firewall
    that lets only the wire's port through: every message then crosses over zenoh)."""
    if os.environ.get(STREAMS_ENV, "1") == "0":
        return None
    for endpoint in listen:
        found = _TCP_ENDPOINT.fullmatch(endpoint)
        if found and found.group(1) not in _WILDCARDS:
            return found.group(1).strip("[]")
    return None


def read_head(sock: socket.socket) -> tuple[messages.Header, int] | None:
    """The next frame's checked header and payload size (the payload is the caller's to
    read); None if the stream ended between frames, ``ConnectionError`` if it ended inside
    one, ``DescriptorError`` for a header that is not one."""
    prefix = bytearray(PREFIX.size)
    if not _fill(sock, memoryview(prefix), end_ok=True):
        return None
    size, payload = PREFIX.unpack(prefix)
    if size > messages.MAX_HEADER_BYTES:
        raise DescriptorError(f"a stream header of {size} bytes")
    return messages.decode(read_exactly(sock, size)), payload


def read_exactly(sock: socket.socket, nbytes: int) -> bytes:
    """``nbytes`` from ``sock``; ``ConnectionError`` if the peer hung up first."""
    buf = bytearray(nbytes)
    read_into(sock, memoryview(buf))
    return bytes(buf)


def read_into(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``, straight into it (no copy on the way);
    ``ConnectionError`` if the peer hung up first."""
    _fill(sock, view, end_ok=False)


def _fill(sock: socket.socket, view: memoryview, *, end_ok: bool) -> bool:
    """Fill ``view``; False if the peer hung up before the first byte and ``end_ok``."""
    got, total = 0, len(view)
    while got < total:
        n = sock.recv_into(view[got:], total - got)
        if n == 0:
            if got == 0 and end_ok:
                return False
            raise ConnectionError(f"stream ended {got} bytes into a {total}-byte read")
        got += n
    return True


def discard(sock: socket.socket, nbytes: int) -> None:
    """Read and drop ``nbytes`` (a message this host has no room for)."""
    scratch = memoryview(bytearray(min(nbytes, 1 << 20)))
    while nbytes:
        chunk = min(nbytes, len(scratch))
        read_into(sock, scratch[:chunk])
        nbytes -= chunk


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE.items():
        if hasattr(socket, name):  # (Linux names them; elsewhere the system's defaults)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


OnStream = Callable[[streams.Hello, socket.socket], None]
"""``on_stream(hello, sock)``: read the stream's frames until it ends (on a thread of the
listener's; the socket is closed afterwards)."""


class StreamListener:
    """A gateway's listening socket for streams: checks each stream's hello (the run, and
    ``accepts(hello)``) and hands it to ``on_stream`` on a thread of its own."""

    def __init__(self, host: str, run_id: str, on_stream: OnStream,
                 accepts: Callable[[streams.Hello], bool],
                 refuse: Callable[[str, Any], None]) -> None:
        self._run_id, self._on_stream, self._accepts = run_id, on_stream, accepts
        self._refuse = refuse
        family, _, _, _, where = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
            sock.listen(16)
            sock.settimeout(0.2)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.address: tuple[str, int] = (host, sock.getsockname()[1])
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name="pinflow-streams-accept",
                                        daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                if len(self._open) >= MAX_OPEN:
                    conn.close()
                    self._refuse(f"a stream from {peer[0]}:{peer[1]}",
                                 f"{MAX_OPEN} streams are open already")
                    continue
                self._open.add(conn)
                thread = threading.Thread(target=self._serve, args=(conn, peer), daemon=True,
                                          name="pinflow-stream-in")
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        where = f"a stream from {peer[0]}:{peer[1]}"
        try:
            conn.settimeout(HELLO_TIMEOUT_S)
            _tune(conn)
            prefix = bytearray(PREFIX.size)
            if not _fill(conn, memoryview(prefix), end_ok=True):
                return  # connected and hung up: nothing to refuse
            size, payload = PREFIX.unpack(prefix)
            if size > streams.MAX_HELLO_BYTES or payload:
                raise DescriptorError(f"its first frame ({size} + {payload} bytes) is no hello")
            hello = streams.HELLO.decode(read_exactly(conn, size))
            if hello.version != streams.VERSION or hello.run_id != self._run_id:
                raise DescriptorError(f"it is for run {hello.run_id!r} (version "
                                      f"{hello.version}), not this one")
            if not self._accepts(hello):
                raise DescriptorError(f"{hello.node}/{hello.output} is no output this host "
                                      "takes on a stream")
            conn.settimeout(None)
            self._on_stream(hello, conn)
        except (DescriptorError, OSError) as exc:
            if not self._closed.is_set():
                self._refuse(where, exc)
        except Exception:  # a reader's bug must not pass silently, nor take others down
            log.exception("gateway: reading %s failed", where)
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking streams and end those open (their readers see the end)."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class StreamSender:
    """One output's stream to one host. Used by one thread (the exporter's worker)."""

    def __init__(self, address: tuple[str, int], hello: bytes, host: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address, self.host = address, host
        self._clock = clock
        self._hello = hello
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._failures = 0
        """Failures in a row (the wait before the next attempt doubles with each)."""
        self.broken = 0
        """Times the stream broke or could not be opened."""

    def send(self, head: bytes, payload: Any = b"") -> bool:
        """Write one frame (``head`` from ``streams.frame_head``, then the payload straight
        from its buffer). False if there is no stream now: it broke (closed here; a
        frame cut short is dropped by the receiver) or cannot be opened yet."""
        sock = self._sock or self._connect()
        if sock is None:
            return False
        view = memoryview(payload).cast("B")  # any C-contiguous buffer, as bytes
        try:
            sock.settimeout(SEND_TIMEOUT_S + view.nbytes / SLOWEST_BYTES_PER_S)
            sock.sendall(head)
            if view.nbytes:
                sock.sendall(view)
            self._failures = 0
            return True
        except OSError as exc:
            log.warning("gateway: the stream to %s at %s:%d broke (%s); reconnecting",
                        self.host, *self.address, exc)
            self._drop()
            return False

    def _connect(self) -> socket.socket | None:
        if self._clock() < self._retry_at:
            return None
        try:
            sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            log.warning("gateway: cannot open a stream to %s at %s:%d (%s); its messages go "
                        "over zenoh until it can", self.host, *self.address, exc)
            self._drop()
            return None
        try:
            _tune(sock)
            sock.settimeout(SEND_TIMEOUT_S)
            sock.sendall(self._hello)
        except OSError:
            sock.close()
            self._drop()
            return None
        self._sock = sock
        return sock

    def _drop(self) -> None:
        self.broken += 1
        self._failures += 1
        wait = min(MAX_RETRY_S, RETRY_S * 2 ** min(self._failures - 1, 16))
        self._retry_at = self._clock() + wait
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
