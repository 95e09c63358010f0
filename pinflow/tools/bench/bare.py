"""The bare Python baseline: two Python processes passing a frame through shared memory with
almost nothing else, so the table shows how much of a message's cost a Python node pays on
this machine before any work of its own, beside what pinflow and iceoryx2 add to it.

The producer makes a ring of ``SLOTS`` slots in an anonymous shared file (``memfd``: nothing
in /dev/shm to clean up), prefaults it, and hands the file to the consumer once over a unix
socket (``SCM_RIGHTS``). Per frame: one copy into the next slot, then 16 bytes (frame index,
``sent_ns``) on the socket. The consumer blocks in ``recv`` on its main thread, views the
slot read-only, reads one byte per page, records, and sends one byte back: the slot is free
again. The producer reads those credits only when all slots are out, so nothing is
overwritten while read. No checks, no metadata, no discovery: a reference, not a transport.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from pinflow.nodes import framing
from pinflow.nodes.frame_log import FrameLog
from pinflow.tools.bench import frames

SLOTS = 4
"""Slots in the ring: frames the consumer may be behind before the producer waits."""
MESSAGE = struct.Struct("<qq")
"""Per frame: its index and ``sent_ns``."""
RING = struct.Struct("<QQ")
"""Sent once with the ring's file: the frame size and the slot stride."""
END = -1
"""The frame index of the closing message."""


def _stride(nbytes: int) -> int:
    return -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE


def _connect(path: Path, warmup: float) -> socket.socket:
    """The consumer's socket, once it listens (it starts first, but may not be ready)."""
    deadline = time.monotonic() + warmup
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(os.fspath(path))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise SystemExit(f"no bare consumer listening at {path} within {warmup} s"
                                 ) from None
            time.sleep(0.01)


def producer(args: argparse.Namespace, pace: Any) -> None:
    """``pace``: the baselines' pacer (``wait(index)``)."""
    sources = frames.prepared(frames.shape_for(args.frame_bytes))
    nbytes, stride = sources[0].nbytes, _stride(sources[0].nbytes)
    fd = os.memfd_create("pinflow-bench-bare", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, stride * SLOTS)
        ring = mmap.mmap(fd, stride * SLOTS)
        sock = _connect(args.socket, args.warmup)
        socket.send_fds(sock, [RING.pack(nbytes, stride)], [fd])
    finally:
        os.close(fd)
    slots = [np.frombuffer(ring, np.uint8, nbytes, i * stride).reshape(sources[0].shape)
             for i in range(SLOTS)]
    for slot in slots:
        slot[...] = 0  # prefaulted, as pinflow's pools are
    credits = SLOTS
    with sock:
        pace = pace(args.fps)
        for index in range(args.frames):
            pace.wait(index)
            sent_ns = time.time_ns()
            if not credits:
                got = sock.recv(4096)
                if not got:
                    raise SystemExit("the bare consumer hung up")
                credits += len(got)
            np.copyto(slots[index % SLOTS], sources[index % len(sources)])
            sock.sendall(MESSAGE.pack(index, sent_ns))
            credits -= 1
        sock.sendall(MESSAGE.pack(END, 0))
        while sock.recv(4096):  # the consumer closes once it took the last frame
            pass


def consumer(args: argparse.Namespace) -> None:
    """Takes every frame, makes it usable and logs when (``FrameLog``, as the probe)."""
    with contextlib.suppress(FileNotFoundError):
        args.socket.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(args.socket))
    listener.listen(1)
    listener.settimeout(args.timeout)
    try:
        conn, _ = listener.accept()
    finally:
        listener.close()
        args.socket.unlink()
    conn.settimeout(args.timeout)
    shape = frames.shape_for(args.frame_bytes)
    failures = received = 0
    with conn:
        head, fds, _, _ = socket.recv_fds(conn, RING.size, 1)
        if len(head) != RING.size or len(fds) != 1:
            raise SystemExit("the bare producer did not send its ring")
        nbytes, stride = RING.unpack(head)
        try:
            ring = mmap.mmap(fds[0], stride * SLOTS, prot=mmap.PROT_READ)
        finally:
            os.close(fds[0])
        readonly = memoryview(ring).toreadonly()
        with FrameLog(args.out) as out:
            while True:
                message = conn.recv(MESSAGE.size, socket.MSG_WAITALL)
                if len(message) != MESSAGE.size:
                    raise SystemExit(f"the bare producer hung up after {received} frames")
                index, sent_ns = MESSAGE.unpack(message)
                if index == END:
                    break
                host = np.frombuffer(readonly, np.uint8, nbytes,
                                     (index % SLOTS) * stride).reshape(shape)
                h2d_ns, device, read_ns = frames.make_usable(host, args.device)
                out.log(index, sent_ns, h2d_ns, device, read_ns=read_ns)
                if received % frames.VERIFY_EVERY == 0:
                    failures += not framing.verify(host)[1]
                received += 1
                del host
                conn.sendall(b"\1")
        with contextlib.suppress(BufferError):  # unmapped at exit if a view is still alive
            readonly.release()
            ring.close()
    if failures:
        raise SystemExit(f"{failures} frame(s) failed the integrity check")
