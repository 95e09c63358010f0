"""An in-process slot pipeline: producer channel -> same-host link -> consumer receiver ->
device copier, with real pools, releases, a real link (a unix socket in a run folder of its
own) and a real zenoh session, on the GPU runtime you pass (torch's on a GPU,
:class:`~pinflow.testing.StandinCuda` anywhere). Used by pinflow's tests and by
``pinflow doctor --gpu-check``."""

from __future__ import annotations

import collections
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pinflow.protocol.keys import RunKeys
from pinflow.protocol.messages import Layout
from pinflow.transport import codec
from pinflow.transport.auth import Keyring
from pinflow.transport.channel import OutputChannel, PoolOptions
from pinflow.transport.cuda import DeviceCopier
from pinflow.transport.device import layout_shape
from pinflow.transport.inbound import Inbound, Incoming
from pinflow.transport.malformed import Malformed
from pinflow.transport.receiver import Mapping, SlotReceiver
from pinflow.transport.session import make_run_dir, open_session, unix_endpoint


@dataclass
class Rig:
    """Producer channel -> link -> consumer receiver -> device copier, in one process."""

    channel: OutputChannel
    receiver: SlotReceiver
    copier: DeviceCopier
    runtime: Any
    inbound: Inbound
    malformed: Malformed
    """What the consumer refused (counted and logged, as a node counts it)."""
    arrived: collections.deque[Incoming] = field(default_factory=collections.deque)

    def send(self, frame: np.ndarray) -> None:
        assert self.channel.send(codec.encode(frame), None, pinned=True)

    def receive(self, timeout: float = 5.0) -> tuple[np.ndarray, Mapping, Layout]:
        """The next message's slot view, its mapping and its layout (as a node reads it)."""
        deadline = time.monotonic() + timeout
        while not self.arrived:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message within {timeout}s")
            self.arrived.extend(i for i in self.inbound.receive() if i.holder is not None)
            if not self.arrived:
                self.inbound.wait(min(left, 0.1))
        incoming = self.arrived.popleft()
        assert incoming.holder is not None and incoming.layout is not None
        mapping = next(m for m in self.receiver.mappings() if m.segment is incoming.segment)
        return incoming.holder, mapping, incoming.layout

    def copy(self, view: np.ndarray, mapping: Mapping, layout: Layout,
             consumer_stream: Any = None) -> Any:
        """What a node does for a device input: one copy, the view held until it completed."""
        shape, dtype = layout_shape(layout, view.nbytes)
        return self.copier.copy(view, view, shape, dtype, segment=mapping.segment,
                                pinned=mapping.pinned, consumer_stream=consumer_stream)

    def held_slots(self) -> int:
        self.channel.settle()  # take in the releases sent so far
        return self.channel.pool.stats().in_use


@contextlib.contextmanager
def make_rig(tmp_path: Path, runtime: Any, *, device: int = 0,
             tokens_seen: set[str] | None = None, **options) -> Iterator[Rig]:
    """Yields one Rig and tears it down (mappings, CUDA registrations, segments).

    ``tokens_seen``: the consumers whose liveliness token the producer sees (a set the
    caller may change while the rig runs; default: the consumer ``gpu``, always)."""
    seen = {"gpu"} if tokens_seen is None else tokens_seen
    keys = RunKeys("t" + secrets.token_hex(5))
    opts = dict(slots=4, slot_bytes=None, shm_threshold=4096, on_full="block",
                block_timeout=5.0, pinned=True, consumer_queue_sizes=(2,))
    opts.update(options)
    keyring = Keyring(["gpu"])
    run_dir = make_run_dir(keys.run_id)  # where the consumer's link socket lives
    session = copier = receiver = inbound = channel = rig = None
    try:  # torn down also when a part fails to start (a pool over budget, say)
        session = open_session(listen=[unix_endpoint(tmp_path / "z.sock")], connect=[])
        copier = DeviceCopier(runtime, device)
        support = copier.support
        receiver = SlotReceiver(session, keys, "gpu", keyring.consumer("gpu"),
                                writable_mappings=not support.read_only and support.read_write)
        receiver.on_map.append(lambda segment, pinned: copier.prepare(segment, pinned=pinned))
        receiver.on_unmap.append(copier.forget)
        malformed = Malformed("rig", logging.getLogger("pinflow.testing"))
        inbound = Inbound(keys, "gpu", keyring.consumer("gpu"), receiver, malformed,
                          [("cam", "image")])
        channel = OutputChannel(session, keys, "cam", "image", PoolOptions(**opts),
                                consumers=["gpu"], alive=lambda: frozenset(seen),
                                auth=keyring.producer("cam", ["gpu"]))
        rig = Rig(channel, receiver, copier, runtime, inbound, malformed)
        yield rig
    finally:
        if rig is not None:
            rig.arrived.clear()
        for close in (inbound and inbound.close, receiver and receiver.close,
                      copier and copier.close,
                      channel and (lambda: channel.close(drain_timeout=0.5)),
                      session and session.close):
            if close:
                close()
        shutil.rmtree(run_dir, ignore_errors=True)
