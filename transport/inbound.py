"""A consumer node's links from its producers on this host (``transport/links.py``), read by
the node's own thread.

The node listens on its link socket; producers connect and speak first. ``receive()`` runs
on the thread that calls ``next()``: it accepts new links, reads every frame that arrived,
and checks each one before anything is built from it (the header's types, the metadata, the
layout against the bytes, the slot against the segment), so the node's queues only ever
hold messages that will decode. ``wait()`` sleeps until a link has something to read, a new
producer connects, a watched descriptor is readable (the node's timers: ``watch``), or another
thread called ``wake()`` (STOP, a closed input). No network callback and no hand-off between
threads sits on the path of a message or a timer tick.

A link is trusted once its first frame, a :class:`~pinflow.protocol.frames.Hello`, names
this node and one of the outputs it reads and carries the producer's MAC (the key the pair
shares, ``transport/auth.py``); the node answers with its own MAC, which the producer needs
before it takes releases from the link. A link that does not prove itself is counted as
malformed and closed; from a trusted link, a frame that fails a check is counted, logged
and dropped, and the link reads on. Slots go back on the link they came from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import numpy as np

from pinflow.errors import DescriptorError
from pinflow.protocol import frames
from pinflow.protocol.keys import RunKeys
from pinflow.protocol.messages import ArrowLayout, Layout
from pinflow.transport import codec
from pinflow.transport.auth import ConsumerKeys
from pinflow.transport.links import Link, LinkBroken, Listener, link_path
from pinflow.transport.malformed import Malformed
from pinflow.transport.receiver import SlotReceiver
from pinflow.transport.segment import Segment

log = logging.getLogger("pinflow.transport")


class Incoming(msgspec.Struct, gc=False):
    """One checked message from a link, for the node's queues. ``end``: the producer
    closed the output (nothing else is set). ``dropped``: frames of this output the
    producer dropped just before this one (its link's backlog was full). A struct built in
    C: one per message."""

    source: tuple[str, str]
    dropped: int = 0
    end: bool = False
    run_stopping: bool = False
    """With ``end``: the producer closed because the run is stopping."""
    seq: int = 0
    sent_ns: int = 0
    layout: Layout | None = None
    metadata: dict[str, Any] | None = None
    holder: np.ndarray | None = None
    pinned: bool = False
    segment: Segment | None = None


class _Source:
    """A link from one producer's output (identity known once its Hello was checked)."""

    __slots__ = ("give_back", "link", "output")

    def __init__(self, link: Link) -> None:
        self.link = link
        self.output: tuple[str, str] | None = None
        self.give_back: Any = None

    def where(self) -> str:
        if self.output is None:
            return "a link not proven yet"
        return f"the link from {self.output[0]}/{self.output[1]}"


class Inbound:
    """The links into node ``node_id`` from the outputs in ``sources`` (producer, output).
    ``receive``/``wait`` belong to one reader at a time; ``wake`` to any thread."""

    def __init__(self, keys: RunKeys, node_id: str, signer: ConsumerKeys,
                 receiver: SlotReceiver, malformed: Malformed,
                 sources: Iterable[tuple[str, str]]) -> None:
        self.node_id = node_id
        self._signer, self._receiver, self._malformed = signer, receiver, malformed
        self._sources = frozenset(sources)
        self._reading = threading.Lock()
        self._poller = select.poll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, select.POLLIN)
        self._wake_fds: tuple[int, ...] = (self._wake_r, self._wake_w)
        self._wake_lock = threading.Lock()
        self._links: dict[int, _Source] = {}
        self._listener: Listener | None = None
        if self._sources:
            self._listener = Listener(link_path(keys.run_id, node_id))
            self._poller.register(self._listener.fileno(), select.POLLIN)
        self._closed = False
        self._never = threading.Event()
        self._ready: list[tuple[int, int]] | None = None
        """What the last ``wait`` found ready (``receive`` reads just those)."""
        self._watched: dict[int, Callable[[], None]] = {}
        """Other descriptors the reader waits on (a node's timers): fd -> what to call when
        it is readable."""

    @property
    def path(self) -> str | None:
        """Where this node listens for links (``None``: it reads no output)."""
        return None if self._listener is None else str(self._listener.path)

    # -- the reader's side ------------------------------------------------------------------
    def receive(self) -> list[Incoming]:
        """Everything the links brought since the last call, checked (never blocks)."""
        got: list[Incoming] = []
        with self._reading:
            if self._closed:
                return got
            ready, self._ready = self._ready, None
            if ready is None:
                try:
                    ready = self._poller.poll(0)
                except RuntimeError:  # another thread waits: what it wakes for is read next
                    return got
            listener = self._listener
            for fd, _ in ready:
                source = self._links.get(fd)
                if source is not None:
                    self._read(source, got)
                elif listener is not None and fd == listener.fileno():
                    for link in listener.accept():
                        self._links[link.fileno()] = source = _Source(link)
                        self._poller.register(link.fileno(), select.POLLIN)
                        self._read(source, got)  # a producer speaks first, at once
                elif fd == self._wake_r:
                    self._clear_wake()
                else:
                    on_ready = self._watched.get(fd)
                    if on_ready is not None:
                        on_ready()
        return got

    def watch(self, fd: int, on_ready: Callable[[], None]) -> None:
        """Wake ``wait`` when ``fd`` is readable too, and call ``on_ready()`` from
        ``receive`` then (on the reader's thread, under the reader's lock: it must read
        ``fd`` and do nothing that waits)."""
        with self._reading:
            self._watched[fd] = on_ready
            self._poller.register(fd, select.POLLIN)

    def unwatch(self, fd: int) -> None:
        """Stop waiting on ``fd`` (before it is closed)."""
        with self._reading:
            if self._watched.pop(fd, None) is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._poller.unregister(fd)

    def wait(self, timeout: float | None) -> None:
        """Sleep until a link has something to read, a producer connects, a watched
        descriptor is readable, :meth:`wake` is called, or ``timeout`` (seconds; None: no
        limit) passes. One waiter at a time."""
        if self._closed:
            self._never.wait(timeout)  # nothing can arrive any more
            return
        if timeout != 0:
            self._receiver.prepare_views()  # the next messages' views, while the caches are warm
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        try:
            self._ready = self._poller.poll(ms)
        except (InterruptedError, RuntimeError):
            return  # RuntimeError: another thread polls; it will take what comes

    def _clear_wake(self) -> None:
        with self._wake_lock, contextlib.suppress(BlockingIOError, OSError):
            if self._wake_fds:
                os.read(self._wake_r, 4096)

    def wake(self) -> None:
        """Make the reader's ``wait`` return (any thread; never blocks)."""
        with self._wake_lock:
            if self._wake_fds:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\0")

    def _read(self, source: _Source, got: list[Incoming]) -> None:
        proving = source.output is None
        self._read_frames(source, got)
        if proving and source.output is not None:  # proven: read what came with the proof
            self._read_frames(source, got)

    def _read_frames(self, source: _Source, got: list[Incoming]) -> None:
        link = source.link
        try:
            received = link.receive()
        except LinkBroken as exc:
            self._malformed.refuse(source.where(), exc)
            self._drop(source)
            return
        output = source.output
        for gap, header, payload in received:
            if header is None:  # too large to read: skipped as it came
                self._malformed.refuse(source.where(), payload.decode())
                if output is None:
                    self._drop(source)
                    return
                if gap:
                    got.append(Incoming(output, dropped=gap))
                continue
            if output is None:  # at most this one frame came: the caller reads on
                if not self._hello(source, header, payload):
                    self._drop(source)
                return
            try:
                message = frames.decode_to_consumer(header)
                if type(message) is frames.Data:
                    got.append(self._data(source, output, gap, message, payload))
                else:
                    self._control(output, gap, message, payload, got)
            except DescriptorError as exc:
                self._malformed.refuse(source.where(), exc)
                if gap:
                    got.append(Incoming(output, dropped=gap))
        if link.closed:
            self._drop(source)  # the producer hung up (it ended, restarts, or died)

    def _hello(self, source: _Source, raw: bytes, payload: bytes) -> bool:
        """Check a link's first frame; trust the link (and answer) if it proves itself."""
        try:
            hello = frames.decode_to_consumer(raw)
            if not isinstance(hello, frames.Hello) or payload:
                raise DescriptorError(f"the first frame is a {type(hello).__name__}, not a "
                                      "Hello")
            if hello.version != frames.VERSION:
                raise DescriptorError(f"link version {hello.version}, this node speaks "
                                      f"{frames.VERSION}")
            output = (hello.producer, hello.output)
            if hello.consumer != self.node_id or output not in self._sources:
                raise DescriptorError(f"a link from {hello.producer}/{hello.output} to "
                                      f"{hello.consumer}: not an output this node reads")
            if not self._signer.hello_is_genuine(hello.producer, hello.output, hello.nonce,
                                                 hello.mac):
                raise DescriptorError(f"a link claiming to come from {hello.producer}/"
                                      f"{hello.output} is not signed with its key")
        except DescriptorError as exc:
            self._malformed.refuse(source.where(), exc)
            return False
        source.output = output
        source.link.peer = f"{hello.producer}/{hello.output}"
        source.link.trust()
        source.give_back = self._giver(source.link)
        source.link.send(frames.encode(frames.Welcome(
            self._signer.sign_welcome(hello.producer, hello.output, hello.nonce))))
        return True

    @staticmethod
    def _giver(link: Link) -> Any:
        def give_back(segment: str, index: int, generation: int) -> None:
            link.send_soon(frames.encode(frames.Release(segment, [(index, generation)])))
        return give_back

    def _control(self, output: tuple[str, str], gap: int, message: Any, payload: bytes,
                 got: list[Incoming]) -> None:
        """A frame that is not a message: a pool to map now, the end of the output."""
        if gap:
            got.append(Incoming(output, dropped=gap))
        if payload:
            raise DescriptorError(f"a {type(message).__name__} frame carries a payload")
        if isinstance(message, frames.Pool):
            self._receiver.prepare(output, message.segment)
        elif isinstance(message, frames.End):
            got.append(Incoming(output, end=True, seq=message.seq,
                                run_stopping=message.run_stopping))
        else:
            raise DescriptorError(f"unexpected {type(message).__name__} frame")

    def _data(self, source: _Source, output: tuple[str, str], gap: int, message: frames.Data,
              payload: bytes) -> Incoming:
        metadata = frames.decode_metadata(message.metadata) if message.metadata else {}
        pinned, segment = False, None
        if message.slot is not None:
            if payload:
                raise DescriptorError("a shared-memory message carries a payload too")
            holder, mapping = self._receiver.read_slot(output, message.slot, source.give_back)
            pinned, segment = mapping.pinned, mapping.segment
            if isinstance(message.layout, ArrowLayout):
                # Arrow IPC is parsed, not viewed: check and keep a private copy, so the
                # producer cannot change it afterwards; the slot goes back right away.
                holder, pinned, segment = holder.copy(), False, None
        else:
            holder = np.frombuffer(payload, dtype=np.uint8)
        codec.check_layout(message.layout, holder)
        return Incoming(output, dropped=gap, seq=message.seq, sent_ns=message.sent_ns,
                        layout=message.layout, metadata=metadata, holder=holder,
                        pinned=pinned, segment=segment)

    def _drop(self, source: _Source) -> None:
        fd = source.link.fileno()
        if self._links.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(fd)
        source.link.close()

    def close(self) -> None:
        """Hang up every link and stop listening (views still held stay valid; their slots
        are not given back: the producer takes them back once this process is gone)."""
        self._closed = True
        self.wake()
        with self._reading:
            for source in list(self._links.values()):
                source.link.close()
            self._links.clear()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        with self._wake_lock:
            fds, self._wake_fds = self._wake_fds, ()
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
