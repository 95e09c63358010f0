"""Launcher <-> daemon messages: their wire format, and strict decoding."""

from __future__ import annotations

import json

import pytest

from pinflow.errors import DescriptorError
from pinflow.protocol import control
from pinflow.protocol.control import NodeResult, StartAnswer, StartRequest


def test_the_start_request_and_answer_round_trip_with_their_defaults() -> None:
    request = StartRequest(run="r1", path="/f.yml", yaml="nodes: []")
    raw = control.START_REQUEST.encode(request)
    assert json.loads(raw) == {"run": "r1", "path": "/f.yml", "yaml": "nodes: []",
                               "grace_s": 5.0, "startup_timeout_s": 60.0}
    assert control.START_REQUEST.decode(b'{"run":"r1","path":"/f.yml","yaml":""}').grace_s == 5
    ok = StartAnswer(machine="b", ok=True)
    assert control.START_ANSWER.encode(ok) == b'{"machine":"b","ok":true}'
    refused = StartAnswer(machine="b", ok=False, error="no GPU")
    assert control.START_ANSWER.decode(control.START_ANSWER.encode(refused)) == refused


def test_a_node_result_round_trips_and_knows_whether_it_failed() -> None:
    result = NodeResult("cam", 0, None, ["a", "é"], "/logs/cam.log", restarts=1, machine="b")
    assert control.NODE_RESULT.decode(control.NODE_RESULT.encode(result)) == result
    assert result.ok
    assert not NodeResult("cam", 0, "SIGTERM", [], "x").ok
    assert not NodeResult("cam", 0, None, [], "x", stopped_why="memory").ok
    assert not NodeResult("cam", -9, None, [], "x").ok


@pytest.mark.parametrize(("codec", "raw"), [
    (control.START_REQUEST, b'{"run":"r1","path":"/f.yml"}'),
    (control.START_REQUEST, b'{"run":"r1","path":"/f.yml","yaml":"","extra":1}'),
    (control.START_REQUEST, b'{"run":"r1","path":"/f.yml","yaml":"","grace_s":"5"}'),
    (control.START_ANSWER, b'{"ok":true}'),
    (control.START_ANSWER, b'{"machine":"b","ok":"yes"}'),
    (control.NODE_RESULT, b'{"node_id":"cam","returncode":"zero"}'),
    (control.NODE_RESULT, b"[" * 100_000 + b"]" * 100_000),
    (control.NODE_RESULT, b'{"node_id":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    (control.NODE_RESULT, b"\xff"),
])
def test_what_is_not_such_a_message_is_a_descriptor_error(codec, raw: bytes) -> None:
    with pytest.raises(DescriptorError, match=codec.what):
        codec.decode(raw)


def test_relayed_lines_are_utf8_and_bytes_that_are_not_are_shown_not_refused() -> None:
    assert control.decode_line(control.encode_line("frame 3 ✓")) == "frame 3 ✓"
    assert control.decode_line(b"bad \xff byte") == "bad \ufffd byte"
