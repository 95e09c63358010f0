"""Releases over a real zenoh session and a real pool, the way a consumer on the mesh (the
gateway) gives slots back: one read and one release per consumer and slot generation, and
only the holder itself can give a slot back. (Same-host links: ``test_link_*.py`` and the
dataflow tests.)"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from pinflow.errors import DescriptorError, SlotNotLent
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
    reachable = {"a", "b"}
    """Consumers the producer takes for reachable (its view of their liveliness tokens)."""
    options = PoolOptions(slots=2, slot_bytes=None, shm_threshold=1, on_full="drop",
                          block_timeout=0.0, pinned=False, consumer_queue_sizes=(1,))
    channel = OutputChannel(session, keys, "cam", "out", options, consumers=["a", "b"],
                            alive=lambda: set(reachable),
                            auth=keyring.producer("cam", ["a", "b"]), mesh_consumers=["a", "b"])
    headers: queue.Queue = queue.Queue()
    sub = session.declare_subscriber(keys.data("cam", "out"), lambda s: headers.put(
        messages.decode(s.attachment.to_bytes())))
    receivers = {n: SlotReceiver(session, keys, n, keyring.consumer(n)) for n in ("a", "b")}
    try:
        yield {"session": session, "keys": keys, "keyring": keyring, "channel": channel,
               "headers": headers, "receivers": receivers, "reachable": reachable}
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


@pytest.mark.parametrize("reachable", [{"a"}, set()], ids=["b unreachable", "none reachable"])
def test_a_consumer_never_reads_a_slot_that_was_not_lent_to_it(plane, reachable) -> None:
    """A producer lends a new slot only to the consumers it takes for reachable. Right after
    a lost link comes back, zenoh already routes its descriptors to a consumer whose token
    the producer has not seen again yet: that consumer gets a descriptor for a slot lent to
    others (or, if none is reachable, to nobody: free again at once). Reading it would give
    it a frame the producer rewrites as soon as the others are done, under its eyes: a paused
    producer's consumer saw frame 10 turn into frame 11, then got frame 11 again (issue 14
    follow-up). The consumer must skip such a descriptor (and send no release for it)."""
    channel, headers, receivers = plane["channel"], plane["headers"], plane["receivers"]
    plane["reachable"].intersection_update(reachable)
    first, second = np.full(64, 1, np.uint8), np.full(64, 2, np.uint8)
    assert channel.send(codec.encode(first), None)
    header = headers.get(timeout=5)
    skipped: DescriptorError | None = None
    try:
        b_view, _ = receivers["b"].read(("cam", "out"), header.slot)
    except DescriptorError as exc:
        b_view, skipped = None, exc
    if "a" in reachable:
        a_view, _ = receivers["a"].read(("cam", "out"), header.slot)
        assert np.array_equal(a_view, first)
        del a_view  # a is done: the slot is free again
    assert _until(lambda: _holders(channel, header.slot.index) == set())
    assert channel.send(codec.encode(second), None)
    again = headers.get(timeout=5)
    assert again.slot.index == header.slot.index, "the freed slot is the one reused"
    assert b_view is None or np.array_equal(b_view, first), (
        "b holds a frame that the producer overwrote under it")
    assert isinstance(skipped, SlotNotLent), skipped
    assert set(header.slot.lent_to) == reachable, "the descriptor names whom the slot is lent to"
    assert receivers["b"].not_lent == 1
    assert channel._malformed.count == 0, "a skipped descriptor is not malformed"
    assert receivers["b"].held() == []
