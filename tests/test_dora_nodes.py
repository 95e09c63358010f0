"""dora nodes on pinflow: nodes written the way dora's examples and node-hub write them (from
scratch, in tests/dataflows/dora/), in real `pinflow run` processes, with one import changed.

Each test names what failed before issue 17: mostly an AttributeError or TypeError from the
node, an event shape dora code does not expect, or a YAML key pinflow refused.
"""

from __future__ import annotations

import re

from conftest import DATAFLOWS

DORA = DATAFLOWS / "dora"


def _flow(name: str) -> str:
    return str(DORA / name)


def test_end_of_stream_is_input_closed_then_stop_all_inputs_closed(pinflow):
    """Before: the stream ended after INPUT_CLOSED (cleanup under STOP never ran), events had
    no `kind`, STOP carried `value`/`metadata`, `Node("name")` was a TypeError, and
    `output_types` was an unknown key ("did you mean 'outputs'?")."""
    run = pinflow("run", _flow("events.yml"))
    assert run.returncode == 0, run.output
    receiver = run.result("receiver")
    seen = receiver["events"]
    assert [(e["type"], e["id"]) for e in seen] == [
        ("INPUT", "numbers"), ("INPUT", "numbers"), ("INPUT", "numbers"),
        ("INPUT_CLOSED", "numbers"), ("STOP", "ALL_INPUTS_CLOSED")]
    assert all(e["kind"] == "dora" for e in seen)
    assert seen[-1]["keys"] == ["id", "kind", "type"] == seen[-2]["keys"]
    assert all(e["timestamp_utc"] for e in seen if e["type"] == "INPUT")
    assert receiver["values"] == [[0], [1], [2]]
    assert receiver["cleanup"] == "ALL_INPUTS_CLOSED"
    assert receiver["after_loop"] is None and receiver["ended"] is True
    assert "'output_types' is ignored: a dora type annotation" in run.stderr
    assert "did you mean" not in run.output
    assert "INFO receiver: daemon_port=6012 is ignored" in run.stdout
    assert "ignoring node id 'pyarrow-sender' passed to Node()" in run.stdout


def test_a_node_id_passed_to_node_is_ignored_with_a_note_under_pinflow_run(pinflow):
    run = pinflow("run", _flow("metadata.yml"))
    assert run.returncode == 0, run.output
    assert ("INFO echo2: ignoring node id 'echo' passed to Node(): this process is node "
            "'echo2' of the dataflow") in run.stdout
    assert "ignoring node id 'echo' passed to Node(): this process is node 'echo'" not in (
        run.stdout)


def test_dora_metadata_values_travel_and_forwarded_metadata_keeps_its_timestamp(pinflow):
    """Before: np.int64, bytes and datetimes in metadata raised PayloadError, and an echo
    node forwarding event["metadata"] (with its datetime timestamp) crashed."""
    run = pinflow("run", _flow("metadata.yml"))
    assert run.returncode == 0, run.output
    got = run.result("checker")
    first = got["direct"][0]
    assert first["i64"] == {"type": "int", "repr": "5"}
    assert first["f32"] == {"type": "float", "repr": "1.5"}
    assert first["flag"] == {"type": "bool", "repr": "True"}
    assert first["raw"] == {"type": "bytes", "repr": "b'ab'"}
    assert first["aware"]["iso"] == first["naive"]["iso"] == "2024-05-17T12:30:15.123456+00:00"
    assert first["pair"]["type"] == "list" and first["nested"]["items"]["when"]["type"] == (
        "datetime")
    assert first["timestamp"]["type"] == "datetime"
    assert first["odd"] == {"type": "str", "repr": "'{1, 2}'"}
    assert got["direct"][1]["timestamp"]["iso"] == "2024-05-17T12:30:15.123456+00:00"
    # Twice through an echo: the sender's timestamp comes back as it left.
    assert [m["timestamp"] for m in got["echoed"]] == [m["timestamp"] for m in got["direct"]]
    assert got["echoed"][0]["raw"] == first["raw"]
    warnings = [line for line in run.stdout.splitlines() if "unsupported metadata" in line]
    assert len(warnings) == 2, warnings  # one per key, not one per message
    assert "for key 'odd'" in warnings[0] or "for key 'odd'" in warnings[1]


def test_timers_in_every_unit_tick_with_an_empty_value_and_a_timestamp(pinflow):
    """Before: `dora/timer/...`, `secs` and `micros` were refused, and a tick's value was a
    UInt64Array of the tick time."""
    run = pinflow("run", _flow("timers.yml"), "--stop-after", "2.5")
    assert run.returncode == 0, run.output
    report = run.result("ticker")
    ticks = report["ticks"]
    assert set(ticks) == {"fast", "slow", "slow_pinflow", "rate", "micro"}
    assert len(ticks["fast"]) > len(ticks["micro"]) >= 1 and len(ticks["slow"]) >= 1
    for tick in (t for each in ticks.values() for t in each):
        assert tick["null_array"] and tick["length"] == 0
        assert tick["aware_utc"] and -1.0 < tick["age_s"] < 1.0
        assert tick["stamp_us"] == tick["sent_us"]
    fast = [t["sent_us"] for t in ticks["fast"]]
    assert all((t - fast[0]) % 50_000 == 0 for t in fast), "the grid, in microseconds"
    assert report["stop"] == "MANUAL", "a timer never closes: only a real STOP ends it"


def test_logging_at_info_is_shown_debug_is_not_and_a_paced_source_is_no_bottleneck(pinflow):
    """python-dataflow's shape. Before: Node had no try_recv, INFO logging was dropped, the
    receiver's STOP branch never ran and the sleeping sender was reported as "starvation:
    ... the producer 'sender' is the bottleneck"."""
    run = pinflow("run", _flow("dataflow.yml"))
    assert run.returncode == 0, run.output
    out = run.stdout
    assert "INFO sender: Sent message 0" in out
    assert "INFO sender: Sender finished - sent 40 messages" in out
    assert "INFO transformer: Transformer stopping" in out
    assert "INFO receiver: Received transformed: [{'doubled': 0," in out
    assert ("INFO receiver: Receiver stopping after receiving event: {'kind': 'dora', 'id': "
            "'ALL_INPUTS_CLOSED', 'type': 'STOP'}") in out
    for line in ("WARNING receiver: a warning", "receiver    | a plain print",
                 "INFO receiver: log_info line", "WARNING receiver: dora-order warn line",
                 "ERROR receiver: pinflow-order error line k=1",
                 "INFO receiver: Receiver finished"):
        assert line in out, line
    assert "a debug line" not in out
    assert "starvation" not in out
    assert run.result("receiver") == {"messages": 40, "transformed": 40}


def test_debug_logging_is_shown_when_asked(pinflow):
    run = pinflow("run", _flow("dataflow.yml"), env={"PINFLOW_LOG_LEVEL": "debug",
                                                     "COUNT": "3"})
    assert run.returncode == 0, run.output
    assert "DEBUG receiver: a debug line nobody asked for" in run.stdout


def test_queue_overflow_is_logged_rate_limited_and_adds_up_to_the_counter(pinflow):
    """Before: drops were only counted (node.stats()), never said."""
    run = pinflow("run", _flow("drops.yml"))
    assert run.returncode == 0, run.output
    lines = [line for line in run.stdout.splitlines() if "dropped" in line and "slow" in line]
    assert lines, run.stdout
    assert all("input 'burst' dropped" in line and "queue full (queue_size 2, drop_oldest)"
               in line for line in lines)
    counted = sum(int(re.search(r"dropped (\d+) message", line).group(1)) for line in lines)
    slow = run.result("slow")
    assert counted == slow["dropped"] > 0
    assert len(lines) <= 4, "at most a line a second (the receiver runs about a second)"


def test_a_burst_sent_just_before_the_producer_exits_is_delivered_whole(pinflow):
    """Before (same-host links): the launcher's "gone" notice overtook the messages still in
    the link, the input closed first and 299 of 300 were lost, counted nowhere."""
    run = pinflow("run", _flow("burst_then_exit.yml"))
    assert run.returncode == 0, run.output
    late = run.result("late")
    assert late["values"] == list(range(300)) and late["dropped"] == 0
    assert late["ends"] == [["INPUT_CLOSED", "burst"], ["STOP", "ALL_INPUTS_CLOSED"]]


def test_try_recv_is_empty_drain_recv_async_and_next_in_an_executor(pinflow):
    """Before: each was an AttributeError (and Node.next in an executor could not tell the
    end: no STOP after the last INPUT_CLOSED)."""
    run = pinflow("run", _flow("receive.yml"))
    assert run.returncode == 0, run.output
    everything = list(range(12))
    drainer = run.result("drainer")
    assert drainer["empty_at_start"] is True and drainer["try_recv_at_start"] is None
    assert drainer["empty_after_sleep"] is False and drainer["first_drain"]
    assert drainer["drain_when_empty"] == []
    inputs_later = [kind for kind, _ in drainer["rest"] if kind == "INPUT"]
    assert [v for (v,) in drainer["first_drain"]] == everything[:len(drainer["first_drain"])]
    assert len(drainer["first_drain"]) + len(inputs_later) == 12
    assert drainer["rest"][-2:] == [["INPUT_CLOSED", "numbers"], ["STOP", "ALL_INPUTS_CLOSED"]]
    assert drainer["try_recv_after_end"] is None and drainer["empty_after_end"] is True
    assert drainer["drain_after_end"].startswith("StreamEnded: node 'drainer': could not "
                                                 "drain events: the event stream has ended")
    receiver = run.result("async-receiver")
    assert receiver["first"] == {"error": "Timeout event stream error: Receiver timed out",
                                 "kind": "dora", "type": "ERROR"}
    assert receiver["values"] == everything, "a cancelled recv_async loses no event"
    assert receiver["cancelled"] >= 1 and receiver["errors"] == []
    assert receiver["stop"] == "ALL_INPUTS_CLOSED" and receiver["after_end"] is None
    assert run.result("executor") == {"values": everything, "stop": "ALL_INPUTS_CLOSED"}


def test_dora_s_small_methods_and_send_output_raw(pinflow):
    """Before: node_config, dataflow_id, is_restart, restart_count(), timestamp,
    send_output_raw and merge_external_events were AttributeErrors."""
    run = pinflow("run", _flow("misc.yml"), "--stop-after", "20")
    assert run.returncode == 0, run.output
    raw = run.result("raw")
    assert raw["dataflow_id"] == raw["run_id"]
    assert raw["node_config"] == {"inputs": {"tick": {"source": "dora/timer/millis/100",
                                                      "queue_size": 3,
                                                      "queue_policy": "drop_oldest"}},
                                  "outputs": ["frames"]}
    assert raw["is_restart"] is True
    assert raw["restart_count_call"] == raw["restart_count_attr"] == 1
    assert raw["timestamp_aware"] is True
    assert "not supported by pinflow: dora merges only ROS 2 subscriptions" in raw["merge"]
    assert raw["manual_send"] is True and raw["second_send"] == "ClosedError"
    assert raw["discarded"] is True
    assert run.result("sink")["samples"] == [
        {"type": "uint8", "values": [0, 1, 2, 3, 4, 5], "how": "with"},
        {"type": "uint8", "values": [7, 8, 9, 10], "how": None}]


def test_an_undeclared_output_is_an_error_that_names_the_dora_difference(pinflow):
    run = pinflow("run", "undeclared.yml")
    assert run.returncode == 1
    assert "node 'sender' has no output 'nope' (declared: data)" in run.stderr
    assert "add it under `outputs:`" in run.stderr
    assert "dora only warns and drops the message" in run.stderr
