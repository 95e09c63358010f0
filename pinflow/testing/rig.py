"""An in-process slot pipeline: producer channel -> zenoh -> consumer receiver -> device
copier, with real pools, releases and a real zenoh session (on a unix socket), on the GPU
runtime you pass (torch's on a GPU, :class:`~pinflow.testing.StandinCuda` anywhere). Used by
pinflow's tests and by ``pinflow doctor --gpu-check``."""

from __future__ import annotations

import contextlib
import queue
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pinflow.protocol import messages
from pinflow.protocol.keys import RunKeys
from pinflow.protocol.messages import Layout
from pinflow.transport import codec
from pinflow.transport.auth import Keyring
from pinflow.transport.channel import OutputChannel, PoolOptions
from pinflow.transport.cuda import DeviceCopier
from pinflow.transport.device import layout_shape
from pinflow.transport.receiver import Mapping, SlotReceiver
from pinflow.transport.session import open_session, unix_endpoint


@dataclass
class Rig:
    """Producer channel -> zenoh -> consumer receiver -> device copier, in one process."""

    channel: OutputChannel
    receiver: SlotReceiver
    copier: DeviceCopier
    runtime: Any
    inbox: queue.Queue

    def send(self, frame: np.ndarray) -> None:
        assert self.channel.send(codec.encode(frame), None, pinned=True)

    def receive(self) -> tuple[np.ndarray, Mapping, Layout]:
        header = self.inbox.get(timeout=5)
        view, mapping = self.receiver.read(("cam", "image"), header.slot)
        return view, mapping, header.layout

    def copy(self, view: np.ndarray, mapping: Mapping, layout: Layout,
             consumer_stream: Any = None) -> Any:
        """What a node does for a device input: one copy, the view held until it completed."""
        shape, dtype = layout_shape(layout, view.nbytes)
        return self.copier.copy(view, view, shape, dtype, segment=mapping.segment,
                                pinned=mapping.pinned, consumer_stream=consumer_stream)

    def held_slots(self) -> int:
        return self.channel.pool.stats().in_use


@contextlib.contextmanager
def make_rig(tmp_path: Path, runtime: Any, *, device: int = 0, **options) -> Iterator[Rig]:
    """Yields one Rig and tears it down (mappings, CUDA registrations, segments)."""
    keys = RunKeys("t" + secrets.token_hex(5))
    session = open_session(listen=[unix_endpoint(tmp_path / "z.sock")], connect=[])
    opts = dict(slots=4, slot_bytes=None, shm_threshold=4096, on_full="block",
                block_timeout=5.0, pinned=True, consumer_queue_sizes=(2,))
    opts.update(options)
    keyring = Keyring(["gpu"])
    channel = OutputChannel(session, keys, "cam", "image", PoolOptions(**opts),
                            consumers=["gpu"], alive=lambda: {"gpu"},
                            auth=keyring.producer("cam", ["gpu"]))
    inbox: queue.Queue = queue.Queue()
    sub = session.declare_subscriber(
        keys.data("cam", "image"),
        lambda s: inbox.put(messages.decode(s.attachment.to_bytes())),
    )
    copier = DeviceCopier(runtime, device)
    support = copier.support
    receiver = SlotReceiver(session, keys, "gpu", keyring.consumer("gpu"),
                            writable_mappings=not support.read_only and support.read_write)
    receiver.on_map.append(lambda segment, pinned: copier.prepare(segment, pinned=pinned))
    receiver.on_unmap.append(copier.forget)
    try:
        yield Rig(channel, receiver, copier, runtime, inbox)
    finally:
        receiver.close()
        copier.close()
        sub.undeclare()
        channel.close(drain_timeout=0.5)
        session.close()
