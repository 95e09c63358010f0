"""The inbox builds events (decoding, device copies) without holding its lock."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from pinflow.nodes import events
from pinflow.nodes.inbox import Inbox
from pinflow.spec import InputSpec


def test_building_an_event_leaves_the_inbox_free_for_network_callbacks():
    inbox = Inbox([InputSpec("a", "x/a", source_node="x", source_output="a"),
                   InputSpec("b", "x/b", source_node="x", source_output="b")])
    pushed_meanwhile = threading.Event()

    def slow_build(name: str) -> events.Event:
        # A device copy that waits (e.g. for a registration): a zenoh callback pushing the
        # next message must not block behind it.
        pusher = threading.Thread(target=lambda: (
            inbox.push(["b"], lambda n: events.make_event(events.INPUT, n)),
            pushed_meanwhile.set()))
        pusher.start()
        pusher.join(timeout=2.0)
        return events.make_event(events.INPUT, name, sent_ns=1)

    inbox.push(["a"], slow_build)
    first = inbox.next(timeout=5)
    assert first is not None and first["id"] == "a"
    assert pushed_meanwhile.is_set(), "push() waited for the build to finish"
    second = inbox.next(timeout=5)
    assert second is not None and second["id"] == "b"
    assert list(inbox.take_latencies()) == ["a"], "latency is still recorded per input"


def _inbox(policy: str = "drop_oldest", size: int = 2) -> Inbox:
    return Inbox([InputSpec("a", "x/a", source_node="x", source_output="a", queue_size=size,
                            queue_policy=policy),
                  InputSpec("b", "x/b", source_node="x", source_output="b")])


def _push(inbox: Inbox, name: str, value: int, built: list[int]) -> None:
    def build(input_name: str) -> events.Event:
        built.append(value)
        return events.make_event(events.INPUT, input_name, value=value)

    inbox.push([name], build)


def _drain(inbox: Inbox) -> list[tuple[str, str, object]]:
    seen = []
    while (event := inbox.next(timeout=0)) is not None:
        seen.append((event["type"], event["id"], event.get("value")))
    return seen


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", [2, 3]), ("drop_newest", [0, 1])])
def test_overflow_drops_by_policy_counts_it_and_never_builds_the_dropped(policy, kept):
    inbox, built = _inbox(policy), []
    for value in range(4):
        _push(inbox, "a", value, built)
    assert [v for _, _, v in _drain(inbox)] == kept
    assert built == kept, "a dropped message is never decoded"
    queue = inbox.snapshot()["a"]
    assert (queue.received, queue.dropped, queue.delivered, queue.queued) == (4, 2, 2, 0)
    assert queue.source == "x/a" and queue.size == 2 and not queue.closed


def test_messages_leave_in_arrival_order_and_input_closed_after_its_queued_messages():
    inbox, built = _inbox(size=5), []
    _push(inbox, "a", 1, built)
    _push(inbox, "b", 2, built)
    _push(inbox, "a", 3, built)
    inbox.close(["a"])
    _push(inbox, "a", 4, built)  # after the close: never delivered
    assert _drain(inbox) == [("INPUT", "a", 1), ("INPUT", "b", 2), ("INPUT", "a", 3),
                             ("INPUT_CLOSED", "a", None)]
    assert not inbox.ended, "input b is still open"
    inbox.close(["b"])
    assert inbox.has_event()
    assert _drain(inbox) == [("INPUT_CLOSED", "b", None), ("STOP", "ALL_INPUTS_CLOSED", None)]
    assert inbox.ended and inbox.next(timeout=0) is None and not inbox.has_event()


def test_stop_overtakes_queued_messages_and_is_the_last_event():
    inbox, built = _inbox(size=5), []
    for value in range(3):
        _push(inbox, "a", value, built)
    inbox.stop("MANUAL")
    _push(inbox, "b", 9, built)
    assert _drain(inbox) == [("STOP", "MANUAL", None)]
    assert built == [], "queued messages are dropped, not built (their slots go back)"
    assert inbox.ended and inbox.stopping


def test_occupancy_is_judged_at_the_queue_s_fullest_since_the_last_sample():
    """Messages are queued when the node's thread reads its links (in next()), so a node
    behind by a whole queue shows it full only for an instant. Before: occupancy read the
    queue as it was at the sample (3/4 here) and the backlog diagnosis never fired."""
    inbox = _inbox(size=4)
    for _ in range(6):  # one read of the links brought more than the queue holds
        inbox.push(["a"], lambda n: events.make_event(events.INPUT, n))
    assert inbox.next(timeout=0) is not None
    assert inbox.occupancy()["a"] == 1.0
    assert inbox.occupancy()["a"] == 0.75, "the fullest since the last sample, not ever"


def test_occupancy_is_the_mean_of_each_quarter_second_at_its_fullest(monkeypatch):
    """The queues keep their fill as they change (on the node's thread), so the stats thread
    wakes only to report: a quarter in which nothing happened counts at the length the
    queue had then."""
    clock = [10 * events.QUARTER_NS]
    monkeypatch.setattr(events, "time", SimpleNamespace(monotonic_ns=lambda: clock[0]))
    inbox = _inbox(size=4)
    for _ in range(4):
        inbox.push(["a"], lambda n: events.make_event(events.INPUT, n))
    for _ in range(3):
        assert inbox.next(timeout=0) is not None  # quarter 10: full, then 1 left
    clock[0] += 2 * events.QUARTER_NS  # quarter 11 passes with nothing: 1 queued all along
    inbox.push(["a"], lambda n: events.make_event(events.INPUT, n))  # quarter 12: 2
    clock[0] += events.QUARTER_NS + events.QUARTER_NS // 2  # half-way through quarter 13
    assert inbox.occupancy()["a"] == (4 + 1 + 2 + 2) / 4 / 4
    assert inbox.occupancy()["a"] == 2 / 4, "the current quarter alone, since the last look"
