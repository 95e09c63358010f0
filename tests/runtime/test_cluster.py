"""The launcher's side of a multi-host run (``Cluster``) against a scripted daemon on a real
wire: two zenoh sessions on 127.0.0.1, the daemon's side written out as the bytes a real
daemon sends, so what the cluster accepts and refuses is pinned here."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zenoh

from pinflow import spec as spec_module
from pinflow.errors import LaunchError
from pinflow.protocol.control import NodeResult
from pinflow.protocol.keys import WireKeys, daemon_key
from pinflow.runtime.cluster import Cluster
from pinflow.transport.wire import open_wire

DATAFLOWS = Path(__file__).resolve().parent.parent / "dataflows"
RUN = "c0ffee00c0de"
REMOTE = ["consumer_b1", "consumer_b2", "producer_b"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _result(node_id: str, returncode: int = 0) -> bytes:
    """A node's result as the daemon of machine b sends it."""
    return json.dumps({"node_id": node_id, "returncode": returncode, "forced": None,
                       "tail": ["last line"], "log_path": f"/logs/{node_id}.log",
                       "restarts": 0, "stopped_why": None, "machine": "b"}).encode()


@dataclass
class FakeDaemon:
    """The wire side of `pinflow daemon --machine b`: its token, its start queryable and its
    host token; the test publishes what its nodes would."""

    wire: zenoh.Session
    answer: bytes = b'{"ok":true,"machine":"b"}'
    requests: list[dict] = field(default_factory=list)
    declared: list = field(default_factory=list)

    def serve(self) -> None:
        live = self.wire.liveliness()
        self.declared.append(live.declare_token(daemon_key("b")))
        self.declared.append(self.wire.declare_queryable(f"{daemon_key('b')}/start",
                                                         self._on_start))

    def _on_start(self, query: zenoh.Query) -> None:
        self.requests.append(json.loads(query.payload.to_bytes()))
        self.declared.append(self.wire.liveliness().declare_token(WireKeys(RUN).host("b")))
        query.reply(query.key_expr, self.answer)

    def close(self) -> None:
        for item in reversed(self.declared):
            item.undeclare()
        self.declared.clear()


@pytest.fixture
def wires() -> Iterator[tuple[zenoh.Session, zenoh.Session]]:
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    daemon_side = open_wire(listen=[endpoint], connect=[])
    launcher_side = open_wire(listen=[], connect=[endpoint])
    try:
        yield launcher_side, daemon_side
    finally:
        launcher_side.close()
        daemon_side.close()


def _cluster(wire: zenoh.Session, lines: list, says: list, timeout: float = 5.0) -> Cluster:
    dataflow = spec_module.load(DATAFLOWS / "two_hosts.yml")
    return Cluster(dataflow, RUN, wire, on_line=lambda n, t: lines.append((n, t)),
                   on_say=lambda m, t: says.append((m, t)), daemon_timeout_s=timeout)


def zenoh_callback_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What zenoh logged about exceptions raised in our callbacks (it logs and goes on)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("zenoh")
            and r.levelno >= logging.ERROR]


def _until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_cluster_starts_the_share_relays_lines_and_collects_results(wires, caplog):
    launcher_wire, daemon_wire = wires
    daemon = FakeDaemon(daemon_wire)
    daemon.serve()
    lines: list = []
    says: list = []
    cluster = _cluster(launcher_wire, lines, says)
    try:
        cluster.start(grace_s=2.0, startup_timeout_s=7.0)
        (request,) = daemon.requests
        assert request["run"] == RUN and request["grace_s"] == 2.0
        assert request["startup_timeout_s"] == 7.0
        assert request["yaml"] == (DATAFLOWS / "two_hosts.yml").read_text()
        assert sorted(cluster.pending()) == sorted(REMOTE)
        keys = WireKeys(RUN)
        daemon_wire.put(keys.log("consumer_b1"), "frame 3 ✓".encode())
        daemon_wire.put(keys.say("b"), b"run started on b")
        # What a broken or hostile peer might put on the wire: each is dropped, none raises
        # in a zenoh callback, and the genuine result after them still counts.
        for junk in (b"[" * 100_000 + b"]" * 100_000, b"\xff not json", b"[1, 2]",
                     b'{"node_id": "consumer_b1", "returncode": "zero"}',
                     b'{"node_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
            daemon_wire.put(keys.result("consumer_b1"), junk)
        daemon_wire.put(keys.result("consumer_b1"), _result("consumer_b1", 3))
        daemon_wire.put(keys.result("nobody"), _result("nobody"))
        _until(lambda: "consumer_b1" in cluster.results() and says and lines)
        assert lines == [("consumer_b1", "frame 3 ✓")]
        assert says == [("b", "run started on b")]
        assert cluster.results()["consumer_b1"] == NodeResult(
            "consumer_b1", 3, None, ["last line"], "/logs/consumer_b1.log", machine="b")
        assert "nobody" not in cluster.results()
        assert sorted(cluster.pending()) == ["consumer_b2", "producer_b"]
    finally:
        cluster.close()
        daemon.close()
    assert not zenoh_callback_errors(caplog)


def test_a_host_that_vanishes_loses_its_unreported_nodes_once(wires):
    launcher_wire, daemon_wire = wires
    daemon = FakeDaemon(daemon_wire)
    daemon.serve()
    cluster = _cluster(launcher_wire, [], [])
    try:
        cluster.start(grace_s=1.0, startup_timeout_s=5.0)
        daemon_wire.put(WireKeys(RUN).result("producer_b"), _result("producer_b"))
        _until(lambda: "producer_b" in cluster.results())
        daemon.close()  # the host token goes: the daemon is gone
        lost: list[str] = []
        _until(lambda: bool(lost.extend(cluster.lost()) or len(lost) == 2), timeout=10)
        assert sorted(lost) == ["consumer_b1", "consumer_b2"]
        assert cluster.lost() == [] and cluster.pending() == []
        result = cluster.results()["consumer_b1"]
        assert not result.ok and result.returncode == -9 and result.machine == "b"
        assert result.stopped_why == "machine 'b' was lost (its pinflow daemon disappeared)"
    finally:
        cluster.close()


def test_a_missing_daemon_or_a_refusal_is_a_launch_error_naming_the_machine(wires):
    launcher_wire, daemon_wire = wires
    with pytest.raises(LaunchError, match=r"no `pinflow daemon --machine b` answered.*"
                                          r"consumer_b1, consumer_b2, producer_b"):
        _cluster(launcher_wire, [], [], timeout=0.5).start(1.0, 1.0)
    daemon = FakeDaemon(daemon_wire, answer=b'{"ok":false,"machine":"b","error":"no GPU"}')
    daemon.serve()
    cluster = _cluster(launcher_wire, [], [])
    try:
        with pytest.raises(LaunchError, match="machine 'b': no GPU"):
            cluster.start(1.0, 1.0)
    finally:
        cluster.close()
        daemon.close()


def test_an_answer_that_is_no_start_answer_counts_as_no_answer(wires):
    launcher_wire, daemon_wire = wires
    daemon = FakeDaemon(daemon_wire, answer=b"[" * 100_000 + b"]" * 100_000)
    daemon.serve()
    cluster = _cluster(launcher_wire, [], [])
    try:
        with pytest.raises(LaunchError, match="its daemon did not answer the start request"):
            cluster.start(1.0, 1.0)
    finally:
        cluster.close()
        daemon.close()
