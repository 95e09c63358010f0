"""Diagnosis, memory limits and restarts, driven with real slow, fast, leaking and crashing
nodes."""

from __future__ import annotations

import re

from pinflow.protocol.stats import InputReport, OutputReport, PoolReport, StatsReport
from pinflow.runtime.diagnosis import Diagnoser, diagnose


def _report(node, *, waiting, inputs=None, outputs=None, cpu=None) -> StatsReport:
    """A node's stats report as the launcher gets it; only what the diagnosis reads varies.
    CPU follows the waiting fraction unless given (a node that never waits works)."""
    cpu = (1.0 - waiting) * 100 if cpu is None else cpu
    return StatsReport(node=node, run="0123456789ab", pid=1, restarts=0, machine=None, t=0,
                       interval_s=1.0, inputs=inputs or {}, outputs=outputs or {},
                       waiting_frac=waiting, pinned_bytes=0, devices={}, malformed=0,
                       rss_bytes=0, private_bytes=0, cpu_pct=cpu)


def _input(source, *, occupancy, drop_rate=0.0, in_rate=30.0, handled=30.0, size=4):
    return InputReport(source=source, queued=round(occupancy * size), size=size, received=0,
                       dropped=0, delivered=0, closed=False, occupancy=occupancy,
                       in_rate=in_rate, handled_rate=handled, drop_rate=drop_rate,
                       latency_p50_ms=None, latency_p99_ms=None)


def _output(out_rate, *, pool=None, dropped_full=0) -> OutputReport:
    return OutputReport(dropped_full=dropped_full, pool=pool, sent=0, out_rate=out_rate)


def test_full_dropping_queue_is_diagnosed_as_consumer_bound_with_both_rates():
    reports = {
        "cam": _report("cam", waiting=0.9, outputs={"image": _output(30.0)}),
        "gpu": _report("gpu", waiting=0.0, inputs={
            "image": _input("cam/image", occupancy=1.0, drop_rate=18.0, handled=12.0)}),
    }
    (finding,) = diagnose(reports)
    assert finding.kind == "consumer-bound"
    assert "'cam/image' produces 30.0 msg/s, 'gpu' handles 12.0 msg/s" in finding.message
    assert "the consumer 'gpu' is the bottleneck" in finding.message


def test_empty_queue_with_busy_producer_is_diagnosed_as_producer_bound():
    reports = {
        "net": _report("net", waiting=0.0, outputs={"batch": _output(5.0)}),
        "gpu": _report("gpu", waiting=0.8, inputs={
            "batch": _input("net/batch", occupancy=0.0, in_rate=5.0, handled=5.0)}),
    }
    (finding,) = diagnose(reports)
    assert finding.kind == "producer-bound"
    assert "'gpu' waits 80% of the time" in finding.message
    assert "could handle about 25.0 msg/s" in finding.message


def test_a_producer_that_sleeps_between_sends_is_not_a_bottleneck():
    """Before: a source pacing itself with time.sleep (never in next(), so "busy") was named
    the bottleneck of every consumer it fed."""
    reports = {
        "sender": _report("sender", waiting=0.0, cpu=2.0, outputs={"message": _output(10.0)}),
        "receiver": _report("receiver", waiting=0.95, inputs={
            "message": _input("sender/message", occupancy=0.0, in_rate=10.0, handled=10.0)}),
    }
    assert diagnose(reports) == []


def test_rate_limited_producer_and_timers_are_not_bottlenecks():
    reports = {
        "cam": _report("cam", waiting=0.95, inputs={
            "tick": _input("pinflow/timer/hz/30", occupancy=0.0)},
            outputs={"image": _output(30.0)}),
        "gpu": _report("gpu", waiting=0.8, inputs={
            "image": _input("cam/image", occupancy=0.0)}),
    }
    assert diagnose(reports) == []


def test_diagnoser_repeats_a_finding_only_after_a_minute_or_a_change():
    busy = {
        "cam": _report("cam", waiting=0.9, outputs={"image": _output(30.0)}),
        "gpu": _report("gpu", waiting=0.0, inputs={
            "image": _input("cam/image", occupancy=1.0, drop_rate=18.0, handled=12.0)}),
    }
    diagnoser = Diagnoser()
    assert len(diagnoser.lines(busy, now=0.0)) == 1
    assert diagnoser.lines(busy, now=30.0) == []
    assert len(diagnoser.lines(busy, now=61.0)) == 1


def test_slow_consumer_backlog_is_reported_by_the_launcher(pinflow):
    run = pinflow("run", "backlog.yml", "--stop-after", "6")
    assert run.returncode == 0, run.output
    line = next(x for x in run.stdout.splitlines() if "backlog:" in x)
    assert "node 'recorder' input 'numbers' (from 'counter/out')" in line
    rates = [float(x) for x in re.findall(r"([\d.]+) msg/s", line)]
    assert rates[0] > rates[1] > 0, "producer rate above consumer rate"
    assert "the consumer 'recorder' is the bottleneck" in line


def test_starving_consumer_is_reported_as_producer_bound(pinflow):
    run = pinflow("run", "starved.yml", "--stop-after", "6")
    assert run.returncode == 0, run.output
    assert "starvation: node 'recorder' input 'numbers' (from 'source/out')" in run.stdout
    assert "the producer 'source' is the bottleneck" in run.stdout


def test_leaking_node_is_stopped_at_its_memory_limit_and_consumers_see_it_closed(pinflow):
    run = pinflow("run", "leak.yml", "--stop-after", "30")
    assert run.returncode == 1
    assert re.search(r"node 'leaker' exceeded its memory_limit: private memory [\d.]+ MiB > "
                     r"150.0 MiB; stopping it", run.stdout)
    assert "node 'leaker' failed: stopped by the launcher: exceeded its memory_limit" in (
        run.stderr)
    events = run.result("recorder")["events"]
    assert events[-2:] == [{"type": "INPUT_CLOSED", "id": "numbers"},
                           {"type": "STOP", "id": "ALL_INPUTS_CLOSED"}]
    assert 3 <= len(events) - 2 <= 9


def test_crashing_producer_restarts_and_its_consumer_resumes_without_restarting(pinflow):
    run = pinflow("run", "restart.yml", "--stop-after", "40")
    assert run.returncode == 0, run.output
    assert run.stdout.count("restarting node 'producer'") == 2
    assert "node 'producer' was restarted 2 time(s)" in run.stdout
    consumer = run.result("consumer")
    assert consumer["closed"] is True, "closed once the launcher gave the producer up"
    assert consumer["torn"] == 0
    # three incarnations of 10 frames each, numbered from 0 by each new process
    assert consumer["indices"] == list(range(10)) * 3
    assert consumer["segments_mapped"] == 3, "one new pool per producer incarnation"


def test_consumer_holding_every_slot_is_diagnosed_as_the_bottleneck_not_its_producer(pinflow):
    run = pinflow("run", "shm_slots_held.yml", "--stop-after", "6")
    assert run.returncode == 0, run.output
    line = next(x for x in run.stdout.splitlines() if "slots held:" in x)
    assert "node 'consumer' input 'frames' (from 'producer/frames')" in line
    assert "consumers hold all 3 slots of 'producer/frames' ('consumer' holds 3)" in line
    assert "the consumer 'consumer' is the bottleneck" in line
    assert "the producer 'producer' is the bottleneck" not in run.stdout
    assert run.result("producer")["exhausted"] > 0


def test_slots_held_by_one_consumer_blame_that_consumer_only():
    pool = PoolReport(slots=4, slot_bytes=4096, free=0, in_use=4, loaned=0, acquired_total=9,
                      exhausted_waits=7, timeouts=0, held_by={"gpu": 4, "sink": 1},
                      pinned=False, segment="pinflow-r.cam.image.0a")
    reports = {
        "cam": _report("cam", waiting=0.0, outputs={"image": _output(2.0, pool=pool)}),
        "gpu": _report("gpu", waiting=0.9, inputs={"image": _input("cam/image", occupancy=0.0)}),
        "sink": _report("sink", waiting=0.9, inputs={
            "image": _input("cam/image", occupancy=0.0)}),
    }
    (finding,) = diagnose(reports)
    assert (finding.node, finding.kind) == ("gpu", "consumer-bound")
    assert "'gpu' holds 4, 'sink' holds 1" in finding.message
    assert "'cam' waited for a free slot 7 time(s)" in finding.message
