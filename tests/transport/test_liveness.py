"""Node liveness locks against real processes: a stopped process is alive, a killed one is
gone, and a restarted node is never mistaken for its predecessor; after a lost link, slots
whose descriptor or release was lost come back."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pinflow.errors import TransportError
from pinflow.protocol import messages
from pinflow.protocol.keys import RunKeys
from pinflow.transport import codec
from pinflow.transport import segment as seg_mod
from pinflow.transport.auth import Keyring
from pinflow.transport.channel import OutputChannel, PoolOptions, ask_held, resync_consumer
from pinflow.transport.liveness import NodeLock, PeerWatch, alive_name, parse_alive_name
from pinflow.transport.receiver import SlotReceiver
from pinflow.transport.segment import parse_segment_name
from pinflow.transport.session import open_session, unix_endpoint

HOLDER = """
import sys
from pinflow.transport.liveness import NodeLock
lock = NodeLock(sys.argv[1], sys.argv[2])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


def hold(run_id: str, node_id: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, run_id, node_id],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    return child


def end(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(timeout=10)
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()


def test_names_never_match_segments_or_run_locks(run_id: str) -> None:
    name = alive_name(run_id, "cam")
    assert name == f"pinflow-{run_id}.cam.alive"
    assert parse_alive_name(name) == (run_id, "cam")
    assert parse_segment_name(name) is None
    assert parse_alive_name(f"pinflow-{run_id}.cam.out.0a") is None
    assert parse_alive_name(f"pinflow-{run_id}.lock") is None
    with pytest.raises(ValueError):
        alive_name(run_id, "../x")


def test_a_stopped_holder_is_alive_and_a_killed_one_is_gone(run_id: str) -> None:
    gone: queue.Queue[str] = queue.Queue()
    watch = PeerWatch(run_id, gone.put)
    child = hold(run_id, "cam")
    try:
        os.kill(child.pid, signal.SIGSTOP)
        watch.lost("cam")
        with pytest.raises(queue.Empty):
            gone.get(timeout=1.0)  # five probes: a paused process still holds its lock
        assert watch.unreachable() == {"cam"}
        os.kill(child.pid, signal.SIGCONT)
        watch.back("cam")  # the same process is back: nothing is reported
        assert watch.unreachable() == set()
        watch.lost("cam")
        child.kill()
        assert gone.get(timeout=5) == "cam"
        assert watch.unreachable() == set()
    finally:
        end(child)
        watch.close()
        (seg_mod.shm_dir() / alive_name(run_id, "cam")).unlink(missing_ok=True)


def test_a_successor_is_not_mistaken_for_the_process_that_went_away(run_id: str) -> None:
    """The old process died, a new one holds a new lock file under the same name: the
    watcher, still holding the old file, sees it free and reports the old one gone as soon
    as the newcomer's token arrives, before anything is addressed to the newcomer."""
    gone: list[str] = []
    watch = PeerWatch(run_id, gone.append)
    first = hold(run_id, "cam")
    successor = None
    try:
        os.kill(first.pid, signal.SIGSTOP)
        watch.lost("cam")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        successor = hold(run_id, "cam")
        watch.back("cam")
        assert gone == ["cam"]
    finally:
        watch.close()
        end(first)
        if successor is not None:
            end(successor)
        (seg_mod.shm_dir() / alive_name(run_id, "cam")).unlink(missing_ok=True)


def test_a_second_process_for_the_same_node_is_refused(run_id: str) -> None:
    child = hold(run_id, "cam")
    try:
        with pytest.raises(TransportError, match="already running"):
            NodeLock(run_id, "cam").acquire()
    finally:
        end(child)
    lock = NodeLock(run_id, "cam")
    lock.acquire()  # the dead holder's file is replaced
    lock.release()
    assert not (seg_mod.shm_dir() / alive_name(run_id, "cam")).exists()


def test_after_a_lost_link_slots_the_consumer_does_not_hold_come_back(run_id: str,
                                                                      tmp_path) -> None:
    """Real pools and a real zenoh session: one descriptor is 'lost' (never read), the other
    is held by a live view. Asked after its link came back, the consumer names only the one
    it holds; the producer takes back the lost one and keeps lending the held one."""
    keys = RunKeys(run_id)
    session = open_session(listen=[unix_endpoint(tmp_path / "z.sock")], connect=[])
    headers: queue.Queue = queue.Queue()
    sub = session.declare_subscriber(
        keys.data("cam", "image"), lambda s: headers.put(messages.decode(s.attachment.to_bytes())))
    options = PoolOptions(slots=4, slot_bytes=None, shm_threshold=1, on_full="drop",
                          block_timeout=1.0, pinned=False, consumer_queue_sizes=(2,))
    keyring = Keyring(["gpu"])
    # Only a consumer on the zenoh mesh (the gateway) can lose a descriptor with a link.
    channel = OutputChannel(session, keys, "cam", "image", options, consumers=["gpu"],
                            alive=lambda: {"gpu"}, auth=keyring.producer("cam", ["gpu"]),
                            mesh_consumers=["gpu"])
    receiver = SlotReceiver(session, keys, "gpu", keyring.consumer("gpu"))
    try:
        frame = np.arange(8192, dtype=np.uint8)
        assert channel.send(codec.encode(frame), None) and channel.send(codec.encode(frame), None)
        headers.get(timeout=5)  # the first descriptor is "lost": never read
        view, _mapping = receiver.read(("cam", "image"), headers.get(timeout=5).slot)
        assert channel.held_by() == {"gpu": 2}
        resync_consumer(session, keys, "gpu", [channel], lost_at=time.monotonic())
        assert channel.held_by() == {"gpu": 1}, "the lost one came back, the held one not"
        assert np.array_equal(view, frame)
        del view
        deadline = time.monotonic() + 5
        while channel.held_by() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert channel.held_by() == {}
    finally:
        receiver.close()
        sub.undeclare()
        channel.close(drain_timeout=0.5)
        session.close()


def test_forged_or_replayed_held_answers_take_back_nothing(run_id: str, tmp_path) -> None:
    """The answer to "which slots do you hold?" frees every slot it does not name, so it must
    come from the consumer itself and for this very question. Here the consumer is silent
    and a forger answers instead: unsigned, signed with another node's key, and a genuine
    answer of the consumer replayed to a later question. None of them frees a slot."""
    keys = RunKeys(run_id)
    session = open_session(listen=[unix_endpoint(tmp_path / "z.sock")], connect=[])
    keyring = Keyring(["gpu", "forger"])
    auth = keyring.producer("cam", ["gpu"])
    options = PoolOptions(slots=4, slot_bytes=None, shm_threshold=1, on_full="drop",
                          block_timeout=1.0, pinned=False, consumer_queue_sizes=(2,))
    channel = OutputChannel(session, keys, "cam", "image", options, consumers=["gpu"],
                            alive=lambda: {"gpu"}, auth=auth, mesh_consumers=["gpu"])
    genuine = keyring.consumer("gpu")
    forger = keyring.consumer("forger")
    captured: list[tuple[bytes, bytes]] = []
    mode = {"how": "unsigned"}
    empty = messages.HeldReply("gpu", []).encode()

    def answer(query) -> None:
        ask = messages.decode_held_query(query.payload.to_bytes())
        held_key = keys.held("gpu")
        if mode["how"] == "unsigned":
            query.reply(query.key_expr, empty)
        elif mode["how"] == "other key":
            query.reply(query.key_expr, empty,
                        attachment=forger.sign_held(ask.producer, held_key, ask.nonce, empty))
        elif mode["how"] == "genuine":
            signature = genuine.sign_held(ask.producer, held_key, ask.nonce, empty)
            captured.append((empty, signature))
            query.reply(query.key_expr, empty, attachment=signature)
        else:  # replay the genuine answer captured for an earlier question
            body, signature = captured[-1]
            query.reply(query.key_expr, body, attachment=signature)

    queryable = session.declare_queryable(keys.held("gpu"), answer)
    try:
        frame = np.arange(8192, dtype=np.uint8)
        assert channel.send(codec.encode(frame), None) and channel.send(codec.encode(frame), None)
        assert channel.held_by() == {"gpu": 2}
        for how in ("unsigned", "other key"):
            mode["how"] = how
            assert ask_held(session, keys, "cam", "gpu", auth) is None, how
        mode["how"] = "genuine"
        assert ask_held(session, keys, "cam", "gpu", auth) == set(), "a signed answer counts"
        mode["how"] = "replay"
        assert ask_held(session, keys, "cam", "gpu", auth) is None, "a replay does not"
        assert channel.held_by() == {"gpu": 2}, "no forged answer took a slot back"
    finally:
        queryable.undeclare()
        channel.close(drain_timeout=0.1)
        session.close()
