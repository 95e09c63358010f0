"""Releases over a real zenoh session and a real pool: one read and one release per consumer
and slot generation, and only the holder itself can give a slot back."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from pinflow.errors import DescriptorError
from pinflow.protocol import messages
from pinflow.protocol.keys import RunKeys
from pinflow.transport import codec
from pinflow.transport.auth import Keyring
from pinflow.transport.channel import OutputChannel, PoolOptions
from pinflow.transport.receiver import SlotReceiver
from pinflow.transport.session import open_session, unix_endpoint


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def plane(tmp_path: Path, run_id: str) -> Iterator[dict]:
    session = open_session(listen=[unix_endpoint(tmp_path / "z.sock")], connect=[])
    keys = RunKeys(run_id)
    keyring = Keyring(["a", "b"])
    options = PoolOptions(slots=2, slot_bytes=None, shm_threshold=1, on_full="drop",
                          block_timeout=0.0, pinned=False, consumer_queue_sizes=(1,))
    channel = OutputChannel(session, keys, "cam", "out", options, consumers=["a", "b"],
                            alive=lambda: {"a", "b"}, auth=keyring.producer("cam", ["a", "b"]))
    headers: queue.Queue = queue.Queue()
    sub = session.declare_subscriber(keys.data("cam", "out"), lambda s: headers.put(
        messages.decode(s.attachment.to_bytes())))
    receivers = {n: SlotReceiver(session, keys, n, keyring.consumer(n)) for n in ("a", "b")}
    try:
        yield {"session": session, "keys": keys, "keyring": keyring, "channel": channel,
               "headers": headers, "receivers": receivers}
    finally:
        for receiver in receivers.values():
            receiver.close()
        sub.undeclare()
        channel.close(drain_timeout=0.5)
        session.close()


def _holders(channel: OutputChannel, index: int) -> set[str]:
    assert channel.pool is not None
    return set(channel.pool._holders.get(index, ()))


def test_a_slot_generation_is_read_once_and_released_once_by_its_holder(plane) -> None:
    channel, receiver = plane["channel"], plane["receivers"]["a"]
    assert channel.send(codec.encode(np.arange(8, dtype=np.uint8)), None)
    header = plane["headers"].get(timeout=5)
    index = header.slot.index
    view, _ = receiver.read(("cam", "out"), header.slot)
    with pytest.raises(DescriptorError, match="repeated descriptor"):
        receiver.read(("cam", "out"), header.slot)
    del view
    assert _until(lambda: _holders(channel, index) == {"b"}), "a's signed release counted"
    with pytest.raises(DescriptorError, match="repeated descriptor"):
        receiver.read(("cam", "out"), header.slot)  # a replay after the release too
    assert _holders(channel, index) == {"b"}


@pytest.mark.parametrize("segment", ["../../etc/passwd", "pinflow-otherrun.cam.out.0a",
                                     "pinflow-{run}.mic.out.0a", "pinflow-{run}.cam.out"])
def test_a_descriptor_naming_another_producer_s_segment_or_a_path_is_refused(plane, segment):
    """The slot descriptor's types are the header decoder's; which segments a producer may
    name is the receiver's rule: only its own, of this run."""
    channel, receiver = plane["channel"], plane["receivers"]["a"]
    assert channel.send(codec.encode(np.arange(8, dtype=np.uint8)), None)
    header = plane["headers"].get(timeout=5)
    forged = msgspec.structs.replace(header.slot,
                                     segment=segment.format(run=plane["keys"].run_id))
    with pytest.raises(DescriptorError, match="does not belong to cam/out"):
        receiver.read(("cam", "out"), forged)
    with pytest.raises(DescriptorError, match="without a slot descriptor"):
        receiver.read(("cam", "out"), None)
    view, _ = receiver.read(("cam", "out"), header.slot)
    assert view.tobytes() == bytes(range(8))


def test_a_release_signed_by_another_consumer_frees_nothing_and_is_counted(plane) -> None:
    channel, keys, session = plane["channel"], plane["keys"], plane["session"]
    assert channel.send(codec.encode(np.arange(8, dtype=np.uint8)), None)
    header = plane["headers"].get(timeout=5)
    index, generation = header.slot.index, header.slot.generation
    body = messages.Release(header.slot.segment, [(index, generation)]).encode()
    b_key = keys.release("cam", "out", "b")
    a_signer = plane["keyring"].consumer("a")
    for signature in (a_signer.sign_release("cam", b_key, body), b"\0" * 16, None):
        session.put(b_key, body, attachment=signature)
    assert _until(lambda: channel._malformed.count == 3)
    assert _holders(channel, index) == {"a", "b"}
    b_signer = plane["keyring"].consumer("b")
    session.put(b_key, body, attachment=b_signer.sign_release("cam", b_key, body))
    assert _until(lambda: _holders(channel, index) == {"a"})
