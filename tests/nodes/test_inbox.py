"""The inbox builds events (decoding, device copies) without holding its lock."""

from __future__ import annotations

import threading

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
