"""Hostile and broken peers inside a run's mesh, with real processes, zenoh sessions and shared
memory: nothing a peer sends crashes a node, and forged or repeated control messages
(releases, descriptors, end of stream) change nothing."""

from __future__ import annotations

import pytest


def _no_tracebacks(run) -> None:
    assert "Traceback" not in run.output, run.output


def test_undecodable_messages_are_counted_and_never_reach_next(pinflow):
    run = pinflow("run", "hostile_malformed.yml")
    assert run.returncode == 0, run.output
    consumer = run.result("consumer")
    assert consumer["indices"] == [0, 1] and consumer["torn"] == 0
    producer = run.result("producer")
    assert consumer["malformed"] == producer["attacks"] == 24
    assert producer["malformed"] >= 1, "a release nested 5000 deep is counted where it lands"
    assert "dropped malformed message" in run.stdout
    _no_tracebacks(run)


def test_the_sender_refuses_what_no_receiver_can_decode_and_bad_metadata(pinflow):
    run = pinflow("run", "hostile_refusals.yml")
    assert run.returncode == 0, run.output
    outcome = run.result("producer")["outcome"]
    refused = {name: got for name, got in outcome.items() if got and got[0] == "PayloadError"}
    assert refused.keys() == outcome.keys(), outcome
    assert "longdouble" in outcome["longdouble"][1]
    assert "longdouble" in outcome["longdouble_loan"][1]
    assert "shape" in outcome["huge_shape_loan"][1]
    assert "nested deeper than 32 levels" in outcome["deep_metadata"][1]
    assert "keys must be strings" in outcome["int_key"][1] and "1" in outcome["int_key"][1]
    assert "keys must be strings" in outcome["nested_int_key"][1]
    assert "65536" in outcome["big_metadata"][1]
    consumer = run.result("consumer")
    assert consumer["indices"] == [0] and consumer["malformed"] == 0
    _no_tracebacks(run)


@pytest.mark.parametrize("attack", ["release", "replay", "eos"])
def test_forged_or_repeated_control_messages_change_nothing(pinflow, attack):
    run = pinflow("run", "hostile_control.yml", env={"ATTACK": attack})
    assert run.returncode == 0, run.output
    forger, victim, producer = (run.result(n) for n in ("forger", "victim", "producer"))
    assert forger["forged"] > 0, "the attack ran"
    assert producer["sent"] == 40 and producer["error"] is None
    assert victim["indices"] == list(range(40)), "no frame lost, none delivered twice"
    assert victim["torn"] == 0 and victim["overwritten"] == 0, "no held slot was reused"
    assert victim["kept"] == 3
    assert victim["closed_after"] == 40, "the input closed only after the producer's last frame"
    if attack == "release":
        assert producer["malformed"] > 0, "forged releases are counted where they land"
    else:
        assert victim["malformed"] > 0, "replayed descriptors and forged eos are counted"
    _no_tracebacks(run)


def test_a_descriptor_refused_because_its_segment_is_gone_still_frees_the_slot(pinflow):
    run = pinflow("run", "shm_segment_gone.yml")
    assert run.returncode == 0, run.output
    consumer = run.result("consumer")
    assert consumer["indices"] == [] and consumer["malformed"] == 12
    producer = run.result("producer")
    assert producer["error"] is None and producer["sent"] == 12, "no slot was lost for good"
    assert "does not exist" in run.stdout
